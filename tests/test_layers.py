"""The layers of docs/architecture.md hold: the import-linter contracts in pyproject.toml
([tool.importlinter]) are kept, and no perftune package has an import cycle between its parts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

grimp = pytest.importorskip("grimp")
use_cases = pytest.importorskip("importlinter.application.use_cases")



@pytest.fixture(scope="module")
def graph() -> object:
    return grimp.build_graph("perftune", cache_dir=None)


def test_import_linter_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.configuration import configure

    configure()  # what the lint-imports command does first: the default readers and printers
    kept = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None,
                                  no_logo=True)
    assert kept, capsys.readouterr().out


def test_contracts_cover_every_top_level_module(graph: object) -> None:
    """A new top-level module or package must be placed in a layer, not slip past the contract."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    top = {m for m in graph.modules if m.count(".") == 1}  # type: ignore[attr-defined]
    assert top - placed == set()


def test_no_import_cycles_between_subpackages(graph: object) -> None:
    assert graph.nominate_cycle_breakers("perftune") == set()  # type: ignore[attr-defined]


def test_no_new_import_cycles_inside_a_package(graph: object) -> None:
    packages = sorted(m for m in graph.modules if graph.find_children(m))  # type: ignore[attr-defined]
    found = {p: breakers for p in packages
             if (breakers := graph.nominate_cycle_breakers(p))}  # type: ignore[attr-defined]
    assert found == {}
