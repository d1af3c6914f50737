"""The gate's verdict: what was measured, what was decided, and the exit code it implies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perftune.analysis.stats import percent
from perftune.capture.parent.measure import Launch
from perftune.gate.decision import FIGURE_WORDS, Decision, DecisionRule, Figure
from perftune.gate.explain import Explanation
from perftune.gate.load import RunnerLoad

Status = Literal["pass", "regression", "inconclusive"]
InconclusivePolicy = Literal["pass", "fail", "error"]
Mode = Literal["revision", "baseline", "ab"]

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_INCONCLUSIVE = 4


@dataclass(frozen=True)
class Verdict:
    status: Status
    decisions: tuple[Decision, ...]  # one per look at the data; the last one counts
    rule: DecisionRule
    mode: Mode
    base_label: str
    head_label: str
    launches: tuple[Launch, ...]
    base_samples_ms: tuple[float, ...]
    head_samples_ms: tuple[float, ...]
    inconclusive_policy: InconclusivePolicy = "error"
    fail_on_new_findings: bool = False
    explanation: Explanation | None = None
    notes: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    run_dir: Path | None = None
    # CPU time per step of each launch (empty where not measured), and the runner's load.
    base_cpu_ms: tuple[float, ...] = ()
    head_cpu_ms: tuple[float, ...] = ()
    load: RunnerLoad | None = None

    @property
    def figure(self) -> Figure:
        """What the deciding look compared: wall time or CPU time per step."""
        return self.decision.figure

    @property
    def decision(self) -> Decision:
        return self.decisions[-1]

    @property
    def ratio(self) -> float:
        return self.decision.estimate.ratio

    @property
    def improvement(self) -> bool:
        return self.decision.improvement

    @property
    def threshold(self) -> float:
        return self.decision.threshold

    @property
    def structural_failure(self) -> bool:
        """New problems in head (a new sync point, …) fail the gate when asked to."""
        return (self.fail_on_new_findings and self.explanation is not None
                and bool(self.explanation.new_problems))

    @property
    def failed(self) -> bool:
        return self.return_code != EXIT_PASS

    @property
    def return_code(self) -> int:
        if self.status == "regression" or self.structural_failure:
            return EXIT_REGRESSION
        if self.status == "inconclusive":
            return {"pass": EXIT_PASS, "fail": EXIT_REGRESSION, "error": EXIT_INCONCLUSIVE}[
                self.inconclusive_policy]
        return EXIT_PASS

    @property
    def headline(self) -> str:
        """One line for a terminal or a PR comment title."""
        est = self.decision.estimate
        change = est.ratio - 1.0
        direction = "slower" if change > 0 else "faster"
        numbers = (f"head/base {est.ratio:.3f} ({abs(change):.1%} {direction}), "
                   f"{percent(est.confidence)} CI [{est.low:.3f}, {est.high:.3f}], "
                   f"allowed +{self.threshold:.1%}, {est.n_base}+{est.n_head} launches, "
                   f"on {FIGURE_WORDS[self.figure]}")
        if self.status == "regression":
            word = "REGRESSION"
        elif self.status == "inconclusive":
            word = "INCONCLUSIVE"
        elif self.structural_failure:
            word = "FAIL (new problems in head)"
        elif self.improvement:
            word = "PASS (faster)"
        else:
            word = "PASS"
        return f"{word}: {numbers}"
