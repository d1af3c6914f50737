"""`perftune machine`: measure (once) and print this machine's peak FLOP/s and memory bandwidth.

The roofline of a CPU trace (PFT401 and the report's roofline plot) places ops against these
peaks. They are measured with a float32 matmul and a large copy, cached per host in
`$PERFTUNE_CACHE_DIR/machine.json` (default `~/.cache/perftune/`), and reused until `--refresh`.
"""

from __future__ import annotations

import json

import click

from perftune.cli._options import format_option
from perftune.trace import machine as m


@click.command()
@click.option("--refresh", is_flag=True, help="Measure again even when cached figures exist.")
@click.option("--method", type=click.Choice(["auto", "torch", "numpy"]), default="auto",
              show_default=True, help="Benchmark library (auto: torch when installed).")
@format_option
def machine(refresh: bool, method: str, output_format: str) -> None:
    """Measure and cache this machine's peak matmul FLOP/s and memory bandwidth."""
    cached = None if refresh else m.cached()
    if cached is not None and not cached.contended:
        peaks, source = cached, "cached"
    else:
        use_torch = None if method == "auto" else method == "torch"
        peaks, source = m.measure(use_torch=use_torch), "measured"
        if cached is not None:  # the cached figures were measured on busy cores: keep the higher
            peaks = m.merged(cached, peaks)
        try:
            m.save(peaks)
        except OSError as exc:
            click.echo(f"perftune: warning: cannot write {m.cache_path()}: {exc}", err=True)
    if output_format == "json":
        click.echo(json.dumps({**peaks.to_dict(), "source": source, "cache": str(m.cache_path())},
                              indent=2))
        return
    click.echo(f"machine    {peaks.hostname}  {peaks.cpu}  ({peaks.threads} threads)")
    click.echo(f"matmul     {peaks.flops_per_s / 1e9:,.1f} GFLOP/s  (float32 {peaks.matmul_n}×"
               f"{peaks.matmul_n}, {peaks.method})")
    click.echo(f"memory     {peaks.bytes_per_s / 1e9:,.1f} GB/s  (copy of "
               f"{peaks.copy_bytes >> 20} MiB, read + write)")
    click.echo(f"ridge      {peaks.flops_per_s / peaks.bytes_per_s:,.2f} FLOP/byte")
    click.echo(f"{source:<10} {peaks.measured_at}  →  {m.cache_path()}")
    if peaks.contended:
        share = "unknown" if peaks.cpu_share is None else f"{peaks.cpu_share:.0%}"
        click.echo(f"warning    measured while other processes held the cores (CPU share {share}): "
                   "these peaks are too low; perftune measures again on the next capture, or run "
                   "`perftune machine --refresh` on a quiet machine", err=True)
