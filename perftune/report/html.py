"""report.html and diff.html: one self-contained page each, opening offline from disk.

The page inlines plotly.js (once), the CSS and a little JavaScript; it requests nothing from a
network. Every string that came from a trace, a script or an argument reaches the page either
through jinja2 with autoescape on, or inside the JSON blob the plots are drawn from, which is
escaped for a <script> element (`script_json`).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import msgspec
import numpy as np

from perftune import units
from perftune._resources import reports_dir
from perftune._version import __version__
from perftune.documents import GateDocument, TuningDocument, document_data
from perftune.engine.types import Finding, Location
from perftune.fsutil import OutputError, write_bytes_atomic, write_chunks_atomic
from perftune.report import figures as F
from perftune.report.data import (
    RunView,
    breakdown_rows,
    device_line,
    header_facts,
    step_timing,
)
from perftune.report.sections import TraceSections, trace_sections
from perftune.report.timeline import PERFETTO_URL
from perftune.report.tuning import figure_dicts, tuning_context
from perftune.rundir import TRACE, TUNING_HTML, RunDir
from perftune.sourcefiles import SourceRoots
from perftune.tune.render import knob_value

if TYPE_CHECKING:
    from perftune.report.compare import Comparison

# ---------------------------------------------------------------------------- escaping
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def plain_json(value: Any) -> Any:
    """`value` with NaN/inf as None and numpy scalars and arrays as Python values."""
    kind = type(value)  # the exact built-in types first: no isinstance (an ABC's for Mapping)
    if kind in _PLAIN_TYPES:
        return value
    if kind is list or kind is tuple:
        return [plain_json(v) for v in value]
    if kind is dict:
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.generic):
        return plain_json(value.item())
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>`, `&`, U+2028 or U+2029, so a
    string holding `</script>` or `<!--` cannot end or change the element."""
    text = json.dumps(plain_json(value), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))
    for raw, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


# ---------------------------------------------------------------------------- environment
def _fmt_value(value: Any, limit: int = 400) -> str:
    """A compact one-line rendering of evidence values."""
    if isinstance(value, (int, float, bool)) or value is None:
        return units.number(value)
    text = value if isinstance(value, str) else json.dumps(plain_json(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """jinja2's own cache of compiled templates (a private folder in the temp directory, keyed
    by each template's source): compiling the report's templates took about a quarter of
    `--out` on every run. A cache that cannot be read or written is skipped, never an error."""

    def load_bytecode(self, bucket: Any) -> None:
        with contextlib.suppress(OSError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: Any) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _template_cache() -> jinja2.BytecodeCache | None:
    try:
        return _TemplateCache()
    except (OSError, RuntimeError):  # no private folder in the temp directory
        return None


@functools.lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(folder) / "templates")),
        bytecode_cache=_template_cache(),
        autoescape=True,  # every {{ }} is HTML-escaped unless a value is marked |safe
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=units.ms, pct=units.percent, bytes=units.size, num=units.number,
                       delta_ms=units.delta_ms, rate=units.rate, knob=knob_value, value=_fmt_value,
                       basename=lambda p: Path(str(p)).name)
    env.tests["scalar"] = _is_scalar
    env.tests["mapping"] = lambda v: isinstance(v, Mapping)
    env.tests["rows"] = lambda v: (isinstance(v, list) and bool(v)
                                   and all(isinstance(x, Mapping) for x in v))
    return env


def environment() -> jinja2.Environment:
    return _environment(str(reports_dir()))


