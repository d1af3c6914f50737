"""The committed fixture traces of the 3xx–9xx rules are what the builders produce.

After changing a builder, rewrite them with
`PERFTUNE_BLESS=1 pytest tests/rules_catalogue2/test_fixtures.py`, then re-bless the findings
snapshots (`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py`) and review both diffs.
"""

from __future__ import annotations

import pytest

from perftune.engine.catalogue import blessing
from perftune.trace import load
from tests.rules_catalogue2.catalogue2_fixtures import FIXTURES, encode, fixture_path

CASES = [(folder, name) for folder, builders in sorted(FIXTURES.items()) for name in sorted(builders)]


@pytest.mark.parametrize(("folder", "name"), CASES, ids=[f"{f}/{n}" for f, n in CASES])
def test_fixture_is_reproducible(folder: str, name: str) -> None:
    data = encode(FIXTURES[folder][name]())
    path = fixture_path(folder, name)
    if blessing():
        path.write_bytes(data)
        pytest.skip(f"wrote {path}")
    assert path.is_file(), f"{path} missing: run with PERFTUNE_BLESS=1"
    assert path.read_bytes() == data, f"{path} differs from its builder (PERFTUNE_BLESS=1 rewrites it)"
    assert len(data) < 64 * 1024, "fixtures stay small"


def test_every_owned_rule_folder_has_a_fixture_that_loads() -> None:
    folders = {f for f, _ in CASES}
    assert len(folders) == 20
    for folder, name in CASES:
        trace = load(fixture_path(folder, name))
        assert len(trace.events) > 0
