"""Training charts: `loss.png` and `accuracy.png` from a parsed results file, drawn like the Azure portal's.

Drawn headless with matplotlib's object API (a `Figure` on an Agg canvas): no pyplot, so no global figure
registry, no backend switch and nothing shared between threads or calls.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from shared.metrics import ResultsTable

WIDTH_PX = 1200
HEIGHT_PX = 600
_DPI = 100
_SMOOTH_FROM = 20  # draw a smoothed per-step training curve once it has this many points

_TRAIN = "tab:blue"
_VALID = "tab:orange"
_FULL = "tab:red"

Series = Sequence[tuple[int, float]]


def render_charts(table: ResultsTable, /, *, title: str) -> dict[str, bytes]:
    """PNG bytes (1200x600 px) by file name: `loss.png` and `accuracy.png`."""
    return {
        "loss.png": _render(
            table,
            title=f"{title} - loss",
            ylabel="loss",
            train=table.series("train_loss"),
            valid=table.series("valid_loss"),
            full=table.series("full_valid_loss"),
            accuracy=False,
        ),
        "accuracy.png": _render(
            table,
            title=f"{title} - token accuracy",
            ylabel="token accuracy",
            train=table.series("train_mean_token_accuracy"),
            valid=table.series("valid_mean_token_accuracy"),
            full=table.series("full_valid_mean_token_accuracy"),
            accuracy=True,
        ),
    }


def _render(
    table: ResultsTable,
    *,
    title: str,
    ylabel: str,
    train: Series,
    valid: Series,
    full: Series,
    accuracy: bool,
) -> bytes:
    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI, layout="tight")
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
        for step, value in full:
            text = f"{value:.1%}" if accuracy else f"{value:.3f}"
            ax.annotate(text, (step, value), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=9)

    subtitle = []
    if table.columns == "legacy":
        subtitle.append("legacy results format")
    if not valid and not full:
        subtitle.append("no validation data")
        if train:  # say it where the reader looks for the validation curve
            ax.plot([], [], linestyle="none", label="no validation data")
    ax.set_title(title + (f" ({', '.join(subtitle)})" if subtitle else ""), fontsize=13)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if accuracy:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    if train or valid or full:
        if not accuracy:
            ax.set_ylim(bottom=0)
        ax.legend(loc="upper right" if not accuracy else "lower right")
    else:
        ax.text(0.5, 0.5, "no data in the results file", transform=ax.transAxes, ha="center", va="center")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _line(ax: Axes, series: Series, *, color: str, label: str, alpha: float) -> None:
    width = 1.0 if alpha < 1 else 1.8  # faint and thin under a smoothed curve, plain otherwise
    ax.plot(*_unzip(series), color=color, linewidth=width, alpha=alpha, label=label)


def _unzip(series: Series) -> tuple[list[int], list[float]]:
    return [s for s, _ in series], [v for _, v in series]


def _smooth(series: Series) -> list[tuple[int, float]]:
    """Centred moving average over about 1/15 of the points, drawn only where the whole window fits: an EMA
    lags a falling loss (draws it too high), and a window shrunk at the ends just repeats the noise there."""
    values = [v for _, v in series]
    half = max(1, len(values) // 30)
    width = 2 * half + 1
    return [(series[i][0], sum(values[i - half : i + half + 1]) / width) for i in range(half, len(values) - half)]