@functools.lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    static = reports_dir() / "static"
    return ((static / "report.css").read_text(encoding="utf-8"),
            (static / "report.js").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly's bundled plotly.min.js, made safe to inline in a <script> element."""
    return plotly_js_bytes().decode("utf-8")


def check_utf8(data: bytes, piece: int = 1 << 16) -> None:
    """Raise UnicodeDecodeError unless `data` is UTF-8, without decoding it whole.

    A str of plotly.min.js (4.8 MB with a few non-ASCII characters) is built wide: ~15-40 ms.
    Decoded in pieces cut before an ASCII byte (never inside a multi-byte sequence), the pure
    ASCII pieces take the decoder's fast path and only the few others are widened: < 1 ms."""
    view = memoryview(data)
    start, n = 0, len(data)
    while start < n:
        stop = min(start + piece, n)
        while stop < n and data[stop] >= 0x80:
            stop += 1
        codecs.utf_8_decode(view[start:stop], "strict", True)
        start = stop


def plotly_js_bytes() -> bytes:
    """`plotly_js()` as UTF-8 bytes, never held as a str.

    Read from plotly's package data where `plotly.offline.get_plotlyjs` reads it, without
    importing plotly (its import is ~0.07 s of CPU per `--out` run)."""
    source: bytes | None = None
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        with contextlib.suppress(OSError):
            source = (Path(folder) / "package_data" / "plotly.min.js").read_bytes()
            check_utf8(source)  # raises on a file that is not UTF-8, as the str read did
            break
    if source is None:  # an unusual install (zipped, ...): plotly's own reader
        from plotly.offline import get_plotlyjs

        source = get_plotlyjs().encode("utf-8")
    return source.replace(b"</script", b"<\\/script").replace(b"<!--", b"<\\!--")


# ---------------------------------------------------------------------------- findings
@dataclass(frozen=True)
class SnippetLine:
    number: int | None
    text: str
    hit: bool


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add | del | hunk | meta | ctx
    text: str


def source_snippet(location: Location, roots: SourceRoots | Sequence[Path],
                   context: int = 3) -> list[SnippetLine]:
    """The flagged line with `context` lines around it when the file on disk still matches what
    the trace recorded; the recorded line alone otherwise. Files are read only through
    perftune.sourcefiles (inside the source roots, regular .py files under the size limit)."""
    recorded = [SnippetLine(location.line, location.source.rstrip(), True)] if location.source else []
    if not location.file or not location.line:
        return recorded
    access = roots if isinstance(roots, SourceRoots) else SourceRoots.of(roots)
    text = access.read(location.file)
    if text is None:
        return recorded
    lines = text.splitlines()
    if not 0 < location.line <= len(lines):
        return recorded
    if location.source and lines[location.line - 1].strip() != location.source.strip():
        return recorded  # the file changed since the run: show only what was recorded
    lo, hi = max(1, location.line - context), min(len(lines), location.line + context)
    return [SnippetLine(n, lines[n - 1], n == location.line) for n in range(lo, hi + 1)]


def diff_lines(diff: str) -> list[DiffLine]:
    out = []
    for line in diff.rstrip("\n").splitlines():
        if line.startswith(("+++", "---")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out


@dataclass(frozen=True)
class RuleDoc:
    code: str
    name: str
    category: str
    html: str  # rendered from the rule's own docstring, raw HTML disabled


def rule_docs(codes: Iterable[str]) -> dict[str, RuleDoc]:
    """Docs of the rules behind the findings, from the catalogue; {} when it cannot be loaded."""
    wanted = set(codes)
    if not wanted:
        return {}
    from perftune.engine.registry import rule_classes

    chosen = [cls for cls in rule_classes() if cls.code in wanted]
    pages = _markdown_pages([cls.doc() for cls in chosen])
    return {cls.code: RuleDoc(code=cls.code, name=cls.name, category=_category(cls.code),
                              html=page) for cls, page in zip(chosen, pages, strict=True)}


def _markdown_pages(texts: list[str]) -> list[str]:
    """CommonMark texts as HTML (raw HTML disabled). Each page is kept in the template cache's
    private folder, keyed by its text and by the installed markdown-it: a run whose rule docs
    were rendered before neither imports nor sets up markdown-it (about a tenth of `--out`)."""
    folder = getattr(environment().bytecode_cache, "directory", None)
    spec = importlib.util.find_spec("markdown_it")
    version = ""
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            stat = os.stat(spec.origin)
            version = f"{spec.origin}:{stat.st_mtime_ns}:{stat.st_size}"
    paths: list[Path | None] = [None] * len(texts)
    pages: list[str | None] = [None] * len(texts)
    for k, text in enumerate(texts):
        if folder and version:
            digest = hashlib.sha256(f"{version}\0{text}".encode()).hexdigest()
            path = paths[k] = Path(folder) / f"perftune-doc-{digest}.html"
            with contextlib.suppress(OSError, UnicodeDecodeError):
                pages[k] = path.read_text(encoding="utf-8")
    if any(page is None for page in pages):
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False})
        for k, (text, target) in enumerate(zip(texts, paths, strict=True)):
            if pages[k] is None:
                pages[k] = page = md.render(text)
                if target is not None:  # a cache that cannot be written is skipped
                    with contextlib.suppress(OSError, OutputError):
                        write_bytes_atomic(target, page.encode("utf-8"), fsync=False)
    return [page or "" for page in pages]


