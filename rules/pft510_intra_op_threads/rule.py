"""PFT510 intra-op-threads: torch's intra-op thread count does not match the cores the process
may use, on a compute-bound CPU step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.analysis.efficiency import host_facts
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion


class IntraOpThreads(Rule):
    """PFT510 intra-op-threads: the intra-op thread count against the cores this process may use.

    ## What it detects
    On a compute-bound CPU step (analysis/efficiency.py), `torch.get_num_threads()` — read by
    `perftune profile` when profiling starts, after the script's own `set_num_threads` — compared
    with the cores the process may run on (`os.sched_getaffinity(0)`: taskset, cgroups cpusets,
    a job scheduler's binding):

    - under-use: fewer threads than usable cores (a `torch.set_num_threads(1)` left from
      debugging, `OMP_NUM_THREADS=1` inherited from a launcher);
    - oversubscription: more threads than usable cores (torch sizes its pool from the
      machine's cores, not the affinity mask, in some builds; a container limited to 2 of 64
      cores), so OpenMP threads time-slice and wait for each other at every barrier.

    Under-use is not claimed when the machine's load average (recorded with them) says other
    processes keep the spare cores busy: more threads would then compete for them. Foreign
    traces do not record either count: the rule says nothing there.

    ## Why is it slow?
    Convolutions and matmuls split their work over the intra-op threads. Idle cores are
    throughput left on the table; more threads than cores make every parallel region wait for
    its slowest, descheduled thread.

    ## Example
    ```python
    torch.set_num_threads(1)
    ```

    ## Use instead
    ```python
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    ```
    or `OMP_NUM_THREADS=<cores>` in the launcher's environment (one process per machine; with
    several processes per machine, cores / processes each). `perftune tune --knob
    num_threads=1,8 train.py` measures both (the injected value overrides the script's
    `set_num_threads`).

    ## Evidence
    The thread count, the usable cores, OMP_NUM_THREADS, the compute time per step.

    ## Options
    `parallel_efficiency` (0.6): the share of ideal scaling assumed when more cores are used;
    `oversubscription_loss` (0.15): the share of the operators' time assumed lost to
    oversubscription. Both conservative; `perftune gate` measures the change.
    """

    code: ClassVar[str] = "PFT510"
    name: ClassVar[str] = "intra-op-threads"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"parallel_efficiency": 0.6, "oversubscription_loss": 0.15}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if trace.has_device_activity:
            return
        host = host_facts(trace)
        if host is None:
            return
        threads, cores = host.get("torch_threads"), host.get("usable_cores")
        if not isinstance(threads, int) or not isinstance(cores, int) or threads <= 0 or cores <= 0:
            return
        if threads == cores:
            return
        sc = ctx.step_compute
        if not sc.compute_bound:
            return
        ops_ms = sc.work_ms  # the operators' time: forward, backward, optimizer
        evidence: dict[str, Any] = {"torch_threads": threads, "usable_cores": cores,
                                    "cpu_count": host.get("cpu_count"),
                                    "omp_num_threads": host.get("omp_num_threads"),
                                    "compute_ms_per_step": round(ops_ms, 3),
                                    "step_ms": round(sc.step_ms, 3)}
        env = host.get("omp_num_threads")
        load = host.get("loadavg")
        if threads < cores and isinstance(load, (int, float)):
            # Other processes' runnable threads (the machine's load less this step's own):
            # cores they keep busy are not there for more intra-op threads.
            others = max(0.0, float(load) - threads)
            evidence["loadavg"] = round(float(load), 2)
            if cores - threads - others < 1.0:
                return
        if threads < cores:
            eff = float(self.config["parallel_efficiency"])
            # Amdahl with the matrix time as the parallel part, at `eff` of ideal scaling.
            speedup = 1.0 / ((1 - eff) + eff * threads / cores)
            saving = sc.matrix_ms * (1.0 - 1.0 / speedup)
            cause = f"OMP_NUM_THREADS={env}" if env is not None and str(env) == str(threads) else \
                f"torch.set_num_threads({threads})"
            message = (f"The step is compute-bound on {threads} intra-op thread(s) while this process "
                       f"may use {cores} cores ({cause}): the convolutions and matmuls "
                       f"({sc.matrix_ms:.1f} ms per step) could run on all of them")
            evidence["assumed_speedup"] = round(speedup, 3)
        else:
            saving = sc.matrix_ms * float(self.config["oversubscription_loss"])
            message = (f"{threads} intra-op threads on {cores} usable cores: the threads of each "
                       f"parallel operator time-slice and wait for each other "
                       f"({sc.matrix_ms:.1f} ms per step of convolutions and matmuls)")
        evidence["estimate_basis"] = ("assumed parallel efficiency" if threads < cores
                                      else "assumed loss to oversubscription")
        # The script's own thread setting, when its files say where (else the finding is the
        # process's, with no line).
        calls = ctx.find_calls(["set_num_threads"])
        location = calls[0].location if len(calls) == 1 else None
        yield self.finding(
            message, location=location, evidence=evidence, est_saving_ms_per_step=round(saving, 4),
            suggestion=Suggestion(
                title=f"Use one intra-op thread per usable core: torch.set_num_threads({cores}) "
                      f"or OMP_NUM_THREADS={cores}",
                before=f"torch.set_num_threads({threads})",
                after="torch.set_num_threads(len(os.sched_getaffinity(0)))",
                # The tuner's num_threads injector sets it and keeps the script's own call out.
                knobs={"num_threads": sorted({threads, cores})}))
