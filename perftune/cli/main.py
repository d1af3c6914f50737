"""The `perftune` click group.

Commands are imported only when invoked (a lazy group), so `perftune analyze` never pays for
torch, optuna or plotly imports that another command needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

import click

from perftune import _signals
from perftune._exit import exit_now
from perftune._version import __version__
from perftune.errors import PerftuneError
from perftune.textsafe import terminal_safe

# command name -> "module:attribute"; one line per command module in perftune/cli/.
COMMANDS: dict[str, str] = {
    "analyze": "perftune.cli.analyze:analyze",
    "baseline": "perftune.cli.baseline:baseline",
    "calibrate": "perftune.cli.calibrate:calibrate",
    "diff": "perftune.cli.diff:diff",
    "fix": "perftune.cli.fix:fix",
    "gate": "perftune.cli.gate:gate",
    "machine": "perftune.cli.machine:machine",
    "profile": "perftune.cli.profile:profile",
    "report": "perftune.cli.report:report",
    "rule": "perftune.cli.rule:rule",
    "rules": "perftune.cli.rule:rules",
    "tune": "perftune.cli.tune:tune",
}


# command name -> its one-line help as `perftune --help` lists it, so that listing the commands
# imports none of them (tests/cli/test_analyze_cli.py checks each against the command's own).
SHORT_HELP: dict[str, str] = {
    "analyze": "Summarise trace files and report what makes the step slow.",
    "baseline": "Record step-time samples and an environment fingerprint for `perftune gate --baseline`.",
    "calibrate": "Measure this runner's launch-to-launch noise by running the same code on both sides.",
    "diff": "Compare RUN_B against RUN_A: step time, breakdown, operators, findings.",
    "fix": "Prove perftune's suggested rewrites: faster, same results, as a patch.",
    "gate": "Fail the build when training step time really regressed.",
    "machine": "Measure and cache this machine's peak matmul FLOP/s and memory bandwidth.",
    "profile": "Profile a training script as it is: `perftune profile train.py --epochs 1`.",
    "report": "Re-render report.html, report.md, summary.json and findings.json of RUN_DIR.",
    "rule": "Explain rule CODE (e.g.",
    "rules": "List every rule: code, name, category and status.",
    "tune": "Tune knobs (batch size, precision, checkpointing, torch.compile mode, tile sizes...) for throughput.",
}


# Commands that do no linear algebra: numpy is imported for them with OpenBLAS on one thread,
# and without transparent huge pages for its large arrays.
SINGLE_BLAS_THREAD = frozenset({"analyze", "report", "diff", "rule", "rules"})
_BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"
_HUGEPAGE_ENV = "NUMPY_MADVISE_HUGEPAGE"
_IMPORT_SETTINGS = {_BLAS_THREADS_ENV: "1", _HUGEPAGE_ENV: "0"}


def import_numpy_single_threaded() -> None:
    """Import numpy with OpenBLAS on one thread and no huge-page advice, unless numpy is loaded;
    a setting the user made wins.

    OpenBLAS starts a thread per core when numpy is imported (~0.1 CPU-s on 2 busy cores, a
    quarter of a small `perftune analyze`), and reads the setting only then. numpy asks the
    kernel for transparent huge pages on every array of 4 MB or more (madvise); where the
    kernel then compacts memory to find them (`defrag` = madvise, a common default), each such
    page fault can stall for milliseconds, and a page shared with a forked worker is copied
    2 MB at a time: on a 1 GB trace the rules spent 4.2 s of system time against 0.85 s
    without (benchmarks/analyze_end_to_end.md). Both are read at numpy's import only: they
    are set for the import and removed again, so child processes (worker processes, a
    profiled script) get the user's environment unchanged.
    """
    if "numpy" in sys.modules:
        return
    added = [name for name in _IMPORT_SETTINGS if name not in os.environ]
    for name in added:
        os.environ[name] = _IMPORT_SETTINGS[name]
    try:
        import numpy  # noqa: F401
    finally:
        for name in added:
            os.environ.pop(name, None)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from SHORT_HELP, shortened as click would (no command imported)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=SHORT_HELP.get(n, "")).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        if cmd_name in SINGLE_BLAS_THREAD:
            import_numpy_single_threaded()
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="perftune")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """perftune: find out why a PyTorch training step is slow, and make it fast.

    \b
    Typical use:
      perftune profile train.py --epochs 1     capture a trace of your unmodified script
      perftune analyze trace.json.gz           summarise a trace recorded anywhere
    """
    from perftune.cli._options import config_default_map

    # [tool.perftune] option defaults, read when a command first asks for one.
    ctx.default_map = config_default_map(list(COMMANDS))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group, turning perftune's own errors into one line and an exit code.

    Without `argv` this is the command line's whole process (the `perftune` script, `python -m
    perftune`): it ends through `end_process`, without the interpreter's teardown. With `argv`
    (a program or a test running a command in its own process) it raises SystemExit as usual.
    """
    if argv is not None:
        sys.exit(run(argv))
    try:
        code = run(None)
    except SystemExit as exc:  # a command's own sys.exit(...)
        code = exit_status(exc)
    end_process(code)


def run(argv: list[str] | None = None) -> int:
    """Run the group on `argv` (default: the command line); the exit code."""
    _signals.heed_ctrl_c()  # also when started with SIGINT ignored (`cmd &` in a script, CI)
    try:
        # standalone_mode=False returns ctx.exit(code)'s code instead of exiting.
        result = cli.main(args=argv, prog_name="perftune", standalone_mode=False)
    except PerftuneError as exc:
        # The message may quote a trace or a script's output: no escape sequence reaches the terminal.
        click.echo(f"perftune: error: {terminal_safe(exc, multiline=True)}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("perftune: interrupted", err=True)
        return _signals.interrupted_exit_code()
    except click.ClickException as exc:
        exc.show()
        return 2 if exc.exit_code == 2 else exc.exit_code
    except KeyboardInterrupt:
        # 130 for Ctrl-C, 143 for SIGTERM (a cancelled CI job), as a shell would report them.
        click.echo("perftune: interrupted", err=True)
        return _signals.interrupted_exit_code()
    except BrokenPipeError:
        return 0
    except MemoryError:
        # A trace (or run) too large for this machine's memory: the input's size is the
        # problem, so it is reported like bad input, not as perftune's own traceback.
        click.echo("perftune: error: out of memory (the input is too large for this machine; "
                   "see PERFTUNE_MAX_TRACE_BYTES to reject such traces early)", err=True)
        return 2
    return result if isinstance(result, int) else 0


def exit_status(exc: SystemExit) -> int:
    """The exit code python gives a SystemExit that ends the process (a message: printed, 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def end_process(code: int) -> NoReturn:
    """Exit with `code` as the interpreter would — non-daemon threads joined (a worker pool's
    included), exit handlers run, stdout and stderr flushed — without tearing down every
    module and object one by one (`perftune._exit.exit_now`): that teardown is time a user
    waits for after the output is complete. perftune closes the files it writes before this.
    """
    exit_now(code, interrupted=_interrupted_at_exit)


def _interrupted_at_exit() -> int:
    click.echo("perftune: interrupted", err=True)
    return _signals.interrupted_exit_code()
