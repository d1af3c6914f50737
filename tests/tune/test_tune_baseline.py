"""The tuner's baseline is the script's own defaults, also without perftune.knob(): the batch
size of the DataLoader it iterates, or the default of the flag a knob is passed as."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tune_helpers import SCRIPTS, load_tuning, run_tune

from perftune.tune.space import ArgTemplate, SearchSpace, build_space, script_defaults

# No repeats: the probe (the defaults) and one trial of each other value, 3 trials. Batch 8 gives
# about 3x the samples/s of 4 and 16 (batch_default.py), far past a loaded machine's noise.
FAST = ("--trial-warmup", "1", "--trial-steps", "3", "--repeats", "0")
SCRIPT = str(SCRIPTS / "batch_default.py")


def test_flag_of_a_template() -> None:
    assert ArgTemplate("batch_size", "--batch-size={}").flag == "--batch-size"
    assert ArgTemplate("batch_size", "--batch-size {}").flag == "--batch-size"
    assert ArgTemplate("lr", "-l {}").flag == "-l"


def _space(**args: str) -> SearchSpace:
    knobs = [("batch_size", (4, 16)), ("precision", ("bf16",)), ("lr", (0.1, 0.01))]
    return build_space(cli=knobs, args=[ArgTemplate(k, v) for k, v in args.items()])


def test_script_defaults_come_from_the_dataloader_the_flags_and_the_script_as_written() -> None:
    observed = {"dataloader": {"batch_size": 8, "where": "/p/train.py:31"},
                "flags": {"--lr": "0.001", "--batch-size": 64, "-h": None}}
    values, origin = script_defaults(_space(lr="--lr={}"), observed, input_samples=32)
    assert values == {"batch_size": 8, "precision": "fp32", "lr": "0.001"}
    assert origin["batch_size"] == "the script's DataLoader (train.py:31)"
    assert origin["lr"] == "default of the script's --lr"
    assert origin["precision"] == "the script as written (nothing injected)"
    # Passed as a flag: the flag's default, not the DataLoader's.
    values, origin = script_defaults(_space(batch_size="--batch-size {}"), observed, None)
    assert values["batch_size"] == 64 and origin["batch_size"] == "default of the script's --batch-size"
    # No DataLoader seen: the model input's leading dimension; nothing at all: left out.
    assert script_defaults(_space(), {}, 32.0)[0]["batch_size"] == 32
    assert "batch_size" not in script_defaults(_space(), {}, None)[0]
    assert "lr" not in script_defaults(_space(lr="--lr={}"), {"flags": {}}, None)[0]
    threads = build_space(cli=[("num_threads", (1, 4))])
    values, origin = script_defaults(threads, {"num_threads": 2}, None)
    assert values == {"num_threads": 2} and "torch threads" in origin["num_threads"]


def test_a_script_default_joins_the_choices_in_the_choices_type() -> None:
    space = build_space(cli=[("batch_size", (4, 16)), ("lr", (0.1, 0.01))],
                        declared_defaults={"batch_size": "8", "lr": 0.001},
                        default_from={"batch_size": "default of the script's --batch-size",
                                      "lr": "default of the script's --lr"})
    batch = space.knob("batch_size")
    assert batch.choices == (4, 8, 16) and batch.default == 8
    assert batch.default_from == "default of the script's --batch-size"
    assert space.knob("lr").default == 0.001 and 0.001 in space.knob("lr").choices


@pytest.mark.parametrize("how", ["dataloader", "flag"])
def test_the_scripts_own_batch_size_is_the_baseline_and_said_to_be_best(project: Path, how: str) -> None:
    """batch_default.py never calls perftune.knob(): its batch size 8 is read from the
    DataLoader it iterates (injected knob) or from its parser (--arg), measured although the
    values to try leave it out, marked as the defaults, and named the fastest."""
    out = project / "run"
    passed = ("--arg", "batch_size=--batch-size={}") if how == "flag" else ()
    result = run_tune("--knob", "batch_size=4,16", *passed, *FAST, "--out", str(out), SCRIPT,
                      "--epochs", "50", cwd=project)
    assert result.returncode == 0, result.stderr
    tuning = load_tuning(out)
    knob = tuning["space"]["knobs"][0]
    assert knob["name"] == "batch_size" and knob["default"] == 8 and knob["choices"] == [4, 8, 16]
    expected = "the script's DataLoader (batch_default.py:" if how == "dataloader" else \
        "default of the script's --batch-size"
    assert knob["default_from"].startswith(expected), knob
    assert tuning["default"]["values"] == {"batch_size": 8}
    baseline = [c for c in tuning["configs"] if c["baseline"]]
    assert [c["values"] for c in baseline] == [{"batch_size": 8}]
    probe = next(t for t in tuning["trials"] if t["role"] == "probe")
    assert probe["values"] == {"batch_size": 8}  # the probe ran the script as written
    argv = json.loads((out / "trials" / "probe" / "meta.json").read_text())["argv"]
    assert "--batch-size" not in " ".join(argv), argv  # no flag passed to the probe
    assert len(tuning["trials"]) == 3
    assert tuning["best"]["is_default"] is True
    assert tuning["best"]["values"] == {"batch_size": 8}
    assert "your defaults are already the fastest configuration measured: batch_size=8" in result.stdout
    assert "your defaults" in result.stdout.split("configurations, fastest first")[1]
    assert f"your defaults (the baseline): batch_size=8 ({knob['default_from']})" in result.stdout
