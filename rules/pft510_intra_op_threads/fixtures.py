"""Fixture traces of PFT510: each entry of FIXTURES builds `<name>.json.gz` in this folder.

After changing a builder: `python -m perftune.engine.fixtures pft510`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft510`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import Fixture, cpu_host, cpu_train_steps

FIXTURES: dict[str, Fixture] = {
    "under_used": lambda: cpu_train_steps(cpu_host(threads=1, cores=8)),
    "oversubscribed": lambda: cpu_train_steps(cpu_host(threads=16, cores=2)),
    "matched": lambda: cpu_train_steps(cpu_host(threads=8, cores=8)),
    # One thread of eight, but other processes keep the machine busy (load 12): the spare cores
    # are not free, so no under-use (a shared CI runner).
    "busy_machine": lambda: cpu_train_steps(cpu_host(threads=1, cores=8, loadavg=12.0)),
    "under_used_idle_machine": lambda: cpu_train_steps(cpu_host(threads=1, cores=8, loadavg=1.2)),
    # Under-used, but the step is Python-bound: more threads would not help.
    "overhead_bound": lambda: cpu_train_steps(cpu_host(threads=1, cores=8), conv_us=500.0,
                                              python_us=40000.0),
}