def _category(code: str) -> str:
    from perftune.engine.rule import CATEGORIES

    return CATEGORIES.get(code[3:4], "other")


@dataclass(frozen=True)
class FindingView:
    finding: Finding
    anchor: str
    snippet: list[SnippetLine]
    diff: list[DiffLine]
    evidence: list[tuple[str, str]]
    has_doc: bool


def finding_views(findings: Sequence[Finding], roots: SourceRoots | Sequence[Path],
                  docs: Mapping[str, RuleDoc]) -> list[FindingView]:
    out = []
    for n, f in enumerate(findings):
        out.append(FindingView(
            finding=f, anchor=f"finding-{n + 1}", snippet=source_snippet(f.location, roots),
            diff=diff_lines(f.suggestion.diff) if f.suggestion.diff else [],
            evidence=[(str(k), _fmt_value(v)) for k, v in f.evidence.items()],
            has_doc=f.code in docs))
    return out


# ---------------------------------------------------------------------------- optional parts
def _roofline(view: RunView) -> tuple[dict[str, Any] | None, list[F.RooflineOp], str]:
    """(figure, heavy ops, where the roofs came from); (None, [], "") when there is no trace or
    nothing to place."""
    if view.trace is None:
        return None, [], ""
    from perftune.trace import roofline

    points = view.roofline if view.roofline is not None else roofline.roofline_columns(view.trace)
    ops = F.heavy_ops(points)
    if not ops:
        return None, [], ""
    # measure=False: use the calibrated machine's cached roofs, never benchmark while rendering.
    peaks = roofline.peaks(view.trace, measure=False)
    source = str(getattr(peaks, "source", ""))
    figure = F.roofline_figure(ops, getattr(peaks, "flops_per_s", None),
                               getattr(peaks, "bytes_per_s", None),
                               getattr(peaks, "flops_by_dtype", None), source)
    return figure, ops, source


def _gate_figure(gate: GateDocument) -> dict[str, Any] | None:
    base, head = gate.base, gate.head
    if isinstance(base, msgspec.UnsetType) or isinstance(head, msgspec.UnsetType):
        return None
    return F.compare_steps_figure(base.label or "base", list(base.samples_ms),
                                  head.label or "head", list(head.samples_ms))


def _step_starts_ms(view: RunView) -> list[float]:
    if view.trace is None:
        return []
    first = view.trace.steps[0].rank if view.trace.steps else 0
    return [s.start / 1000.0 for s in view.trace.steps if s.rank == first]


def _top_tables(view: RunView, sections: TraceSections | None) -> tuple[list[Any], list[Any]]:
    if sections is not None:
        return plain_json(sections.top_ops), plain_json(sections.top_kernels)
    if view.summary is None:
        return [], []
    return list(view.summary.top_host_ops), list(view.summary.top_kernels)


# ---------------------------------------------------------------------------- the page
TOP_MODULES = 25


