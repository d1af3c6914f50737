"""The run directory: its file names, its lock, and its documents written and read safely.

Every perftune command writes into one run directory (docs/contracts.md, "Run directory").
`RunDir` is the one place that knows what the files there are called, which trace files belong
to the run, how two perftune processes are kept from writing into it at once, and how a
document is written (atomically, `perftune.fsutil`) and read back (decoded into its Struct in
`perftune.documents`, so that a corrupt or foreign file is one line and exit 2, not a traceback
in a renderer).

Core module: it imports only errors, fsutil and documents.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from perftune.documents import (
    CompilationDocument,
    DiffDocument,
    FindingsDocument,
    FixDocument,
    GateDocument,
    MetaDocument,
    ProvenanceDocument,
    StepsDocument,
    Summary,
    TuningDocument,
    document_data,
)
from perftune.errors import PerftuneError
from perftune.fsutil import OutputError, write_json_atomic, write_text_atomic

# ---------------------------------------------------------------------------- file names
TRACE = "trace.json.gz"
TRACE_PLAIN = "trace.json"  # a trace copied in by hand, uncompressed
STEPS = "steps.json"
META = "meta.json"
PROVENANCE = "provenance.json"
COMPILATION = "compilation.json"
SUMMARY = "summary.json"
FINDINGS = "findings.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
TENSORBOARD = "tensorboard"
OUTPUT_LOG = "output.log"
INJECTORS = "injectors.json"  # a tuner trial: what the injected knobs changed
TUNING = "tuning.json"
GATE = "gate.json"
FIX = "fix.json"
FIX_MD = "fix.md"
FIX_PATCH = "fix.patch"
GATE_MD = "gate.md"
BASELINE = "baseline.json"
CALIBRATION = "calibration.json"
TUNING_HTML = "tuning.html"
DIFF_JSON = "diff.json"
DIFF_HTML = "diff.html"
LOCK = ".perftune.lock"
RANK_TRACE = "rank-{rank}.trace.json.gz"
RANK_STEPS = "rank-{rank}.steps.json"
# Per-rank traces as torch's tensorboard_trace_handler names them (a folder of them is a run).
PROFILER_TRACE_SUFFIXES = (".pt.trace.json", ".pt.trace.json.gz")

# Files whose presence means the folder already holds a run: writing another run there would
# mix the two (`--force` to overwrite).
RUN_DOCUMENTS = (TRACE, STEPS, META, SUMMARY, FINDINGS, REPORT_HTML, REPORT_MD, TUNING, GATE, FIX,
                 PROVENANCE, COMPILATION)


# The file each typed document is written as (RunDir.write_document).
DOCUMENT_FILES: dict[type[msgspec.Struct], str] = {
    Summary: SUMMARY, FindingsDocument: FINDINGS, TuningDocument: TUNING, GateDocument: GATE,
    FixDocument: FIX, DiffDocument: DIFF_JSON, ProvenanceDocument: PROVENANCE,
    CompilationDocument: COMPILATION,
}


class DocumentError(PerftuneError):
    """A run-directory document that is not what perftune wrote: unreadable, not JSON, or not
    matching its schema."""

    exit_code = 2

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RunDirBusy(PerftuneError):
    """Another perftune process holds the run directory's lock."""

    exit_code = 2


class RunDirInUse(PerftuneError):
    """The directory already holds another run's documents (and --force was not given)."""

    exit_code = 2


# Locks this process holds, by real path, with their depth: `perftune profile` holds the lock
# for the whole run and calls run_capture and write_analysis, which lock the same folder again.
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()

