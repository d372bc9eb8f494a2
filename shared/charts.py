"""Training charts: `loss.png`, `accuracy.png` (and an RFT job's `reward.png`) from a parsed results file, drawn
to answer a reader's questions.

- Where are the epochs? Dotted vertical lines at each epoch end (full-validation rows and checkpoints), numbered
  along the top (every few epochs when there are many, so 20+ epochs stay readable).
- Which model is served? The best checkpoint and the deployed one are marked and named in the legend.
- Would it pass? The quality gate's limits are drawn as dashed horizontal lines, named with their value.
- Is it still learning? A smoothed training curve that reaches the last step (a local linear fit over a
  window of about 1/15 of the points, so the ends are neither cut off nor lagging), over the raw per-step curve.

Titles are shortened to fit, the legend sits below the plot (never on a curve) and value labels are drawn
only while there are few enough epochs for them not to collide.

Drawn headless with matplotlib's object API (a `Figure` on an Agg canvas): no pyplot, so no global figure
registry, no backend switch and nothing shared between threads or calls.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.metrics import ResultsTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from shared.runs import RunRecord

WIDTH_PX = 1200
HEIGHT_PX = 600
_DPI = 100
_SMOOTH_FROM = 20  # draw a smoothed per-step training curve once it has this many points
_MAX_EPOCH_LABELS = 12
_MAX_VALUE_LABELS = 8
_TITLE_CHARS = 90

_TRAIN = "tab:blue"
_VALID = "tab:orange"
_FULL = "tab:red"
_BEST = "tab:purple"
_DEPLOYED = "tab:green"
_GATE = "#555555"

Series = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class ChartMarks:
    """What to mark on the charts besides the curves (all optional)."""

    epoch_ends: Sequence[int] = ()
    best_step: int | None = None
    deployed_step: int | None = None
    loss_limits: Sequence[tuple[str, float]] = field(default_factory=tuple)
    """(what, value) of each gate limit on a loss: drawn on the loss chart."""
    accuracy_limits: Sequence[tuple[str, float]] = field(default_factory=tuple)


def chart_marks(record: RunRecord, table: ResultsTable | None = None) -> ChartMarks:
    """The marks for a run: its epochs, its best and deployed checkpoints, its gate's limits."""
    steps = {c.step_number for c in record.job.checkpoints}
    if table is not None:
        steps |= {s for s, _ in table.series("full_valid_loss")}
    last_step = table.rows[-1].step if table is not None and table.rows else None
    best = record.metrics.best_checkpoint if record.metrics is not None else None
    best_step = best.step_number if best is not None else None
    deployed_step = None
    model = record.deployment.model
    if model and record.deployment.provisioning_state == "Succeeded":
        by_model = {c.fine_tuned_model_checkpoint: c.step_number for c in record.job.checkpoints}
        deployed_step = by_model.get(model, last_step if model == record.job.fine_tuned_model else None)
    loss_limits: list[tuple[str, float]] = []
    accuracy_limits: list[tuple[str, float]] = []
    gate = record.spec.gate if record.spec else None
    if gate is not None:
        for what, value in (
            ("max full validation loss", gate.max_full_valid_loss),
            ("max validation loss", gate.max_valid_loss),
            ("max training loss", gate.max_train_loss),
        ):
            if value is not None:
                loss_limits.append((what, value))
        for what, value in (
            ("min validation accuracy", gate.min_valid_token_accuracy),
            ("min training accuracy", gate.min_train_token_accuracy),
        ):
            if value is not None:
                accuracy_limits.append((what, value))
    return ChartMarks(
        epoch_ends=sorted(s for s in steps if last_step is None or s <= last_step),
        best_step=int(best_step) if isinstance(best_step, int) else None,
        deployed_step=deployed_step,
        loss_limits=tuple(loss_limits),
        accuracy_limits=tuple(accuracy_limits),
    )


def render_charts(
    table: ResultsTable, /, *, title: str, subtitle: str = "", marks: ChartMarks | None = None
) -> dict[str, bytes]:
    """PNG bytes (1200x600 px) by file name: `loss.png` and `accuracy.png`, and `reward.png` for an RFT job."""
    return {name: _png(figure) for name, figure in chart_figures(table, title=title, subtitle=subtitle,
                                                                  marks=marks).items()}


def render_chart(
    table: ResultsTable, name: str, /, *, title: str, subtitle: str = "", marks: ChartMarks | None = None
) -> bytes:
    """One of the two charts (`loss.png` or `accuracy.png`)."""
    return _png(chart_figures(table, title=title, subtitle=subtitle, marks=marks)[name])


def chart_figures(
    table: ResultsTable, /, *, title: str, subtitle: str = "", marks: ChartMarks | None = None
) -> dict[str, Figure]:
    """The figures behind `render_charts` (tests look at what is drawn)."""
    marks = marks or ChartMarks()
    figures = {
        "loss.png": _figure(
            table,
            title=f"{_fit(title)} - loss",
            subtitle=subtitle,
            ylabel="loss",
            train=table.series("train_loss"),
            valid=table.series("valid_loss"),
            full=table.series("full_valid_loss"),
            accuracy=False,
            marks=marks,
            limits=marks.loss_limits,
        ),
        "accuracy.png": _figure(
            table,
            title=f"{_fit(title)} - token accuracy",
            subtitle=subtitle,
            ylabel="token accuracy",
            train=table.series("train_mean_token_accuracy"),
            valid=table.series("valid_mean_token_accuracy"),
            full=table.series("full_valid_mean_token_accuracy"),
            accuracy=True,
            marks=marks,
            limits=marks.accuracy_limits,
        ),
    }
    reward_train = table.series("train_reward_mean")
    reward_valid = table.series("valid_reward_mean")
    reward_full = table.series("full_valid_reward_mean")
    if reward_train or reward_valid or reward_full:  # reinforcement fine-tuning: the grader's mean reward
        figures["reward.png"] = _figure(
            table,
            title=f"{_fit(title)} - mean reward",
            subtitle=subtitle,
            ylabel="mean grader reward",
            train=reward_train,
            valid=reward_valid,
            full=reward_full,
            accuracy=False,
            marks=marks,
            limits=(),
        )
    return figures


