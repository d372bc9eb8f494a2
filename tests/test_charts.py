"""shared.charts: loss.png and accuracy.png are real, readable PNGs for every kind of results file."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from shared.charts import HEIGHT_PX, WIDTH_PX, ChartMarks, _smooth, chart_figures, chart_marks, render_charts
from shared.metrics import CheckpointRef, parse_results, summarize

DATA = Path(__file__).parent / "data" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(
    "name", ["current_gaps.csv", "overfitting.csv", "legacy.csv", "no_validation_columns.csv", "noisy_spike.csv"]
)
def test_both_charts_are_1200_by_600_pngs(name: str) -> None:
    table = parse_results((DATA / name).read_bytes())
    charts = render_charts(table, title="ftjob-test")
    assert set(charts) == {"loss.png", "accuracy.png"}
    for file_name, data in charts.items():
        assert png_size(data) == (WIDTH_PX, HEIGHT_PX) == (1200, 600), file_name
        assert len(data) > 20_000, file_name
        pixels = imread(io.BytesIO(data), format="png")
        assert pixels.shape[:2] == (600, 1200)
        # Not a blank canvas: a chart has lines, text and grid in several colours.
        assert pixels.std() > 0.05


def test_the_charts_differ_and_have_content_where_validation_exists() -> None:
    with_valid = render_charts(parse_results((DATA / "overfitting.csv").read_bytes()), title="run")
    without = render_charts(parse_results((DATA / "no_validation_columns.csv").read_bytes()), title="run")
    assert with_valid["loss.png"] != with_valid["accuracy.png"]
    assert with_valid["loss.png"] != without["loss.png"]


def test_no_validation_data_is_said_on_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    labels: list[str] = []
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    original_title, original_legend = Axes.set_title, Figure.legend

    def spy_title(self: Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append(label)
        return original_title(self, label, *args, **kwargs)  # type: ignore[arg-type]

    def spy_legend(self: Figure, *args: object, **kwargs: object) -> object:
        legend = original_legend(self, *args, **kwargs)
        labels.extend(t.get_text() for t in legend.get_texts())
        return legend

    monkeypatch.setattr(Axes, "set_title", spy_title)
    monkeypatch.setattr(Figure, "legend", spy_legend)
    render_charts(parse_results((DATA / "no_validation_columns.csv").read_bytes()), title="ftjob-x")
    assert titles == ["ftjob-x - loss (no validation data)", "ftjob-x - token accuracy (no validation data)"]
    assert labels.count("no validation data") == 2

    titles.clear()
    labels.clear()
    render_charts(parse_results((DATA / "overfitting.csv").read_bytes()), title="ftjob-y")
    assert titles == ["ftjob-y - loss", "ftjob-y - token accuracy"]
    assert "full validation (epoch end)" in labels and "validation" in labels
    assert "training (smoothed)" in labels

    titles.clear()
    render_charts(parse_results((DATA / "legacy.csv").read_bytes()), title="ftjob-z")
    assert titles[0] == "ftjob-z - loss (legacy results format)"


def test_an_empty_results_file_still_renders() -> None:
    charts = render_charts(parse_results("step,train_loss\n"), title="empty")
    assert png_size(charts["loss.png"]) == (1200, 600)


def test_rendering_leaves_pyplot_alone() -> None:
    had_pyplot = "matplotlib.pyplot" in sys.modules
    render_charts(parse_results((DATA / "current_gaps.csv").read_bytes()), title="x")
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules


# --- what the charts answer ------------------------------------------------------------------------------------
def _results(epochs: int, steps_per_epoch: int = 10) -> str:
    """A current-format results file: loss falling, validation every 5 steps, full validation at each epoch end."""
    lines = ["step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,"
             "full_valid_mean_token_accuracy"]
    for step in range(1, epochs * steps_per_epoch + 1):
        loss = 2.0 / (1 + step / 20) + (0.05 if step % 2 else -0.05)
        valid = f"{loss * 1.1:.4f},{1 - loss / 3:.4f}" if step % 5 == 0 else ","
        full = f"{loss * 1.05:.4f},{1 - loss / 3.2:.4f}" if step % steps_per_epoch == 0 else ","
        lines.append(f"{step},{loss:.4f},{1 - loss / 2.5:.4f},{valid},{full}")
    return "\n".join(lines) + "\n"


def _legend_labels(fig: Any) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_best_and_deployed_checkpoints_epochs_and_gate_limits_are_drawn() -> None:
    table = parse_results(_results(3))
    marks = ChartMarks(
        epoch_ends=[10, 20, 30],
        best_step=20,
        deployed_step=30,
        loss_limits=[("max validation loss", 0.5)],
        accuracy_limits=[("min validation accuracy", 0.8)],
    )
    figures = chart_figures(table, title="run-1", subtitle="gpt-4o-mini.ft-abc", marks=marks)
    loss, accuracy = figures["loss.png"], figures["accuracy.png"]
    labels = _legend_labels(loss)
    assert "best checkpoint (step 20)" in labels and "deployed (step 30)" in labels
    assert "gate: max validation loss 0.5" in labels and "gate: min validation accuracy 80%" in _legend_labels(accuracy)
    ax = loss.axes[0]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in dotted) == [10, 20, 30]  # one per epoch end
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("epoch")] == ["epoch 1"]
    gate = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(gate) == 1 and list(gate[0].get_ydata()) == [0.5, 0.5]
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert sorted(float(s.get_xdata()[0]) for s in stars) == [20.0, 30.0]


def test_the_legend_sits_below_the_plot_and_titles_fit() -> None:
    long_title = "a-very-long-run-id-" * 10
    fig = chart_figures(parse_results(_results(3)), title=long_title, marks=ChartMarks(best_step=20))["loss.png"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    legend_box = fig.legends[0].get_window_extent(renderer)
    assert legend_box.y1 <= ax.get_window_extent(renderer).y0  # entirely below the axes: over no curve
    title = ax.get_title(loc="left")
    assert title.endswith("… - loss") and len(title) <= 100
    left_title = ax._left_title  # type: ignore[attr-defined]  # the artist behind set_title(loc="left")
    assert left_title.get_window_extent(renderer).x1 <= fig.bbox.x1  # the title fits in the image


def test_twenty_five_epochs_stay_readable() -> None:
    table = parse_results(_results(25, steps_per_epoch=8))
    ends = [8 * n for n in range(1, 26)]
    ax = chart_figures(table, title="run", marks=ChartMarks(epoch_ends=ends))["loss.png"].axes[0]
    epoch_labels = [t.get_text() for t in ax.texts if t.get_text()]
    assert 1 < len(epoch_labels) <= 13 and epoch_labels[0] == "epoch 1"
    assert not [a for a in ax.texts if "." in a.get_text()]  # no value labels to collide at 25 epochs


def test_smoothing_reaches_the_last_step_without_lag() -> None:
    line = [(step, 3.0 - 0.01 * step) for step in range(1, 201)]
    smoothed = _smooth(line)
    assert [s for s, _ in smoothed] == [s for s, _ in line]  # every step, the last included
    assert max(abs(a - b) for (_, a), (_, b) in zip(smoothed, line, strict=True)) < 1e-9  # a line stays put
    noisy = [(step, 1.0 + (0.3 if step % 2 else -0.3)) for step in range(1, 201)]
    tail = [v for _, v in _smooth(noisy)[-10:]]
    assert all(abs(v - 1.0) < 0.1 for v in tail)  # the noise is smoothed at the end too


def test_chart_marks_come_from_the_record() -> None:
    from shared.gate import GateSpec
    from shared.runs import CheckpointInfo, RunRecord, RunSource, RunSpec

    record = RunRecord.new("r-1", RunSource(container="c", blob_name="b.jsonl", etag="e"))
    record.spec = RunSpec(model="m", gate=GateSpec(max_valid_loss=0.4, min_valid_token_accuracy=0.7))
    record.job.fine_tuned_model = "m.ft-final"
    record.job.checkpoints = [
        CheckpointInfo(id=f"ftchkpt-{n}", step_number=10 * n, fine_tuned_model_checkpoint=f"m.ft-final:ckpt-{10 * n}")
        for n in (1, 2)
    ]
    table = parse_results(_results(3))
    record.metrics = summarize(table).model_copy(
        update={"best_checkpoint": CheckpointRef(id="ftchkpt-2", step_number=20, fine_tuned_model_checkpoint="x")}
    )
    record.deployment.model, record.deployment.provisioning_state = "m.ft-final:ckpt-10", "Succeeded"
    marks = chart_marks(record, table)
    assert list(marks.epoch_ends) == [10, 20, 30] and marks.best_step == 20 and marks.deployed_step == 10
    assert list(marks.loss_limits) == [("max validation loss", 0.4)]
    assert list(marks.accuracy_limits) == [("min validation accuracy", 0.7)]
    record.deployment.model = "m.ft-final"
    assert chart_marks(record, table).deployed_step == 30  # the final model: the last step
