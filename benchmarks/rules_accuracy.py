"""Precision, recall and right-line rate of the rule catalogue, on the field corpus, the
samples and real GPU traces.

Corpus (tests/field/*.py) and samples (samples/*.py): each script is profiled on this machine
with `perftune profile` (a real CPU run, torch.profiler with Python stacks; a script saying
`perftune-run: ARGS` in its text gets those profile options, e.g. `--nproc-per-node 2`), the
whole catalogue runs on the trace, and each finding is scored against the script's truth
markers:

- `# perftune: expect[PFTnnn]` on a line that must be reported there;
- `# perftune: not[PFTnnn,...]` or `not[*]` on a line that must not be;
- `perftune: file-expect[PFTnnn]` (anywhere in the file): a finding of that code, wherever it is
  reported (whole-step findings have no line);
- `perftune: file-not[PFTnnn]`: no finding of that code at all;
- `# perftune: may[PFTnnn]` on a line where the finding is defensible but not required (advice
  whose threshold the script sits on: on a quiet two-core CPU the official VAE example's
  matrix share of the step measures 29-32 % against the compute-bound line of 30 %): a
  finding there is right, its absence is no miss;
- `# perftune: expect-if[PFTnnn](CONDITION)`, `not-if[...](CONDITION)`, `may-if[...]`, `file-expect-if`,
  `file-not-if`: truth that holds only on some machines (lower precision pays off only on a
  CPU with bf16 units): where CONDITION holds on the machine the run recorded, the marker
  counts as its plain form (`expect`, `not`, ...); where it does not, it says nothing (a
  script states each machine's truth with a pair, e.g. `expect-if[PFT507](cpu-bf16)
  not-if[PFT507](cpu&!cpu-bf16)`, and leaves machines it cannot vouch for unstated).
  CONDITION is words of MACHINE_CONDITIONS joined by `|` (any) and `&` (all), each may be
  negated with `!`; they are read from what `perftune profile` recorded in the trace (the
  `perftune.host` header: CPU flags, oneDNN) and the trace itself (device activity, GPU
  properties). An unknown word is an error.

A finding at a marked line with the marked code is right (true positive, right line); a finding
whose code matches an `expect` marker of the file at another line (or at no line, or in a
library file) found the problem at the *wrong line*; a marker with no finding of its code is a
miss; any other finding is a false positive, and one at a `not[...]` line (or of a `file-not`
code) is also a *violation*. Trace-quality findings (PFT9xx) describe the trace, not the code:
they are listed, not scored; so are PFT509/PFT510 (batch size, intra-op threads), which depend
on the cores and their load at the time of the run — a `not[...]` line still forbids them.
PFT507/PFT508 (lower precision, channels_last) are scored through machine-conditional markers.
precision = (right + wrong line) / scored findings; recall =
markers found (at any line) / markers; right-line rate = right / (right + wrong line).

Real GPU traces (../shared/traces): the known problems in them must be found where they are,
and the known false positives (issue 13, section 5) must not be reported.

    python benchmarks/rules_accuracy.py [--runs DIR] [--reuse] [--only NAME ...]
        [--ignore PFT507,PFT508] [--markdown benchmarks/rules_accuracy.md]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CORPUS = ROOT / "tests" / "field"
TRACES = ROOT.parent / "shared" / "traces"
_GROUP = re.compile(r"(file-expect-if|file-not-if|expect-if|not-if|may-if|file-expect|file-not|expect|not|may)\[([A-Z0-9*, ]+)\]"
                    r"(?:\(([^)]*)\))?")
_RUN_ARGS = re.compile(r"perftune-run:\s*(.+)$")
_SCRIPT_ARGS = re.compile(r"perftune-args:\s*(.+)$")
_OWN_TRACES = re.compile(r"perftune-traces:\s*(\S+)")
_ALL = "*"
# The sha256 of the script a run folder profiled: `--reuse` (and PERFTUNE_FIELD_RUNS) reuse a
# run only for the very text it profiled — a run of an edited script, or of another checkout's
# copy, has its findings at that text's lines, not at the markers of this one.
SCRIPT_DIGEST = "script.sha256"


# ---------------------------------------------------------------------------- truth markers
@dataclass
class Truth:
    """What a script says about itself."""

    name: str
    expect: set[tuple[str, int]] = field(default_factory=set)       # (code, line)
    forbid: dict[int, set[str]] = field(default_factory=dict)       # line -> codes or {"*"}
    allow: set[tuple[str, int]] = field(default_factory=set)        # (code, line): may, not must
    file_expect: set[str] = field(default_factory=set)
    file_forbid: set[str] = field(default_factory=set)
    run_args: tuple[str, ...] = ()      # `perftune profile` options
    script_args: tuple[str, ...] = ()   # the script's own arguments ({run}: the run folder)
    own_traces: str | None = None       # where the script's own profiler writes ({run})
    # (kind "expect" | "not" | "may" | "file-expect" | "file-not", code, line or None, condition)
    conditional: list[tuple[str, str, int | None, str]] = field(default_factory=list)

    def on(self, machine: frozenset[str]) -> Truth:
        """The truth on a machine with these MACHINE_CONDITIONS: each conditional marker whose
        condition holds, as its plain form."""
        out = Truth(self.name, set(self.expect), {k: set(v) for k, v in self.forbid.items()},
                    set(self.allow), set(self.file_expect), set(self.file_forbid), self.run_args,
                    self.script_args, self.own_traces, list(self.conditional))
        for kind, code, line, condition in self.conditional:
            if not holds_on(condition, machine):
                continue
            if kind == "expect" and line is not None:
                out.expect.add((code, line))
            elif kind == "not" and line is not None:
                out.forbid.setdefault(line, set()).add(code)
            elif kind == "may" and line is not None:
                out.allow.add((code, line))
            elif kind == "file-expect":
                out.file_expect.add(code)
            else:
                out.file_forbid.add(code)
        return out

    def without(self, ignore: Sequence[str]) -> Truth:
        """The truth with the codes (or prefixes) in `ignore` left out, markers included."""
        def kept(code: str) -> bool:
            return not any(code.startswith(i) for i in ignore)

        return Truth(self.name, {m for m in self.expect if kept(m[0])},
                     {k: {c for c in v if c == _ALL or kept(c)} for k, v in self.forbid.items()},
                     {m for m in self.allow if kept(m[0])},
                     {c for c in self.file_expect if kept(c)}, {c for c in self.file_forbid if kept(c)},
                     self.run_args, self.script_args, self.own_traces,
                     [m for m in self.conditional if kept(m[1])])

    def forbidden_at(self, code: str, line: int | None) -> bool:
        if code in self.file_forbid:
            return True
        codes = self.forbid.get(line or -1, set())
        return _ALL in codes or code in codes


def read_truth(path: Path) -> Truth:
    """The truth markers of one script (see the module docstring)."""
    truth = Truth(path.name)
    for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        run = _RUN_ARGS.search(text)
        if run:
            truth.run_args = tuple(shlex.split(run.group(1)))
        args = _SCRIPT_ARGS.search(text)
        if args:
            truth.script_args = tuple(shlex.split(args.group(1)))
        own = _OWN_TRACES.search(text)
        if own:
            truth.own_traces = own.group(1)
        if "perftune:" not in text:
            continue
        for kind, group, condition in _GROUP.findall(text.split("perftune:", 1)[1]):
            codes = {c.strip() for c in group.split(",") if c.strip()}
            if kind.endswith("-if"):
                if not condition.strip():
                    raise ValueError(f"{path.name}:{lineno}: {kind}[...] needs a (CONDITION)")
                holds_on(condition, frozenset())  # unknown words fail here, not at scoring
                base = kind[:-3]
                truth.conditional += [(base, c, None if base.startswith("file-") else lineno,
                                       condition)
                                      for c in sorted(codes)]
            elif kind == "expect":
                truth.expect |= {(c, lineno) for c in codes}
            elif kind == "not":
                truth.forbid.setdefault(lineno, set()).update(codes)
            elif kind == "may":
                truth.allow |= {(c, lineno) for c in codes}
            elif kind == "file-expect":
                truth.file_expect |= codes
            else:
                truth.file_forbid |= codes
    return truth


# ---------------------------------------------------------------------------- machine conditions
MACHINE_CONDITIONS = {
    "cpu": "a CPU run (no device activity in the trace)",
    "gpu": "device activity in the trace",
    "cpu-bf16": "a CPU run on a CPU with AMX-BF16 tiles or AVX-512 BF16 (recorded CPU flags)",
    "cpu-amx": "a CPU run on a CPU with AMX-BF16 tiles",
    "onednn": "a CPU run with oneDNN (mkldnn) available in torch",
    "tensor-cores": "a GPU run on a GPU with tensor cores (Volta and later, CDNA)",
    "contended": "a CPU run whose threads competed with other processes for the cores"
                 " (perftune.analysis.efficiency.threads_oversubscribed: over the profiled window"
                 " the process's threads waited for a core more than 15 % of the time they were"
                 " runnable, or the hypervisor stole over 10 %; else the load average at the"
                 " window's start or end less the process's threads above its usable cores)",
}


def holds_on(condition: str, machine: frozenset[str]) -> bool:
    """Whether `a|b&!c` holds for a machine with these conditions (ValueError on an unknown
    word)."""
    def term(word: str) -> bool:
        word = word.strip()
        negated = word.startswith("!")
        word = word.lstrip("!").strip()
        if word not in MACHINE_CONDITIONS:
            raise ValueError(f"unknown machine condition {word!r} (known: "
                             f"{', '.join(MACHINE_CONDITIONS)})")
        return (word in machine) != negated

    return any(all([term(w) for w in conj.split("&")]) for conj in condition.split("|"))


def machine_of(trace: Any) -> frozenset[str]:
    """The MACHINE_CONDITIONS that hold for the machine a trace was recorded on."""
    from perftune.analysis.efficiency import host_facts, threads_oversubscribed
    from perftune.trace import device_specs

    if trace.has_device_activity:
        props = trace.device_properties[0] if trace.device_properties else None
        return frozenset({"gpu"} | ({"tensor-cores"} if device_specs.has_tensor_cores(props) else set()))
    host = host_facts(trace) or {}
    flags = set(host.get("cpu_flags") or [])
    out = {"cpu"}
    if flags & {"amx_bf16", "avx512_bf16"}:
        out.add("cpu-bf16")
    if "amx_bf16" in flags:
        out.add("cpu-amx")
    if host.get("mkldnn"):
        out.add("onednn")
    if threads_oversubscribed(host):
        out.add("contended")
    return frozenset(out)


def markers(path: Path) -> set[tuple[str, str, int]]:
    """(code, file name, line) of every `# perftune: expect[...]` in a script."""
    return {(code, path.name, line) for code, line in read_truth(path).expect}


def scripts(folder: Path) -> list[Path]:
    """The scripts of a folder that carry truth markers (and samples/clean.py)."""
    out = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("test_", "conftest")):
            continue
        t = read_truth(path)
        if (t.expect or t.forbid or t.file_expect or t.file_forbid or t.conditional
                or path.name == "clean.py"):
            out.append(path)
    return out


# ---------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Scored:
    """One finding, judged."""

    code: str
    where: str
    verdict: str      # right | wrong-line | false-positive | unscored
    violation: bool   # at a not[...] line or of a file-not code
    severity: str
    saving_ms: float


@dataclass
class ScriptResult:
    name: str
    truth: Truth
    findings: list[Scored] = field(default_factory=list)
    found: set[tuple[str, int]] = field(default_factory=set)          # markers found at the line
    found_elsewhere: set[tuple[str, int]] = field(default_factory=set)
    missed: set[tuple[str, int]] = field(default_factory=set)
    file_found: set[str] = field(default_factory=set)
    file_missed: set[str] = field(default_factory=set)
    error: str | None = None
    machine: frozenset[str] | None = None

    @property
    def violations(self) -> list[Scored]:
        return [f for f in self.findings if f.violation]


def _loc(f: Any) -> tuple[str, int | None]:
    return (Path(f.location.file).name if f.location.file else "", f.location.line)


# Advice that depends on the cores and their load at the time of the run, not on the script:
# not scored (PFT507/PFT508 depend on the machine's units: machine-conditional markers).
MACHINE_ADVICE = frozenset({"PFT509", "PFT510"})


def score_script(truth: Truth, findings: Iterable[Any],
                 machine: frozenset[str] | None = None) -> ScriptResult:
    """Judge every finding of one script's run against its truth on the machine the run was
    recorded on (`machine_of`; machine-conditional markers need it)."""
    if truth.conditional:  # (resolving twice changes nothing)
        if machine is None:
            raise ValueError(f"{truth.name}: machine-conditional markers need the run's machine")
        truth = truth.on(machine)
    result = ScriptResult(truth.name, truth, machine=machine)
    findings = list(findings)
    expect_codes = {c for c, _ in truth.expect}
    at_line = {(f.code, _loc(f)[1]) for f in findings if _loc(f)[0] == truth.name}
    result.found = {m for m in truth.expect if m in at_line}
    for f in findings:
        fname, line = _loc(f)
        here = fname == truth.name
        if f.code.startswith("PFT9") or f.code in MACHINE_ADVICE:
            verdict = "unscored"
        elif here and ((f.code, line) in truth.expect or (f.code, line) in truth.allow):
            verdict = "right"
        elif f.code in truth.file_expect:
            verdict = "right"
            result.file_found.add(f.code)
        elif f.code in expect_codes:
            verdict = "wrong-line"
        else:
            verdict = "false-positive"
        violation = (here or not fname) and truth.forbidden_at(f.code, line if here else None)
        if f.code in truth.file_forbid:
            violation = True
        where = f"{fname or '<trace>'}:{line}" if fname else "<trace>"
        result.findings.append(Scored(f.code, where, verdict, violation, f.severity.value,
                                      float(f.est_saving_ms_per_step)))
    wrong = [s for s in result.findings if s.verdict == "wrong-line"]
    for code, line in sorted(truth.expect - result.found):
        hit = next((s for s in wrong if s.code == code), None)
        if hit is not None:
            result.found_elsewhere.add((code, line))
        else:
            result.missed.add((code, line))
    result.file_missed = truth.file_expect - result.file_found
    return result


@dataclass
class Tally:
    right: int = 0
    wrong_line: int = 0
    false_pos: int = 0
    markers: int = 0
    markers_found: int = 0
    violations: int = 0

    def add_finding(self, s: Scored) -> None:
        if s.verdict == "right":
            self.right += 1
        elif s.verdict == "wrong-line":
            self.wrong_line += 1
        elif s.verdict == "false-positive":
            self.false_pos += 1
        self.violations += s.violation

    @property
    def precision(self) -> float | None:
        n = self.right + self.wrong_line + self.false_pos
        return (self.right + self.wrong_line) / n if n else None

    @property
    def recall(self) -> float | None:
        return self.markers_found / self.markers if self.markers else None

    @property
    def right_line(self) -> float | None:
        n = self.right + self.wrong_line
        return self.right / n if n else None


def tally(results: Sequence[ScriptResult]) -> tuple[Tally, dict[str, Tally]]:
    """Overall and per-rule figures over scored scripts."""
    total, per_code = Tally(), {}
    for r in results:
        for s in r.findings:
            if s.verdict == "unscored":
                continue
            total.add_finding(s)
            per_code.setdefault(s.code, Tally()).add_finding(s)
        for code, _ in r.truth.expect:
            per_code.setdefault(code, Tally()).markers += 1
            total.markers += 1
        for code, _ in r.found | r.found_elsewhere:
            per_code[code].markers_found += 1
            total.markers_found += 1
        for code in r.truth.file_expect:
            per_code.setdefault(code, Tally()).markers += 1
            total.markers += 1
        for code in r.file_found:
            per_code[code].markers_found += 1
            total.markers_found += 1
    return total, per_code


# ---------------------------------------------------------------------------- running
def _traces(run_dir: Path, own: str | None) -> list[Path]:
    from perftune.rundir import RunDir

    if not run_dir.is_dir():
        return []
    found = RunDir(run_dir).traces()
    if not found and own:
        folder = Path(own.replace("{run}", str(run_dir)))
        found = sorted(p for p in folder.glob("*.json*") if p.is_file()) if folder.is_dir() else []
    return found


def profile(script: Path, run_dir: Path, reuse: bool, extra: Sequence[str] = (),
            timeout: float = 600, script_args: Sequence[str] = (),
            own_traces: str | None = None) -> tuple[list[Path], str | None]:
    """Profile one script into run_dir (once: reused with `reuse` while the script's text is
    the one profiled there); its traces (perftune's, or those its own profiler wrote into
    `own_traces`), or an error."""
    stamp = run_dir / SCRIPT_DIGEST
    digest = hashlib.sha256((ROOT / script).read_bytes()).hexdigest()
    if reuse and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
        traces = _traces(run_dir, own_traces)
        if traces:
            return traces, None
    args = [a.replace("{run}", str(run_dir)) for a in script_args]
    cmd = [sys.executable, "-m", "perftune", "profile", "--no-analyze", "--quiet", *extra,
           *(["--force"] if run_dir.exists() else []), "--out", str(run_dir), str(script), *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return [], f"profile timed out after {timeout:.0f} s"
    traces = _traces(run_dir, own_traces)
    if not traces:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        return [], f"no trace (exit {proc.returncode}): {tail}"
    stamp.write_text(digest + "\n", encoding="utf-8")
    return traces, None


def analyse_run(run_dir: Path, traces: Sequence[Path], ignore: Sequence[str] = ()) -> list[Any]:
    """The findings `perftune analyze RUN_DIR` would report (every rule, preview included,
    but the codes or prefixes in `ignore`), with source lines read from the checkout."""
    from perftune.pipeline import RuleSelection, analyze_paths

    return list(analyze_paths(traces, RuleSelection(ignore=tuple(ignore), preview=True),
                              [ROOT]).findings)


def run_script(script: Path, runs: Path, reuse: bool, ignore: Sequence[str] = ()) -> ScriptResult:
    truth = read_truth(script).without(ignore)
    run_dir = runs / script.parent.name / script.stem
    traces, error = profile(script.relative_to(ROOT), run_dir, reuse, truth.run_args,
                            script_args=truth.script_args, own_traces=truth.own_traces)
    if error:
        result = ScriptResult(truth.name, truth, missed=set(truth.expect),
                              file_missed=set(truth.file_expect), error=error)
        return result
    from perftune.trace import load

    return score_script(truth, analyse_run(run_dir, traces, ignore), machine_of(load(traces[0])))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def describe(result: ScriptResult) -> list[str]:
    if result.error:
        return [f"{result.name}: capture failed: {result.error}"]
    on = f" (machine: {', '.join(sorted(result.machine))})" if result.truth.conditional and \
        result.machine is not None else ""
    lines = [f"{result.name}: {len(result.truth.expect) + len(result.truth.file_expect)} expected,"
             f" {len(result.findings)} findings{on}"]
    tag = {"right": "OK ", "wrong-line": "WL ", "false-positive": "FP ", "unscored": "-- "}
    for s in result.findings:
        lines.append(f"  {tag[s.verdict]}{s.code} {s.where} {s.severity}"
                     f"{'  NOT-VIOLATION' if s.violation else ''}")
    for code, line in sorted(result.missed):
        lines.append(f"  FN {code} {result.name}:{line} (expected, not found)")
    for code in sorted(result.file_missed):
        lines.append(f"  FN {code} {result.name} (expected anywhere, not found)")
    return lines


# ---------------------------------------------------------------------------- real traces
@dataclass(frozen=True)
class RealCheck:
    trace: str
    code: str
    what: str
    test: Callable[[Any], bool]  # what a matching Finding must satisfy
    absent: bool = False  # a known false positive: the check holds when no finding matches


REAL_CHECKS = (
    RealCheck("TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz", "PFT206",
              "the .item()/is_nonzero sync in transformers/modeling_attn_mask_utils.py(429), at the"
              " harness's call line with the library function named",
              lambda f: f.location.file.endswith("text_base_model.py") and f.location.line == 28
              and "modeling_attn_mask_utils" in f.evidence.get("via_frames", [""])[-1]
              and f.op_chain[-1] == "cudaStreamSynchronize" and not f.latent),
    RealCheck("param__resnet_kineto.json.gz", "PFT208",
              "61 pageable host→device copies, each paired with cudaStreamSynchronize",
              lambda f: f.count == 61 and "cudaStreamSynchronize" in f.op_chain),
    RealCheck("param__resnet_kineto.json.gz", "PFT209", "the same 61 copies are blocking",
              lambda f: f.count == 61),
    RealCheck("param__resnet_kineto.json.gz", "PFT101", "input-bound: DataLoader wait",
              lambda f: f.evidence["share"] > 0.3),
    RealCheck("param__resnet_kineto.json.gz", "PFT103", "batch copies from pageable memory",
              lambda f: f.count >= 58),
    RealCheck("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz", "PFT206",
              "`if t.sum() > 0:` → is_nonzero → item → _local_scalar_dense → memcpy + sync",
              lambda f: f.op_chain[:3] == ("aten::is_nonzero", "aten::item",
                                           "aten::_local_scalar_dense")
              and f.op_chain[-1] == "cudaStreamSynchronize"),
    RealCheck("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz", "PFT211",
              "explicit cudaEventSynchronize / cudaDeviceSynchronize in the step",
              lambda f: f.op_chain[-1] in ("cudaEventSynchronize", "cudaDeviceSynchronize")),
    RealCheck("HolisticTraceAnalysis__nccl_data.json.gz", "PFT603",
              "not: DataParallel on a DistributedDataParallel job", lambda f: True, absent=True),
)


def real_traces() -> tuple[list[str], int, int]:
    from perftune.engine.registry import run_rules, select_rules
    from perftune.trace import load

    lines, hits = [], 0
    cache: dict[str, list] = {}
    for check in REAL_CHECKS:
        path = TRACES / check.trace
        if not path.exists():
            lines.append(f"| {check.trace} | {check.code} | {check.what} | skipped (no file) |")
            continue
        if check.trace not in cache:
            cache[check.trace] = run_rules(load(path), select_rules(preview=True))
        ok = [f for f in cache[check.trace] if f.code == check.code
              and check.test(f)]
        if check.absent:
            hits += not ok
            shown = (f"**reported** at {ok[0].location}: {ok[0].message[:80]}" if ok
                     else "absent, as it should be")
        else:
            hits += bool(ok)
            shown = f"{ok[0].location} ×{ok[0].count}, {ok[0].severity.value}" if ok else "**missed**"
        lines.append(f"| {check.trace.split('__')[0]} `{check.trace.split('__', 1)[-1][:38]}` | "
                     f"{check.code} | {check.what} | {shown} |")
    return lines, hits, len(REAL_CHECKS)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "perftune-runs" / "rules-accuracy")
    parser.add_argument("--reuse", action="store_true", help="reuse traces already in --runs")
    parser.add_argument("--only", nargs="*", default=None,
                        help="only these scripts (file names in tests/field or samples)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the report here")
    parser.add_argument("--ignore", default="",
                        help="rule codes or prefixes left out of the scoring, findings and markers"
                             " (PFT507,PFT508)")
    args = parser.parse_args(argv)
    ignore = tuple(c.strip() for c in args.ignore.split(",") if c.strip())

    started = time.time()
    sets: dict[str, list[ScriptResult]] = {}
    for label, folder in (("corpus", CORPUS), ("samples", SAMPLES)):
        chosen = [p for p in scripts(folder) if not args.only or p.name in args.only]
        results = []
        for script in chosen:
            print(f"{label}: {script.name}", file=sys.stderr, flush=True)
            results.append(run_script(script, args.runs, args.reuse, ignore))
        sets[label] = results
    real_lines, real_hits, real_total = real_traces()
    elapsed = time.time() - started

    for label, results in sets.items():
        print(f"== {label}")
        for r in results:
            print("\n".join(describe(r)))
        total, _ = tally(results)
        print(f"{label}: precision {_pct(total.precision)}  recall {_pct(total.recall)}  "
              f"right line {_pct(total.right_line)}  (right {total.right}, wrong line "
              f"{total.wrong_line}, FP {total.false_pos}, markers {total.markers_found}/"
              f"{total.markers}, not[] violations {total.violations})")
    print(f"real GPU traces: {real_hits}/{real_total} checks hold")
    if args.markdown:
        args.markdown.write_text(_markdown(sets, real_lines, real_hits, real_total, elapsed,
                                           ignore), encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


def _table(total: Tally, per_code: dict[str, Tally]) -> list[str]:
    rows = ["| rule | right | wrong line | FP | not[] violations | markers found | precision | "
            "recall | right line |", "|---|---|---|---|---|---|---|---|---|"]
    for code, t in [("**all**", total), *sorted(per_code.items())]:
        rows.append(f"| {code} | {t.right} | {t.wrong_line} | {t.false_pos} | {t.violations} | "
                    f"{t.markers_found}/{t.markers} | {_pct(t.precision)} | {_pct(t.recall)} | "
                    f"{_pct(t.right_line)} |")
    return rows


def _markdown(sets: dict[str, list[ScriptResult]], real_lines: list[str], real_hits: int,
              real_total: int, elapsed: float, ignore: Sequence[str] = ()) -> str:
    flag = f" --ignore {','.join(ignore)}" if ignore else ""
    out = [
        "# Rule accuracy",
        "",
        f"Produced by `python benchmarks/rules_accuracy.py{flag} --markdown "
        "benchmarks/rules_accuracy.md`"
        f" ({time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s; 2 shared CPU cores, no GPU, torch "
        "CPU build). `--reuse` re-scores the traces of an earlier run without profiling again.",
        "",
        "Scoring (see the script's docstring): *right* = the marked code at the marked line;",
        "*wrong line* = a finding whose code is expected in the script but at another line (or",
        "none); *FP* = any other finding; trace-quality findings (PFT9xx) and the load-dependent",
        "compute advice (PFT509, PFT510) are not scored; PFT507/PFT508 are scored through the",
        "machine-conditional markers (`expect-if[...](CONDITION)`, `not-if`; the machine each run",
        "recorded is shown next to its script).",
        "precision = (right + wrong line) / findings; recall = expected markers found at any",
        "line / markers; right line = right / (right + wrong line). On a CPU trace the sync",
        "rules report *latent* hazards (what would stall on a GPU).",
    ]
    titles = {"corpus": "Field corpus (`tests/field/`, see its README)",
              "samples": "Samples (`samples/`)"}
    for label, results in sets.items():
        total, per_code = tally(results)
        out += ["", f"## {titles[label]}", "",
                f"precision **{_pct(total.precision)}**, recall **{_pct(total.recall)}**, "
                f"right line **{_pct(total.right_line)}**; not[] violations: "
                f"**{total.violations}**.", "", *_table(total, per_code), "", "Per script:", "",
                "```"]
        for r in results:
            out += describe(r)
        out += ["```"]
    out += ["", "## Real GPU traces (../shared/traces)", "",
            f"{real_hits} of {real_total} checks hold (known problems found where they are;",
            "known false positives absent).", "",
            "| trace | rule | check | result |", "|---|---|---|---|", *real_lines, ""]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