def report_context(view: RunView) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    timing = step_timing(view)
    fig = F.step_time_figure(timing)
    if fig:
        figures["steps"] = fig
    fig = F.breakdown_figure(view.summary)
    if fig:
        figures["breakdown"] = fig
    modules = view.summary.module_section if view.summary is not None else None
    fig = F.module_tree_figure(modules)
    if fig:
        figures["modules-tree"] = fig
    compilation = view.summary.compilation_section if view.summary is not None else None
    # The trace's own parts: computed by the rules' worker when it ran, else here.
    sections = view.sections if view.sections is not None else \
        trace_sections(view.trace, compilation) if view.trace is not None else None
    timeline = sections.timeline if sections is not None else None
    if timeline is not None and timeline.bars:
        figures["timeline"] = F.timeline_figure(timeline)
    memory = sections.memory if sections is not None else ()
    if memory:
        figures["memory"] = F.memory_figure(memory, _step_starts_ms(view))
    roof, roof_ops, roof_source = _roofline(view)
    if roof:
        figures["roofline"] = roof
    gate_fig = _gate_figure(view.gate) if view.gate else None
    if gate_fig:
        figures["gate"] = gate_fig
    ranks = _rank_views(view, figures)
    tuning_figs = figure_dicts(view.tuning) if view.tuning else []
    for k, tfig in enumerate(tuning_figs):
        figures[f"tuning-{k}"] = tfig
    # Relative source paths in a trace are relative to where the script ran; files are read
    # only under the analysis' source roots.
    lookup = [Path(view.meta.cwd)] if view.meta is not None and view.meta.cwd else []
    lookup.extend(p for p in (view.run_dir,) if p is not None)
    roots = SourceRoots.of(view.source_roots, lookup)
    docs = rule_docs(f.code for f in view.findings)
    ops, kernels = _top_tables(view, sections)
    summary = view.summary
    has_device = summary is not None and summary.has_device_activity
    mean = (summary.steps.mean_ms if summary is not None else None) or 0.0
    breakdown = [(key, label, value) for key, label, value in
                 (breakdown_rows(summary) if summary is not None else [])]
    idle = summary.breakdown_ms_per_step.device_idle_ms if summary is not None else 0.0
    trace_name = None
    if view.run_dir is not None and RunDir(view.run_dir).trace.exists():
        trace_name = TRACE
    elif summary is not None and summary.files:
        trace_name = summary.files[0]
    return {
        "title": view.title,
        "version": __version__,
        "facts": header_facts(view),
        "has_device": has_device,
        "cpu_only": summary is not None and summary.runtime == "cpu",
        "world_size": summary.world_size if summary is not None else 1,
        "trace_warnings": summary.warnings if summary is not None else [],
        "devices": device_line(view.summary),
        "timing": timing,
        "device_idle_share": idle / mean if mean else None,
        "breakdown": [(_HTML_LABELS.get(key, label), value, value / mean if mean else None)
                      for key, label, value in breakdown
                      if has_device or key not in _DEVICE_KEYS],
        "findings": finding_views(view.findings, roots, docs),
        "total_saving_ms": view.total_saving_ms,
        "rule_docs": [docs[c] for c in sorted(docs)],
        "phases": summary.phase_section if summary is not None else None,
        "efficiency": summary.efficiency_section if summary is not None else None,
        "modules": modules,
        "compilation": compilation,
        "top_modules": modules.modules[:TOP_MODULES] if modules is not None else [],
        "top_ops": ops,
        "top_kernels": kernels,
        "timeline": timeline,
        "ranks": ranks,
        "memory": memory,
        "has_roofline": "roofline" in figures,
        "roofline_ops": roof_ops,
        "roofline_source": roof_source,
        "tuning": tuning_context(view.tuning) if view.tuning else None,
        "tuning_data": document_data(view.tuning) if view.tuning else None,
        "tuning_figures": [f"tuning-{k}" for k in range(len(tuning_figs))],
        "gate": view.gate,
        "gate_data": document_data(view.gate) if view.gate else None,
        "fix": view.fix,
        "fix_data": document_data(view.fix) if view.fix else None,
        "notes": view.notes,
        "figure_ids": sorted(figures),
        "trace_name": trace_name,
        "perfetto_url": PERFETTO_URL,
        "figures_json": script_json(figures),
    }


