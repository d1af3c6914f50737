"""What torch.compile did while the capture ran (compilation.json).

A script under `torch.compile` hides its worst problems from a plain trace: graph breaks that
cut the model into small graphs with eager Python between them, recompilations every few steps,
compile time that dominates a short job. The recorder listens to torch's own records of them:

- compile start/end callbacks (`torch._dynamo.callback`): when each compilation ran, so its
  time lands in the step it ran in, and the user's line that was running (the call into the
  compiled code, or the line after a graph break);
- dynamo's compilation metrics (`torch._dynamo.utils.get_compilation_metrics`): per compiled
  frame the graph's size (ops, nodes), its guards, the guard that failed for a recompilation,
  a failure;
- the `graph_breaks` log artifact (what `TORCH_LOGS=graph_breaks` prints): each break's reason,
  explanation and hints, and the user's stack. A handler of ours receives it without printing
  anything (unless the user turned that log on themselves);
- dynamo's counters (`torch._dynamo.utils.counters`: frames, stats).

Every piece is optional: a torch without one of them still gets the rest, and the document's
note says what was missing. Nothing is attached until the script calls `torch.compile` (or
dynamo is already imported), so a script that never compiles pays nothing and gets no file.
Cost: a clock read and a stack walk per compilation, a regex per logged graph break.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from perftune.documents import CodeSite, CompilationDocument, CompileEvent, GraphBreak, StepCompile
from perftune.trace.frames import Frame, is_user_frame

GRAPH_BREAKS = "graph_breaks"
# dynamo keeps the metrics of its last 64 compilations by default; a long warm-up of a model
# that recompiles can exceed that.
METRICS_LIMIT = 4096
_LOCATION = re.compile(r"in user code at (?P<file>.+?):(?P<line>\d+)")
_STACK_FRAME = re.compile(r'^\s*File "(?P<file>.+?)", line (?P<line>\d+), in (?P<func>.+?)\s*$',
                          re.MULTILINE)


@dataclass
class _Compile:
    compile_id: str | None
    trigger: str
    start: float
    end: float | None = None
    call_site: Frame | None = None


@dataclass
class _Break:
    reason: str
    explanation: str | None
    hints: list[str]
    user: Frame | None
    traced: Frame | None
    compile_id: str | None
    at: float
    count: int = 1


@dataclass
class CompileRecorder:
    """Records compilations and graph breaks; `document(steps)` turns them into compilation.json."""

    clock: Callable[[], float] = time.perf_counter
    attached: bool = False
    called: bool = False          # the script called torch.compile
    enabled: bool = True
    notes: list[str] = field(default_factory=list)
    compiles: list[_Compile] = field(default_factory=list)
    compile_calls: list[Frame] = field(default_factory=list)  # where the script called torch.compile
    breaks: dict[tuple[str, str | None, int | None], _Break] = field(default_factory=dict)
    _open: dict[str, _Compile] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _callbacks: bool = False
    # Called once when the script first compiles (torch.compile called, or a compilation
    # started): the session turns off what would change what dynamo traces.
    on_compile: Callable[[], None] | None = None

    # ------------------------------------------------------------------ install
    def install(self) -> None:
        """Wrap torch.compile (its call sites are recorded, and the first call attaches the
        recorder); attach at once when dynamo is already imported."""
        original = torch.compile
        recorder = self

        def compile_and_record(*args: Any, **kwargs: Any) -> Any:
            if recorder.enabled:
                recorder.called = True
                recorder._compiling()
                site = _user_frame_on_stack()
                if site is not None and site not in recorder.compile_calls:
                    recorder.compile_calls.append(site)
                if not recorder.attached:
                    recorder._attach()
            return original(*args, **kwargs)

        compile_and_record.__wrapped__ = original  # type: ignore[attr-defined]
        compile_and_record.__doc__ = original.__doc__
        torch.compile = compile_and_record  # type: ignore[assignment]

        def restore() -> None:
            if torch.compile is compile_and_record:
                torch.compile = original
        self._undo.append(restore)
        if "torch._dynamo" in sys.modules:
            self._attach()

    def _attach(self) -> None:
        if self.attached or not self.enabled:
            return
        self.attached = True
        try:
            import torch._dynamo  # noqa: F401  (what torch.compile imports anyway)
        except Exception as exc:
            self.notes.append(f"torch._dynamo could not be imported ({type(exc).__name__}: {exc})")
            return
        self._skip_own_wrappers()
        self._attach_callbacks()
        self._attach_metrics()
        self._attach_break_log()

    def _skip_own_wrappers(self) -> None:
        """Keep dynamo out of perftune's own frames. Its step hook on `nn.Module.__call__` runs
        inside a compiled module's call, and so does the bookkeeping it calls (the session's
        boundary handling): dynamo would compile each as a frame of its own, guarded on the
        module's type and its inputs, adding graphs, guard checks and recompilations the
        script does not have. Skipping their code (each frame alone: what they call, such as
        the module's forward, is left to dynamo as without perftune) prevents that."""
        try:
            from torch._dynamo.eval_frame import skip_code
        except ImportError:
            self.notes.append("perftune's own hooks may show up as compiled frames "
                              "(this torch has no skip_code)")
            return
        for code in _own_code():
            skip_code(code)

    def _attach_callbacks(self) -> None:
        try:
            from torch._dynamo.callback import callback_handler
        except ImportError:
            self.notes.append("this torch has no compile callbacks (torch._dynamo.callback): "
                              "compile times come from dynamo's metrics, without call sites")
            return
        callback_handler.register_start_callback(self._started)
        callback_handler.register_end_callback(self._ended)
        self._callbacks = True

        def detach() -> None:
            for remove, cb in ((callback_handler.remove_start_callback, self._started),
                               (callback_handler.remove_end_callback, self._ended)):
                with contextlib.suppress(ValueError):
                    remove(cb)
        self._undo.append(detach)

    def _attach_metrics(self) -> None:
        try:
            from torch._dynamo import utils
        except ImportError:
            return
        setter = getattr(utils, "set_compilation_metrics_limit", None)
        current = getattr(utils, "_compilation_metrics", None)
        if setter is None or getattr(current, "maxlen", METRICS_LIMIT) >= METRICS_LIMIT:
            return
        with contextlib.suppress(Exception):
            setter(METRICS_LIMIT)

    def _attach_break_log(self) -> None:
        loggers = _artifact_loggers(GRAPH_BREAKS)
        if not loggers:
            self.notes.append("this torch logs no graph breaks (no 'graph_breaks' log artifact): "
                              "breaks are counted from dynamo's counters only")
            return
        handler = _BreakHandler(self)
        for log in loggers:
            user_enabled = log.isEnabledFor(logging.DEBUG)  # TORCH_LOGS=graph_breaks: keep printing
            level, propagate = log.level, log.propagate
            log.addHandler(handler)
            if not user_enabled:
                log.setLevel(logging.DEBUG)
                log.propagate = False

            def detach(log: logging.Logger = log, level: int = level, propagate: bool = propagate,
                       user_enabled: bool = user_enabled) -> None:
                log.removeHandler(handler)
                if not user_enabled:
                    log.setLevel(level)
                    log.propagate = propagate
            self._undo.append(detach)

    def detach(self) -> None:
        """Undo every hook (the script ended, or a forked worker)."""
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def forked(self) -> None:
        self.enabled = False
        self.detach()

    # ------------------------------------------------------------------ events
    def _compiling(self) -> None:
        hook, self.on_compile = self.on_compile, None
        if hook is not None:
            with contextlib.suppress(Exception):
                hook()

    def _started(self, args: Any) -> None:
        if not self.enabled:
            return
        self._compiling()
        now = self.clock()
        trigger = getattr(getattr(args, "callback_trigger", None), "name", "DYNAMO").lower()
        compile_id = getattr(args, "compile_id", None)
        event = _Compile(str(compile_id) if compile_id is not None else None, trigger, now,
                         call_site=_user_frame_on_stack())
        with self._lock:
            self.compiles.append(event)
            self._open[f"{trigger}:{event.compile_id}"] = event

    def _ended(self, args: Any) -> None:
        now = self.clock()
        trigger = getattr(getattr(args, "callback_trigger", None), "name", "DYNAMO").lower()
        compile_id = getattr(args, "compile_id", None)
        key = f"{trigger}:{compile_id if compile_id is None else str(compile_id)}"
        with self._lock:
            event = self._open.pop(key, None)
            if event is None and self._open:  # ids differ between start and end: the oldest
                event = self._open.pop(next(iter(self._open)))
        if event is not None:
            event.end = now

    def graph_break(self, message: str, compile_id: str | None) -> None:
        if not self.enabled:
            return
        parsed = parse_graph_break(message)
        if parsed is None:
            return
        reason, explanation, hints, user, traced = parsed
        place = user or traced
        key = (reason, place.file if place else None, place.line if place else None)
        with self._lock:
            found = self.breaks.get(key)
            if found is not None:
                found.count += 1
                found.explanation = found.explanation or explanation
                found.hints = found.hints or hints
                return
            self.breaks[key] = _Break(reason, explanation, hints, user, traced, compile_id,
                                      self.clock())

    # ------------------------------------------------------------------ the document
    @property
    def used(self) -> bool:
        return self.called or bool(self.compiles) or bool(self.breaks)

    def document(self, t0: float, steps: Sequence[dict[str, Any]]) -> CompilationDocument | None:
        """compilation.json for the steps as steps.json lists them (start_s, duration_ms, phase,
        times relative to `t0` on this recorder's clock); None when nothing was compiled."""
        metrics = _compilation_metrics()
        events = list(self.compiles)
        notes = list(self.notes)
        if not self._callbacks and metrics:
            events = _events_from_metrics(metrics, self.clock)
        if not self.used and not events:
            return None
        by_id = _metrics_by_id(metrics)
        compiles: list[CompileEvent] = []
        per_step: dict[int, StepCompile] = {}
        outside = 0.0
        for e in events:
            end = e.end if e.end is not None else e.start
            duration = max(end - e.start, 0.0)
            start_s = e.start - t0
            step = _step_at(steps, start_s)
            index = None if step is None else int(step["index"])
            phase = None if step is None else str(step["phase"])
            m = by_id.get((e.compile_id, e.trigger != "lazy_backward"))
            compiles.append(_compile_event(e, m, round(start_s, 6), round(duration, 6),
                                           index, phase))
            if index is None:
                outside += duration
            else:
                entry = per_step.setdefault(index, StepCompile(index=index, phase=phase or "",
                                                               compile_s=0.0, compiles=0))
                entry.compile_s += duration
                entry.compiles += 1
        for entry in per_step.values():
            entry.compile_s = round(entry.compile_s, 6)
        breaks = []
        for b in self.breaks.values():
            step = _step_at(steps, b.at - t0)
            place = b.user
            breaks.append(GraphBreak(
                reason=b.reason, explanation=b.explanation, hints=b.hints,
                file=place.file if place else None, line=place.line if place else None,
                function=place.function if place else None,
                traced_file=b.traced.file if b.traced else None,
                traced_line=b.traced.line if b.traced else None,
                compile_id=b.compile_id,
                step=None if step is None else int(step["index"]),
                phase=None if step is None else str(step["phase"]), count=b.count))
        counters = _counters()
        if not self.breaks and counters.get("graph_break"):
            notes.append(f"dynamo counted {sum(counters['graph_break'].values())} graph break(s) "
                         "that its log did not show (their lines are unknown)")
        total = sum(c.duration_s for c in compiles)
        return CompilationDocument(
            enabled=True, note="; ".join(notes) or None, compiled=bool(compiles),
            total_compile_s=round(total, 6), outside_steps_s=round(outside, 6),
            steps=sorted(per_step.values(), key=lambda s: s.index), compiles=compiles,
            graph_breaks=breaks,
            compile_calls=[CodeSite(file=f.file, line=f.line, function=f.function)
                           for f in self.compile_calls],
            counters={k: v for k, v in counters.items() if k in ("frames", "stats", "resumes")})


# ---------------------------------------------------------------------------- helpers
class _BreakHandler(logging.Handler):
    def __init__(self, recorder: CompileRecorder) -> None:
        super().__init__(logging.DEBUG)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        # A log handler must never break the user's compilation.
        with contextlib.suppress(Exception):
            self.recorder.graph_break(record.getMessage(), _current_compile_id())


def _own_code() -> list[types.CodeType]:
    """The code of every function of perftune's capture child (module functions, methods and
    the closures inside them, such as the hooks it patches into torch)."""
    found: dict[int, types.CodeType] = {}

    def add(code: types.CodeType) -> None:
        if id(code) in found:
            return
        found[id(code)] = code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    def add_function(obj: Any) -> None:
        code = getattr(obj, "__code__", None)
        if isinstance(code, types.CodeType) and "/perftune/capture/" in \
                code.co_filename.replace("\\", "/"):
            add(code)

    for name, module in list(sys.modules.items()):
        if not name.startswith("perftune.capture.child") or module is None:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, type):
                for member in list(vars(obj).values()):
                    add_function(getattr(member, "__func__", member))
                    if isinstance(member, property):
                        for accessor in (member.fget, member.fset, member.fdel):
                            add_function(accessor)
            else:
                add_function(obj)
    add_function(torch.nn.Module.__call__)  # the step hook, while it is patched in
    return list(found.values())


