"""Errors perftune raises on purpose; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class PerftuneError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 2


class UsageError(PerftuneError):
    """Bad options or configuration."""

    exit_code = 2


class ConfigError(PerftuneError):
    """A `[tool.perftune]` table or a config value that cannot be used."""

    exit_code = 2


class TraceError(PerftuneError):
    """A trace file that cannot be read: truncated, not JSON, not a trace, empty."""

    exit_code = 2

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[TraceError], tuple[str, str]]:
        # Raised in a worker process or a Dask task, it reaches the caller whole.
        return (type(self), (self.path, self.problem))


class ScriptError(PerftuneError):
    """The user's script failed, hung, or measured nothing."""

    exit_code = 3


class InconclusiveError(PerftuneError):
    """A gate that could not decide."""

    exit_code = 4
