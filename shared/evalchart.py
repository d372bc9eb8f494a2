"""`eval.png`: baseline against candidate, per grader and overall, with 95% bootstrap intervals.

One pair of bars per grader (its mean score over the test items, scaled to [0, 1]) and one for the overall score;
each bar carries the 95% percentile-bootstrap interval of that mean (numpy, fixed seed). The title gives the
verdict and the improvement with its paired interval. Drawn with matplotlib's object API (no pyplot).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

WIDTH_PX = 1200
HEIGHT_PX = 600
_DPI = 100
_BASELINE = "#8c8c8c"
_CANDIDATE = "tab:green"
_REFUSED = "tab:red"


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    import numpy as np

    from shared.evalgate import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

    if not values:
        return (0.0, 0.0)
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = data[rng.integers(0, len(data), size=(BOOTSTRAP_RESAMPLES, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def bars(document: dict[str, Any]) -> list[tuple[str, float, tuple[float, float], float, tuple[float, float]]]:
    """(label, baseline mean, its interval, candidate mean, its interval) per grader, then overall."""
    base, cand = document["baseline"], document["candidate"]
    out = []
    for name, grader in cand["graders"].items():
        b_scores = base["graders"].get(name, {}).get("item_scores", [])
        c_scores = grader.get("item_scores", [])
        out.append((name, _mean(b_scores), mean_interval(b_scores), _mean(c_scores), mean_interval(c_scores)))
    b_all = [e["baseline"]["score"] for e in document["examples"]]
    c_all = [e["candidate"]["score"] for e in document["examples"]]
    out.append(("overall", _mean(b_all), mean_interval(b_all), _mean(c_all), mean_interval(c_all)))
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def render_eval_chart(document: dict[str, Any]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = bars(document)
    evaluation = document["evaluation"]
    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(rows)))
    width = 0.38
    passed = bool(evaluation.get("passed"))
    colour = _CANDIDATE if passed else _REFUSED
    for offset, label, fill in ((-width / 2, "baseline", _BASELINE), (width / 2, "candidate", colour)):
        means = [r[1] if label == "baseline" else r[3] for r in rows]
        intervals = [r[2] if label == "baseline" else r[4] for r in rows]
        errors = [[max(0.0, m - lo) for m, (lo, _) in zip(means, intervals, strict=True)],
                  [max(0.0, hi - m) for m, (_, hi) in zip(means, intervals, strict=True)]]
        side = document["baseline"] if label == "baseline" else document["candidate"]
        name = f"{label}: {side['deployment']} ({str(side['model'])[:60]})"
        container = ax.bar([p + offset for p in positions], means, width, yerr=errors, capsize=4, color=fill,
                           label=name)
        ax.bar_label(container, labels=[f"{m:.2f}" for m in means], padding=14, fontsize=9)
    ax.set_xticks(positions, [r[0] for r in rows])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("mean score on the held-out test set (0-1)")
    ci = evaluation.get("ci95") or [0.0, 0.0]
    verdict = "passed" if passed else "refused"
    ax.set_title(
        f"{document['run_id']}: evaluation {verdict} - {evaluation.get('test_examples', 0)} test examples, "
        f"improvement {evaluation.get('improvement') or 0:+.3f} (95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}])",
        fontsize=11,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()
