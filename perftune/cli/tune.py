"""`perftune tune SCRIPT [ARGS]`: find the fastest knob values that fit and still train the same."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from perftune import _signals
from perftune.cli._options import ScriptCommand, format_option, out_option
from perftune.errors import ScriptError

# perftune's options come before SCRIPT; the script and everything after it are the script's,
# passed on verbatim (as with python -m and torchrun).
SCRIPT_CONTEXT = {"help_option_names": ["-h", "--help"]}


class RichReporter:
    """A progress bar with the best so far, and one line per finished trial (on stderr)."""

    def __init__(self, console: Any, total: int | None, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]tune[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=quiet,
        )
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def note(self, text: str) -> None:
        from rich.markup import escape

        if not self.quiet:
            self.progress.console.print(f"[dim]perftune: {escape(text)}[/]", highlight=False)

    def started(self, number: int, values: Mapping[str, Any], role: str, why: str, history: Any) -> None:
        from rich.markup import escape

        self.progress.update(self.task, completed=history.counted(), description=escape(self._best(history)))

    def finished(self, record: Any, history: Any) -> None:
        from rich.markup import escape

        outcome = record.outcome
        values = " ".join(f"{k}={v}" for k, v in record.values.items())
        if outcome.measured:
            result = f"{outcome.throughput:,.1f} {outcome.unit}, {outcome.step_ms:.1f} ms/step"
            if outcome.status != "ok":
                result += f" [yellow]{escape(outcome.status)}[/]"
        else:
            result = f"[red]{escape(outcome.status)}[/] {escape((outcome.reason or '')[:100])}"
        if not self.quiet:
            self.progress.console.print(
                f"trial {record.number:>3} [dim]{escape(record.role)}[/] {escape(values)}: {result}",
                highlight=False,
            )
        self.progress.update(self.task, completed=history.counted(), description=escape(self._best(history)))

    @staticmethod
    def _best(history: Any) -> str:
        best = history.incumbent()
        if best is None or best.throughput is None:
            return "best: -"
        values = " ".join(f"{k}={v}" for k, v in best.values.items())
        return f"best {best.throughput:,.1f}: {values}"


@click.command(cls=ScriptCommand, context_settings=SCRIPT_CONTEXT)
@click.argument("script_and_args", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.option("-m", "--module", default=None, help="Tune a module (like python -m) instead of a SCRIPT file.")
@click.option("--knob", "knobs", multiple=True, metavar="NAME=V1,V2",
              help="Values to try for a knob (repeatable); LOW..HIGH gives the powers of two in "
                   "between. Injected knobs: precision (fp32,tf32,bf16,fp16), checkpoint "
                   "(none,all,every:K,first:N), batch_size, compile (none,default,"
                   "reduce-overhead,max-autotune,max-autotune-no-cudagraphs: torch.compile of "
                   "the model the optimizer trains; reduce-overhead needs a CUDA model).")
@click.option("--arg", "arg_templates", multiple=True, metavar="KNOB=TEMPLATE",
              help="Pass a knob as the script's own flag, e.g. --arg batch_size=--batch-size={}.")
@click.option("--from-findings", type=click.Path(exists=True, path_type=Path), default=None,
              help="Add the knobs suggested by the findings of a profile run (its run dir or findings.json).")
@click.option("--no-declared", is_flag=True, help="Ignore the knobs the script declares with perftune.knob().")
@click.option("--samples-per-step", default=None, metavar="N|KNOB|A*B",
              help="Samples per step for the throughput [default: the batch_size knob, else the model input's leading dimension].")
@click.option("--tokens-per-sample", default=None, metavar="N|KNOB",
              help="Report tokens/s: tokens in one sample (a number or a knob).")
@click.option("--memory-budget", default=None, metavar="SIZE",
              help="Peak memory a configuration may use, e.g. 8GiB (device allocator on GPU, RSS on CPU).")
@click.option("--accuracy-tolerance", default=None, metavar="FRACTION",
              help="Largest relative loss difference from the fp32 baseline over the measured steps [default: 5%].")
@click.option("--max-trials", type=int, default=None, help="Stop after this many trials (repeats included).")
@click.option("--time-budget", default=None, metavar="DURATION", help="Stop starting trials after this long, e.g. 20m.")
@click.option("--strategy", type=click.Choice(["auto", "grid", "structured", "tpe", "random"]), default=None,
              help="auto: the grid for up to 16 configurations (or when --max-trials covers them), else structured.")
@click.option("--top-k", type=int, default=None, help="Candidates measured again at the end [default: 3].")
@click.option("--repeats", type=int, default=None, help="Extra measurements of each of them [default: 2]; then, while the best is not "
              "separated from the defaults or the runner-up, more of the pair (up to 3x as many; "
              "without a budget at most as many trials as the repeats).")
@click.option("--trial-warmup", type=int, default=None, help="Warm-up steps discarded in each trial [default: 3].")
@click.option("--trial-steps", type=int, default=None, help="Steps measured in each trial [default: 8].")
@click.option("--trial-timeout", default=None, metavar="DURATION", help="Stop a trial after this long [default: 5m].")
@click.option("--run-steps", type=int, default=None, metavar="N",
              help="Steps your real run takes. Compile time (--knob compile=...) is kept out of "
                   "ms/step and reported; with N it is also charged to the run: a compile mode "
                   "wins only if (eager - compiled step time) x N > its compile time [default: "
                   "not charged, the break-even step count is shown].")
@click.option("--seed", type=int, default=None, help="Seed torch/random/numpy in every trial [default: 0].")
@click.option("--no-seed", is_flag=True, help="Do not seed the trials (the script seeds itself).")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage shared by several workers, e.g. postgresql://user@host/db [default: a journal file in the run dir].")
@click.option("--study-name", default=None, help="Study name in the storage [default: tune-SCRIPT].")
@click.option("--resume", is_flag=True, help="Continue the tuning run in --out (default: the latest of this script).")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard HParams to RUN_DIR/tensorboard/tuning.")
@click.option("--no-reuse", "no_reuse", is_flag=True,
              help="Start every trial as a fresh python process instead of forking it from a "
                   "zygote that imported torch once (the default saves ~2 s per trial; trials "
                   "the zygote cannot take safely run fresh anyway).")
@click.option("--no-html", is_flag=True, help="Do not write tuning.html.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@out_option
@format_option
@click.pass_context
def tune(ctx: click.Context, /, tensorboard: bool, no_html: bool, quiet: bool, output_format: str,
         **params: Any) -> None:
    """Tune knobs (batch size, precision, checkpointing, torch.compile mode, tile sizes...) for throughput.

    \b
    perftune tune --knob batch_size=16..256 --knob precision=fp32,bf16 train.py --epochs 1
    perftune tune --knob compile=none,default,max-autotune --run-steps 2000 train.py
    perftune tune --knob chunk=16,32,64 --memory-budget 8GiB --max-trials 40 train.py
    perftune tune --from-findings perftune-runs/20250101-train train.py

    perftune's options come before the script; the script and everything after it are the
    script's (as with python -m and torchrun).

    Every trial runs the script in its own process with one configuration (warm-up steps
    discarded, median of the measured steps). The fastest configuration (samples/s) within the
    memory budget whose losses stay within the tolerance of the fp32 run wins (compile time,
    reported apart from the step time, is charged to a run of --run-steps N steps); tuning.json,
    tuning.html and the way to apply it are written to the run directory. Ctrl-C stops and
    keeps the finished trials; --resume goes on.
    """
    from rich.console import Console

    from perftune.report import write_tuning_run
    from perftune.tune.options import TuneOptions, settings_from_options
    from perftune.tune.results import build_tuning
    from perftune.tune.tuner import Tuner

    # Every other option is one of TuneOptions' fields (an option added here must be added there).
    settings = settings_from_options(TuneOptions(**params))
    err = Console(stderr=True)
    with RichReporter(err, settings.max_trials, quiet) as reporter:
        if not quiet:
            err.print(f"perftune: tuning {settings.script.describe()} into {settings.run_dir}",
                      highlight=False, markup=False)
        run = Tuner(settings, reporter).run()
    tuning = build_tuning(run)
    written = write_tuning_run(tuning, settings.run_dir, html=not no_html, tensorboard=tensorboard)
    _print_tuning(tuning, output_format)
    if not quiet:
        err.print("perftune: wrote " + ", ".join(str(p) for p in written), highlight=False, markup=False)
    if run.interrupted:
        if not quiet:
            err.print("perftune: interrupted; finished trials are kept, --resume continues", markup=False)
        ctx.exit(_signals.interrupted_exit_code())
    if tuning.best is None:
        raise ScriptError(
            "no configuration ran successfully within the constraints; see the reasons in "
            f"{written[0]}"
        )


def _print_tuning(tuning: Any, output_format: str) -> None:
    """The result on stdout: tuning.json's document, or the tables."""
    if output_format == "json":
        from perftune.documents import document_data

        click.echo(json.dumps(document_data(tuning), indent=1, default=str))
        return
    from rich.console import Console

    from perftune.tune.render import print_results

    # Piped output is read in a file or a CI log, not an 80-column terminal.
    print_results(tuning, Console() if sys.stdout.isatty() else Console(width=160))