_S = TypeVar("_S", bound=msgspec.Struct)
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass(frozen=True)
class RunDir:
    """One run directory (it need not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- names ---------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def trace(self) -> Path:
        return self.path / TRACE

    @property
    def steps(self) -> Path:
        return self.path / STEPS

    @property
    def meta(self) -> Path:
        return self.path / META

    @property
    def provenance(self) -> Path:
        return self.path / PROVENANCE

    @property
    def compilation(self) -> Path:
        return self.path / COMPILATION

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def findings(self) -> Path:
        return self.path / FINDINGS

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def report_md(self) -> Path:
        return self.path / REPORT_MD

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    def rank_trace(self, rank: int) -> Path:
        return self.path / RANK_TRACE.format(rank=rank)

    def traces(self) -> list[Path]:
        """The run's own trace files: trace.json.gz (or trace.json); else one
        rank-K.trace.json.gz per rank of a multi-rank capture, in rank order; else the
        *.pt.trace.json(.gz) files torch's tensorboard_trace_handler wrote, by name. Only the top
        level counts: copies below tensorboard/ are not the run's own."""
        if not self.path.is_dir():
            return []
        for name in (TRACE, TRACE_PLAIN):
            if (self.path / name).is_file():
                return [self.path / name]
        ranks: list[tuple[int, Path]] = []
        handler: list[Path] = []
        for path in self.path.iterdir():
            if not path.is_file():
                continue
            name = path.name
            if name.startswith("rank-") and name.endswith(".trace.json.gz"):
                number = name[len("rank-"):-len(".trace.json.gz")]
                if number.isdigit():
                    ranks.append((int(number), path))
            elif name.endswith(PROFILER_TRACE_SUFFIXES):
                handler.append(path)
        if ranks:
            return [path for _, path in sorted(ranks)]
        return sorted(handler)

    def documents_present(self) -> list[str]:
        """The run documents this folder already holds (empty for a new or unrelated folder)."""
        if not self.path.is_dir():
            return []
        present = [name for name in RUN_DOCUMENTS if (self.path / name).exists()]
        present.extend(sorted(p.name for p in self.path.glob("rank-*.trace.json.gz")))
        return present

    # -- claiming and locking ------------------------------------------------------------------
    def check_new_run(self, *, force: bool, same_run: bool = False) -> None:
        """Refuse to write a new run over another run's documents unless `force` (which removes
        them, so that the two runs never mix); `same_run` says the caller re-analyses the very
        run this folder holds (always allowed, nothing removed). Call it holding the lock."""
        present = self.documents_present()
        if not present or same_run:
            return
        if not force:
            shown = ", ".join(present[:4]) + (" …" if len(present) > 4 else "")
            raise RunDirInUse(f"{self.path} already holds another run ({shown}); choose a new "
                              "--out directory, or pass --force to replace that run")
        stale = [*RUN_DOCUMENTS, OUTPUT_LOG, *(p.name for p in self.path.glob("rank-*.json*"))]
        for name in stale:
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as exc:
                raise OutputError(self.path / name, exc.strerror or type(exc).__name__) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run directory for this process (creating it); a second perftune process
        that tries gets RunDirBusy at once instead of mixing its files with this run's.

        Re-entrant within a process. The lock is an flock on RUN_DIR/.perftune.lock, so the
        kernel drops it when the holder dies (kill -9 leaves no stale lock); the file is
        removed on release."""
        key = os.path.realpath(self.path)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
        if held is not None:
            try:
                yield self
            finally:
                with _HELD_GUARD:
                    held[1] -= 1
            return
        fd = self._acquire()
        with _HELD_GUARD:
            _HELD[key] = [fd, 1]
        self._remove_stale_temporaries()
        try:
            yield self
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)
            # Unlink while still holding: a process that opened the old file re-checks the
            # inode after locking and retries on the new one (see _acquire).
            with contextlib.suppress(OSError):
                os.unlink(self.path / LOCK)
            os.close(fd)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of an atomic write whose writer was killed (fsutil names them
        .NAME.XXXX.tmp): holding the lock, nobody else is writing them."""
        for path in self.path.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()

    def _acquire(self) -> int:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.path, exc.strerror or type(exc).__name__) from None
        lock_path = self.path / LOCK
        for _ in range(20):
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise OutputError(self.path, exc.strerror or type(exc).__name__) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    by = f" (pid {owner})" if owner else ""
                    raise RunDirBusy(f"{self.path} is in use by another perftune run{by}; "
                                     "wait for it to finish or choose another --out") from None
                if exc.errno in _NO_LOCKING:
                    return fd  # a filesystem without flock (some NFS): run unlocked, as before
                raise OutputError(lock_path, exc.strerror or type(exc).__name__) from None
            try:
                current = os.stat(lock_path).st_ino
            except OSError:
                current = -1
            if current == os.fstat(fd).st_ino:
                with contextlib.suppress(OSError):  # the pid is a courtesy (a full disk refuses it)
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)  # the previous holder removed the file we locked: lock the new one
        raise RunDirBusy(f"{self.path} is in use by another perftune run")

    # -- writing -------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any, *, indent: int = 2) -> Path:
        return write_json_atomic(self.path / name, data, indent=indent)

    def write_text(self, name: str, text: str) -> Path:
        return write_text_atomic(self.path / name, text)

    def write_document(self, document: msgspec.Struct, *, indent: int = 2) -> Path:
        """A stage document (tuning, gate, fix, diff, summary, findings) under its own name."""
        return write_json_atomic(self.path / DOCUMENT_FILES[type(document)],
                                 document_data(document), indent=indent)

    # -- reading -------------------------------------------------------------------------------
    def read_summary(self) -> Summary | None:
        return read_document(self.summary, Summary, strict=True)

    def read_findings(self) -> FindingsDocument | None:
        return read_document(self.findings, FindingsDocument, strict=True)

    def read_steps(self) -> StepsDocument | None:
        return read_document(self.steps, StepsDocument)

    def read_meta(self) -> MetaDocument | None:
        return read_document(self.meta, MetaDocument)

    def read_provenance(self) -> ProvenanceDocument | None:
        """provenance.json of a CPU capture (None when absent)."""
        return read_document(self.provenance, ProvenanceDocument)

    def read_compilation(self) -> CompilationDocument | None:
        """compilation.json of a capture (None when absent: nothing recorded it)."""
        return read_document(self.compilation, CompilationDocument)

    def read_tuning(self) -> TuningDocument | None:
        return read_document(self.file(TUNING), TuningDocument, strict=True)

    def read_gate(self) -> GateDocument | None:
        return read_document(self.file(GATE), GateDocument, strict=True)

    def read_fix(self) -> FixDocument | None:
        return read_document(self.file(FIX), FixDocument, strict=True)

    def read_diff(self) -> DiffDocument | None:
        return read_document(self.file(DIFF_JSON), DiffDocument, strict=True)

    def recorded_meta(self) -> MetaDocument | None:
        """meta.json where it is only a hint (where to look for sources): None when absent or
        unusable rather than an error."""
        try:
            return self.read_meta()
        except DocumentError:
            return None


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip()
    return ""


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when absent; DocumentError when unreadable or not an
    object. NaN and Infinity are accepted: steps.json records a diverged loss as NaN."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DocumentError(path, "is a directory, not a perftune document") from None
    except OSError as exc:
        raise DocumentError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(path, f"not valid JSON ({exc}); is the file truncated?") from None
    except RecursionError:
        raise DocumentError(path, "not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise DocumentError(path, f"not a JSON object (a JSON {type(data).__name__}), so not a "
                                  "perftune document")
    return data