def _rank_views(view: RunView, figures: dict[str, Any]) -> dict[str, Any] | None:
    """The Ranks section of a multi-rank run: heatmap, per-rank breakdown, collective
    timeline; their figures go into `figures`. None for a single rank."""
    from perftune.report.ranks import collective_timeline, collective_timeline_of, step_grid

    section = view.summary.ranks_section if view.summary is not None else None
    if section is None:
        return None
    grid = step_grid(view)
    if grid is not None:
        figures["rank-heatmap"] = F.rank_heatmap_figure(grid)
    rows = section.per_rank
    fig = F.rank_breakdown_figure(rows)
    if fig:
        figures["rank-breakdown"] = fig
    timeline = None
    if view.trace is not None:
        timeline = collective_timeline(view.trace)
    elif view.rank_results:
        timeline = collective_timeline_of(view.rank_results)
    if timeline is not None and timeline.bars:
        figures["rank-collectives"] = F.collective_timeline_figure(timeline)
    return {"section": section, "rows": rows, "grid": grid, "collectives": timeline,
            "straggler": section.straggler, "per_step": section.per_step}


# The page words the host rows more fully than the terminal (report.console).
_HTML_LABELS = {"sync_ms": "host: waiting in sync calls",
                "dataloader_ms": "host: waiting for the DataLoader",
                "optimizer_ms": "host: optimizer step"}
_DEVICE_KEYS = frozenset({"compute_ms", "communication_ms", "memcpy_ms", "memset_ms", "device_idle_ms"})


def render_page(template: str, context: Mapping[str, Any]) -> str:
    """A page from reports/templates: the context plus the inlined CSS, JS and plotly."""
    return b"".join(page_chunks(template, context)).decode("utf-8")


def page_chunks(template: str, context: Mapping[str, Any]) -> list[bytes]:
    """`render_page`'s bytes in three chunks: the page up to plotly.js, plotly.js, the rest.

    The template is rendered around a slot, and plotly.js (4.6 MB) is written between the two
    halves from its bytes: the page never exists as one string (with its copies, ~30 MB of
    `--out`'s peak memory)."""
    css, js = _assets()
    nonce = secrets.token_urlsafe(18)
    slot = f"/*plotly.js {nonce}*/"
    page = environment().get_template(template).render(
        **context, css=css, js=js, plotly_js=slot, nonce=nonce)
    head, tail = page.split(slot)  # exactly one slot: base.html.j2 inlines plotly.js once
    return [head.encode("utf-8"), plotly_js_bytes(), tail.encode("utf-8")]


def render_report_html(view: RunView) -> str:
    return render_page("report.html.j2", report_context(view))


def write_report_html(view: RunView, path: Path) -> Path:
    # Atomic: a reader (or a crash) never sees half a report.
    return write_chunks_atomic(path, page_chunks("report.html.j2", report_context(view)))


def render_diff_html(comparison: Comparison) -> str:
    return b"".join(page_chunks("diff.html.j2", _diff_context(comparison))).decode("utf-8")


def _diff_context(comparison: Comparison) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    fig = F.compare_steps_figure(comparison.a.label, comparison.a.step_ms,
                                 comparison.b.label, comparison.b.step_ms)
    if fig:
        figures["steps"] = fig
    fig = F.compare_breakdown_figure([r.to_dict() for r in comparison.breakdown],
                                     comparison.a.label, comparison.b.label)
    if fig:
        figures["breakdown"] = fig
    context = {"title": f"{comparison.a.label} → {comparison.b.label}", "version": __version__,
               "c": comparison, "figure_ids": sorted(figures), "figures_json": script_json(figures)}
    return context


def write_diff_html(comparison: Comparison, path: Path) -> Path:
    # Atomic: a reader (or a crash) never sees half a report.
    return write_chunks_atomic(path, page_chunks("diff.html.j2", _diff_context(comparison)))


def render_tuning_html(tuning: TuningDocument) -> str:
    """tuning.html: the tuner's results on their own page."""
    figures = {f"tuning-{k}": fig for k, fig in enumerate(figure_dicts(tuning))}
    script = tuning.script.path or tuning.script.module or "script"
    context = {"title": f"perftune tune: {script}", "version": __version__,
               "tuning": tuning_context(tuning), "tuning_figures": sorted(figures),
               "figure_ids": sorted(figures), "figures_json": script_json(figures)}
    return render_page("tuning.html.j2", context)


def write_tuning_html(tuning: TuningDocument, run_dir: Path) -> Path:
    # Atomic: a reader (or a crash) never sees half a page.
    return RunDir(run_dir).write_text(TUNING_HTML, render_tuning_html(tuning))
