"""The rule catalogue: every rule folder is complete and its findings match expected.json.

Runs each rule on the fixture traces in its folder and compares the full findings with the
folder's snapshot; the fixture traces themselves must be what the folder's fixtures.py builds.
After an intended change, rewrite the traces with `python -m perftune.engine.fixtures` (or
`PERFTUNE_BLESS=1`, which also rewrites the snapshots), run
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py` and review the diff.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perftune._resources import rules_dir
from perftune.engine.catalogue import (
    blessing,
    fixtures,
    folder_problems,
    read_expected,
    run_fixture,
    snapshot,
    write_expected,
)
from perftune.engine.fixtures import encode, fixture_file, folder_fixtures
from perftune.engine.registry import _load_module, rule_classes
from perftune.engine.rule import Rule

FOLDERS = sorted(p for p in rules_dir().glob("pft*") if p.is_dir() and (p / "rule.py").is_file())


def _rule_of(folder: Path) -> type[Rule]:
    module = _load_module(folder / "rule.py")
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, Rule) and obj.code
             and obj.__module__ == module.__name__]
    assert len(found) == 1, f"{folder.name}: expected one Rule subclass, found {found}"
    return found[0]


def test_catalogue_is_not_empty() -> None:
    assert len(FOLDERS) >= 15
    assert {c.code for c in rule_classes()} >= {f"PFT{n}" for n in (101, 102, 103, *range(201, 213))}


def test_codes_are_unique_and_match_their_folders() -> None:
    codes: dict[str, str] = {}
    for folder in FOLDERS:
        cls = _rule_of(folder)
        assert folder.name.startswith(cls.code.lower() + "_"), f"{folder.name} holds {cls.code}"
        assert re.fullmatch(r"pft\d{3}_[a-z0-9_]+", folder.name)
        assert folder.name.removeprefix(cls.code.lower() + "_") == cls.name.replace("-", "_"), \
            f"{folder.name}: folder name should be the rule name {cls.name}"
        assert cls.code not in codes, f"{cls.code} used by {codes.get(cls.code)} and {folder.name}"
        codes[cls.code] = folder.name


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_rule_folder_is_complete(folder: Path) -> None:
    problems = folder_problems(folder, _rule_of(folder))
    assert not problems, f"{folder.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_fixture_traces_are_what_the_folder_builds(folder: Path) -> None:
    builders = folder_fixtures(folder)
    assert builders, f"{folder.name}: fixtures.py with FIXTURES (the traces' builders) missing"
    assert {fixture_file(folder, name).name for name in builders} == {p.name for p in fixtures(folder)}
    for name, build in sorted(builders.items()):
        data, path = encode(build()), fixture_file(folder, name)
        if blessing():
            path.write_bytes(data)
            continue
        assert path.read_bytes() == data, (f"{path} differs from its builder "
                                           f"(python -m perftune.engine.fixtures {folder.name[:6]})")
        assert len(data) < 64 * 1024, "fixtures stay small"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_findings_match_snapshot(folder: Path) -> None:
    cls = _rule_of(folder)
    actual = {fx.name: snapshot(run_fixture(cls, fx)) for fx in fixtures(folder)}
    if blessing():
        write_expected(folder, actual)
        pytest.skip(f"blessed {folder.name}/expected.json")
    expected = read_expected(folder)
    assert actual == expected, (f"{folder.name}: findings differ from expected.json "
                                "(PERFTUNE_BLESS=1 rewrites it after an intended change)")
    assert any(actual.values()), f"{cls.code} finds nothing on any of its own fixtures"