def _artifact_loggers(artifact: str) -> list[logging.Logger]:
    suffix = f".__{artifact}"
    names = [n for n in list(logging.root.manager.loggerDict) if n.endswith(suffix)]
    return [logging.getLogger(n) for n in sorted(names)]


def _current_compile_id() -> str | None:
    try:
        found = torch._guards.CompileContext.current_compile_id()
    except Exception:
        return None
    return None if found is None else str(found)


def _user_frame_on_stack() -> Frame | None:
    frame = sys._getframe(2)
    while frame is not None:
        candidate = Frame(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        if is_user_frame(candidate):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


def parse_graph_break(message: str) -> tuple[str, str | None, list[str], Frame | None,
                                               Frame | None] | None:
    """(reason, explanation, hints, innermost user frame, where dynamo stopped) of a message of
    the `graph_breaks` log artifact; None for anything else."""
    head, _, rest = message.partition("\n")
    located = _LOCATION.search(head)
    if located is None:
        return None
    traced = Frame(located.group("file"), int(located.group("line")), "")
    body, _, stack = rest.partition("User code traceback:")
    if "Graph Break Reason:" in head:
        body = head.split("Graph Break Reason:", 1)[1] + "\n" + body
    elif "Graph Break Reason:" in body:
        body = body.split("Graph Break Reason:", 1)[1]
    reason, explanation, hints = _split_reason(body)
    frames = [Frame(m.group("file"), int(m.group("line")), m.group("func"))
              for m in _STACK_FRAME.finditer(stack)]
    user = next((f for f in reversed(frames) if is_user_frame(f)), None)
    if user is None and is_user_frame(traced):
        user = traced
    return reason, explanation, hints, user, traced


def _split_reason(body: str) -> tuple[str, str | None, list[str]]:
    reason = ""
    explanation: str | None = None
    hints: list[str] = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith(("Developer debug context", "For more details")):
            continue
        if line.startswith("Encountered graph break when attempting to trace"):
            continue
        if line.startswith("Explanation:"):
            explanation = explanation or line.removeprefix("Explanation:").strip()
        elif line.startswith("Hint:"):
            hints.append(line.removeprefix("Hint:").strip())
        elif not reason:
            reason = line
    return reason or "graph break", explanation, hints


def _step_at(steps: Sequence[dict[str, Any]], at_s: float) -> dict[str, Any] | None:
    for step in steps:
        start = float(step["start_s"])
        if start <= at_s < start + float(step["duration_ms"]) / 1000.0:
            return step
    return None


def _compilation_metrics() -> list[Any]:
    try:
        from torch._dynamo.utils import get_compilation_metrics
    except Exception:
        return []
    try:
        return list(get_compilation_metrics())
    except Exception:
        return []


def _metrics_by_id(metrics: Sequence[Any]) -> dict[tuple[str | None, bool], Any]:
    """compile id, forward? → its last metrics (runtime records left out)."""
    found: dict[tuple[str | None, bool], Any] = {}
    for m in metrics:
        if getattr(m, "is_runtime", False):
            continue
        found[(getattr(m, "compile_id", None), getattr(m, "is_forward", True) is not False)] = m
    return found


def _events_from_metrics(metrics: Sequence[Any], clock: Callable[[], float]) -> list[_Compile]:
    """Compile events from dynamo's metrics alone (a torch without compile callbacks): their
    wall-clock times mapped onto the recorder's clock."""
    offset = clock() - time.time()
    events = []
    for m in metrics:
        start_us, end_us = getattr(m, "start_time_us", None), getattr(m, "end_time_us", None)
        if start_us is None or end_us is None or getattr(m, "is_runtime", False):
            continue
        trigger = "dynamo" if getattr(m, "is_forward", True) is not False else "lazy_backward"
        events.append(_Compile(getattr(m, "compile_id", None), trigger,
                               start_us / 1e6 + offset, end_us / 1e6 + offset))
    return events


def _compile_event(e: _Compile, m: Any, start_s: float, duration_s: float, step: int | None,
                   phase: str | None) -> CompileEvent:
    site = e.call_site
    fail_type = getattr(m, "fail_type", None)
    fail_reason = getattr(m, "fail_reason", None)
    recompile = getattr(m, "recompile_reason", None) if e.trigger == "dynamo" else None
    return CompileEvent(
        compile_id=e.compile_id, trigger=e.trigger, start_s=start_s, duration_s=duration_s,
        step=step, phase=phase,
        code=getattr(m, "co_name", None), code_file=getattr(m, "co_filename", None),
        code_line=getattr(m, "co_firstlineno", None),
        call_site=CodeSite(file=site.file, line=site.line, function=site.function) if site else None,
        graph_ops=getattr(m, "graph_op_count", None) if e.trigger == "dynamo" else None,
        graph_nodes=getattr(m, "graph_node_count", None) if e.trigger == "dynamo" else None,
        guards=getattr(m, "guard_count", None),
        recompile_reason=str(recompile).strip() or None if recompile else None,
        failed=f"{fail_type}: {fail_reason}" if fail_type else None,
        installed=getattr(m, "has_guarded_code", None))


def _counters() -> dict[str, dict[str, int]]:
    try:
        from torch._dynamo.utils import counters
    except Exception:
        return {}
    try:
        return {str(k): {str(kk): int(vv) for kk, vv in v.items()} for k, v in counters.items()}
    except Exception:
        return {}
