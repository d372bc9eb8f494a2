"""The evaluation gate: from the output items of the baseline's and the candidates' eval runs to a verdict.

Per test item and model, each grader's score is scaled to [0, 1] (a `score_model` grader by its range) and the
item's score is their mean. A model's `score` is the mean item score; its `pass_rate` the share of items every
grader passed; per grader, the share of items that grader passed.

Checks (all must hold):
- `min_score`: candidate score >= min_score;
- `min_improvement`: candidate score - baseline score >= min_improvement;
- per grader, `no regression`: candidate pass rate >= baseline pass rate - regression_tolerance;
- every item answered: no errored item in either run (an errored item is scored 0, and named).

`ci95` is the 95% percentile-bootstrap interval of the mean paired difference (candidate - baseline) over
the test items (numpy, 2000 resamples, fixed seed: the same items give the same interval). With checkpoints
evaluated, the candidate is the one with the best score (ties: the later one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.aoai.evals import OutputItem
from shared.evalspec import EvalCheck, EvaluationSpec, LostExample, grader_range

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240701
LOST_SHOWN = 5


@dataclass
class Scored:
    """One model's eval run, scored per item."""

    items: dict[int, float] = field(default_factory=dict)
    passed: dict[int, bool] = field(default_factory=dict)
    per_grader: dict[str, list[bool]] = field(default_factory=dict)
    per_grader_scores: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[int, str] = field(default_factory=dict)
    items_data: dict[int, dict[str, Any]] = field(default_factory=dict)
    errored: int = 0

    @property
    def score(self) -> float:
        return sum(self.items.values()) / len(self.items) if self.items else 0.0

    @property
    def pass_rate(self) -> float:
        return sum(self.passed.values()) / len(self.passed) if self.passed else 0.0

    def grader_pass_rates(self) -> dict[str, float]:
        return {name: round(sum(v) / len(v), 4) if v else 0.0 for name, v in self.per_grader.items()}

    def grader_scores(self) -> dict[str, float]:
        return {name: round(sum(v) / len(v), 4) if v else 0.0 for name, v in self.per_grader_scores.items()}


def score_items(spec: EvaluationSpec, items: Sequence[OutputItem]) -> Scored:
    scored = Scored()
    for position, item in enumerate(items):
        index = item.datasource_item_id if item.datasource_item_id is not None else position
        values: list[float] = []
        all_passed = True
        for result in item.results:
            low, high = grader_range(spec, result.name)
            value = min(1.0, max(0.0, (result.score - low) / (high - low)))
            if result.error:
                value, all_passed = 0.0, False
            values.append(value)
            all_passed = all_passed and result.passed
            scored.per_grader.setdefault(result.name, []).append(bool(result.passed and not result.error))
            scored.per_grader_scores.setdefault(result.name, []).append(value)
        if item.status == "error" or any(r.error for r in item.results):
            scored.errored += 1
        scored.items[index] = sum(values) / len(values) if values else 0.0
        scored.passed[index] = all_passed and bool(values)
        scored.answers[index] = item.output_text
        scored.items_data[index] = item.datasource_item
    return scored


def bootstrap_ci(differences: Sequence[float]) -> tuple[float, float]:
    import numpy as np

    if not differences:
        return (0.0, 0.0)
    values = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (round(float(low), 4), round(float(high), 4))


@dataclass
class Verdict:
    passed: bool
    improvement: float
    ci95: tuple[float, float]
    checks: list[EvalCheck]
    reasons: list[str]
    lost: list[LostExample]


def _prompt(item: dict[str, Any]) -> str:
    messages = item.get("input") or []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1] if users else "")[:300]


def verdict(spec: EvaluationSpec, baseline: Scored, candidate: Scored) -> Verdict:
    common = sorted(set(baseline.items) & set(candidate.items))
    differences = [candidate.items[i] - baseline.items[i] for i in common]
    improvement = round(candidate.score - baseline.score, 4)
    ci = bootstrap_ci(differences)
    checks = [
        EvalCheck(
            name="min_score",
            passed=candidate.score >= spec.min_score,
            detail=f"candidate score {candidate.score:.3f} {'>=' if candidate.score >= spec.min_score else '<'} "
            f"min_score {spec.min_score:.3f}",
        ),
        EvalCheck(
            name="min_improvement",
            passed=improvement >= spec.min_improvement,
            detail=f"improvement {improvement:+.3f} over the baseline ({baseline.score:.3f}) "
            f"{'>=' if improvement >= spec.min_improvement else '<'} min_improvement {spec.min_improvement:+.3f}; "
            f"95% interval [{ci[0]:+.3f}, {ci[1]:+.3f}]",
        ),
    ]
    base_rates, cand_rates = baseline.grader_pass_rates(), candidate.grader_pass_rates()
    for name, rate in cand_rates.items():
        before = base_rates.get(name, 0.0)
        ok = rate >= before - spec.regression_tolerance
        checks.append(EvalCheck(
            name=f"no_regression:{name}",
            passed=ok,
            detail=f"{name}: pass rate {rate:.0%} against the baseline's {before:.0%} "
            f"(tolerance {spec.regression_tolerance:.0%})",
        ))
    errored = baseline.errored + candidate.errored
    checks.append(EvalCheck(
        name="all_items_graded",
        passed=errored == 0,
        detail=f"{errored} item(s) errored in grading" if errored else "every item was answered and graded",
    ))
    reasons = [c.detail for c in checks if not c.passed]
    lost_order = sorted(common, key=lambda i: (candidate.items[i] - baseline.items[i], i))
    lost = [
        LostExample(
            item=i,
            prompt=_prompt(candidate.items_data.get(i) or baseline.items_data.get(i) or {}),
            reference=str((candidate.items_data.get(i) or {}).get("reference", ""))[:300],
            baseline_answer=baseline.answers.get(i, "")[:300],
            candidate_answer=candidate.answers.get(i, "")[:300],
            baseline_score=round(baseline.items[i], 4),
            candidate_score=round(candidate.items[i], 4),
        )
        for i in lost_order[:LOST_SHOWN]
        if candidate.items[i] < baseline.items[i]
    ]
    return Verdict(passed=not reasons, improvement=improvement, ci95=ci, checks=checks, reasons=reasons, lost=lost)


def best_candidate(candidates: dict[str, tuple[int, Scored]]) -> str:
    """The key of the best-scoring candidate; `candidates` maps key -> (order, scored), later order wins ties."""
    return max(candidates, key=lambda k: (round(candidates[k][1].score, 9), candidates[k][0]))