def decode(path: Path, data: Any, kind: type[_S], *, strict: bool = False) -> _S:
    """`data` as the Struct `kind`; DocumentError naming the file and the field otherwise."""
    try:
        return msgspec.convert(data, kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise DocumentError(path, f"does not match its schema: {exc}") from None


def read_document(path: Path, kind: type[_S], *, strict: bool = False) -> _S | None:
    """Read and validate one document; None when the file is absent."""
    data = read_json_object(path)
    return None if data is None else decode(path, data, kind, strict=strict)


def same_files(a: Sequence[str | Path], b: Sequence[str | Path]) -> bool:
    """Whether two lists name the same files (compared by real path, in any order)."""
    return sorted(os.path.realpath(p) for p in a) == sorted(os.path.realpath(p) for p in b)


__all__ = [
    "BASELINE",
    "CALIBRATION",
    "COMPILATION",
    "DIFF_HTML",
    "DIFF_JSON",
    "DOCUMENT_FILES",
    "FINDINGS",
    "FIX",
    "FIX_MD",
    "FIX_PATCH",
    "GATE",
    "GATE_MD",
    "LOCK",
    "META",
    "OUTPUT_LOG",
    "RANK_STEPS",
    "RANK_TRACE",
    "REPORT_HTML",
    "REPORT_MD",
    "RUN_DOCUMENTS",
    "STEPS",
    "SUMMARY",
    "TENSORBOARD",
    "TRACE",
    "TRACE_PLAIN",
    "TUNING",
    "TUNING_HTML",
    "DocumentError",
    "RunDir",
    "RunDirBusy",
    "RunDirInUse",
    "decode",
    "read_document",
    "read_json_object",
    "same_files",
]