def _fit(text: str, limit: int = _TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _figure(
    table: ResultsTable,
    *,
    title: str,
    subtitle: str,
    ylabel: str,
    train: Series,
    valid: Series,
    full: Series,
    accuracy: bool,
    marks: ChartMarks,
    limits: Sequence[tuple[str, float]],
) -> Figure:
    # imported here, not with the module: matplotlib is most of a cold start, and only charts need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    what = "training"
    if train:
        smooth = len(train) >= _SMOOTH_FROM
        _line(ax, train, color=_TRAIN, label=f"{what} (per step)" if smooth else what, alpha=0.35 if smooth else 1)
        if smooth:
            ax.plot(*_unzip(_smooth(train)), color=_TRAIN, linewidth=2, label=f"{what} (smoothed)")
    if valid:
        ax.plot(*_unzip(valid), color=_VALID, linewidth=1.8, marker="o", markersize=3.5, label="validation")
    if full:
        ax.plot(
            *_unzip(full),
            linestyle="none",
            marker="D",
            markersize=8,
            color=_FULL,
            markeredgecolor="black",
            label="full validation (epoch end)",
            zorder=5,
        )
        if len(full) <= _MAX_VALUE_LABELS:
            for step, value in full:
                text = f"{value:.1%}" if accuracy else f"{value:.3f}"
                ax.annotate(
                    text,
                    (step, value),
                    textcoords="offset points",
                    xytext=(0, -16 if accuracy else 12),
                    ha="center",
                    fontsize=9,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                    zorder=6,
                )
    has_data = bool(train or valid or full)
    if has_data:
        _epochs(ax, marks.epoch_ends)
        _checkpoints(ax, marks, {**dict(train), **dict(valid), **dict(full)})
        for what_limit, value in limits:
            shown = f"{value:.0%}" if accuracy else f"{value:g}"
            ax.axhline(value, color=_GATE, linestyle="--", linewidth=1.3, label=f"gate: {what_limit} {shown}")

    notes = []
    if table.columns == "legacy":
        notes.append("legacy results format")
    if not valid and not full:
        notes.append("no validation data")
        if train:  # say it where the reader looks for the validation curve
            ax.plot([], [], linestyle="none", label="no validation data")
    ax.set_title(title + (f" ({', '.join(notes)})" if notes else ""), fontsize=13, loc="left")
    if subtitle:
        ax.text(1.0, 1.01, _fit(subtitle, 70), transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
                color="#444444")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if accuracy:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    if has_data:
        if not accuracy:
            ax.set_ylim(bottom=0)
        handles, labels = ax.get_legend_handles_labels()
        # Below the plot, never over a curve.
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=9, frameon=False)
    else:
        ax.text(0.5, 0.5, "no data in the results file", transform=ax.transAxes, ha="center", va="center")
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _epochs(ax: Axes, ends: Sequence[int]) -> None:
    if not ends:
        return
    every = max(1, math.ceil(len(ends) / _MAX_EPOCH_LABELS))
    transform = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for number, step in enumerate(ends, start=1):
        ax.axvline(step, color="#888888", linestyle=":", linewidth=0.9, zorder=1)
        if number % every == 0 or number == 1:
            ax.text(step, 0.995, f"epoch {number}" if number == 1 else str(number), transform=transform,
                    ha="right", va="top", fontsize=8, color="#555555", clip_on=True)


def _checkpoints(ax: Axes, marks: ChartMarks, values: dict[int, float]) -> None:
    for step, color, name, style in (
        (marks.best_step, _BEST, "best checkpoint", "-."),
        (marks.deployed_step, _DEPLOYED, "deployed", "-"),
    ):
        if step is None:
            continue
        ax.axvline(step, color=color, linestyle=style, linewidth=1.6, label=f"{name} (step {step})", zorder=4)
        value = values.get(step)
        if value is not None:
            ax.plot([step], [value], marker="*", markersize=15, color=color, markeredgecolor="black", zorder=7)


def _line(ax: Axes, series: Series, *, color: str, label: str, alpha: float) -> None:
    width = 1.0 if alpha < 1 else 1.8  # faint and thin under a smoothed curve, plain otherwise
    ax.plot(*_unzip(series), color=color, linewidth=width, alpha=alpha, label=label)


def _unzip(series: Series) -> tuple[list[int], list[float]]:
    return [s for s, _ in series], [v for _, v in series]


def _smooth(series: Series) -> list[tuple[int, float]]:
    """A local linear fit over a window of about 1/15 of the points, evaluated at every step, the last included.

    A centred moving average stops half a window before the end, and an EMA lags a falling loss (draws it too
    high); a straight line fitted to the window around each point has neither problem, and at the ends the
    window is one-sided but full width, so the curve reaches the last step without repeating its noise.
    """
    import numpy as np

    steps = np.array([s for s, _ in series], dtype=float)
    values = np.array([v for _, v in series], dtype=float)
    n = len(values)
    half = max(1, n // 30)
    width = 2 * half + 1
    out = []
    for i in range(n):
        lo = min(max(0, i - half), max(0, n - width))
        window = slice(lo, lo + width)
        x, y = steps[window], values[window]
        _slope, intercept = np.polyfit(x - steps[i], y, 1)
        out.append((int(steps[i]), float(intercept)))
    return out
