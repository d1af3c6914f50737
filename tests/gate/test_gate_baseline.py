"""Baseline files and environment fingerprints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from perftune.errors import ConfigError
from perftune.gate import baseline, fingerprint
from perftune.gate.explain import ProfileSummary, profile_from_dict, profile_to_dict


def sample_baseline() -> baseline.Baseline:
    profile = ProfileSummary(run_dir=Path("/r"), step_ms=12.5, peak_memory_bytes=1 << 30,
                             memory_kind="rss", operators_ms={"aten::mm": 3.5},
                             operators_per_step=120.0)
    return baseline.Baseline(samples_ms=(12.0, 12.4, 11.9), fingerprint=fingerprint.collect({}),
                             warmup=5, steps=10, script="train.py", args=("--epochs", "1"),
                             knobs={"slowdown": 0.1}, git_commit="abc", profile=profile_to_dict(profile))


def test_round_trip(tmp_path: Path) -> None:
    original = sample_baseline()
    path = tmp_path / "sub" / "perf-baseline.json"
    baseline.save(original, path)
    loaded = baseline.load(path)
    assert loaded.samples_ms == original.samples_ms
    assert loaded.fingerprint == original.fingerprint
    assert (loaded.warmup, loaded.steps, loaded.args, loaded.knobs) == (5, 10, ("--epochs", "1"), {"slowdown": 0.1})
    assert loaded.git_commit == "abc"
    assert loaded.profile is not None
    profile = profile_from_dict(loaded.profile)
    assert profile.operators_ms == {"aten::mm": 3.5}
    assert profile.operators_per_step == 120.0
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"kind": "something else"}', "not a perftune baseline"),
    ('[1, 2]', "not a perftune baseline"),
])
def test_bad_files_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        baseline.load(path)


def test_missing_file_and_bad_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        baseline.load(tmp_path / "nope.json")
    good = sample_baseline().to_dict()
    for key, value, message in [("samples_ms", [1.0], "at least two"),
                                ("samples_ms", [1.0, -1.0], "positive"),
                                ("schema_version", 99, "schema version"),
                                ("warmup", "5", "wrong type"),
                                ("fingerprint", {"cpu_model": "x"}, "lacks")]:
        bad = dict(good, **{key: value})
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=message):
            baseline.load(path)


def test_fingerprint_of_a_launch_uses_its_meta() -> None:
    meta = {"torch_version": "2.99.0", "cuda_version": "12.4", "python_version": "3.11.7",
            "devices": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]}
    fp = fingerprint.collect(meta)
    assert fp.torch == "2.99.0" and fp.cuda == "12.4" and fp.python == "3.11.7"
    assert fp.gpu_models == ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    assert fingerprint.collect({"devices": ["cpu: Some CPU"]}).gpu_models == ()
    assert fp.cpu_model == fingerprint.cpu_model() != ""


def test_fingerprint_differences_name_each_field() -> None:
    stored = fingerprint.collect({"torch_version": "2.3.0"})
    assert stored.differences(stored) == []
    other = replace(stored, torch="2.4.0", gpu_models=("NVIDIA A10G",))
    diffs = stored.differences(other)
    assert len(diffs) == 2
    assert any(d.startswith("torch: 2.3.0 (baseline) vs 2.4.0 (now)") for d in diffs)
    assert any(d == "gpu_models: none (baseline) vs NVIDIA A10G (now)" for d in diffs)
    assert fingerprint.Fingerprint.from_dict(other.to_dict()) == other
