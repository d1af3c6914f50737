"""`perftune rules` lists the rule catalogue; `perftune rule PFT201` explains one rule."""

from __future__ import annotations

import json
from pathlib import Path

import click

from perftune.cli._options import format_option


def _read(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@click.command("rules")
@format_option
@click.option("--preview/--no-preview", default=True, show_default=True,
              help="Include rules still in preview.")
def rules(output_format: str, preview: bool) -> None:
    """List every rule: code, name, category and status."""
    from perftune.engine.registry import catalogue

    infos = [i for i in catalogue() if preview or i.status != "preview"]
    if output_format == "json":
        click.echo(json.dumps([{"code": i.code, "name": i.name, "category": i.category,
                                "status": i.status, "severity": i.severity, "summary": i.summary,
                                "options": i.options} for i in infos], indent=2, default=str))
        return
    width = max((len(i.name) for i in infos), default=4)
    cat_width = max((len(i.category) for i in infos), default=8)
    click.echo(f"{'code':<7} {'name':<{width}}  {'category':<{cat_width}}  {'status':<7}  what it detects")
    for i in infos:
        click.echo(f"{i.code:<7} {i.name:<{width}}  {i.category:<{cat_width}}  {i.status:<7}  {i.summary}")
    click.echo(f"\n{len(infos)} rules; `perftune rule CODE` explains one.")


@click.command("rule")
@click.argument("code")
@click.option("--raw", is_flag=True, help="Print the markdown source instead of rendering it.")
def rule(code: str, raw: bool) -> None:
    """Explain rule CODE (e.g. PFT201): what it detects, why it is slow, the fix, examples."""
    from perftune.engine.docs import markdown
    from perftune.engine.registry import rule_by_code, rule_info

    cls = rule_by_code(code)
    info = rule_info(cls)
    folder = info.folder
    text = markdown(cls.code, cls.name, cls.doc(), category=info.category, status=info.status,
                    severity=info.severity, options=info.options,
                    bad=_read(folder / "bad.py" if folder else None),
                    good=_read(folder / "good.py" if folder else None))
    if raw:
        click.echo(text)
        return
    from rich.markdown import Markdown

    from perftune.report.console import make_console

    make_console().print(Markdown(text, code_theme="ansi_dark"))
