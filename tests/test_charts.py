"""shared.charts: loss.png and accuracy.png are real, readable PNGs for every kind of results file."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

from shared.charts import HEIGHT_PX, WIDTH_PX, render_charts
from shared.metrics import parse_results

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

    original_title, original_legend = Axes.set_title, Axes.legend

    def spy_title(self: Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append(label)
        return original_title(self, label, *args, **kwargs)  # type: ignore[arg-type]

    def spy_legend(self: Axes, *args: object, **kwargs: object) -> object:
        legend = original_legend(self, *args, **kwargs)
        labels.extend(t.get_text() for t in legend.get_texts())
        return legend

    monkeypatch.setattr(Axes, "set_title", spy_title)
    monkeypatch.setattr(Axes, "legend", spy_legend)
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
