"""The report's pictures: each function draws prepared numbers (recflow.report.figures) with
matplotlib's Agg canvas and returns PNG bytes, so the HTML can embed them and no display or
pyplot state is involved."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recflow.report.figures import (
    MODEL,
    QualitySeries,
    RankerInterval,
    ScoreSummary,
    ServedPopularity,
)

DPI = 100
MODEL_COLOUR = "#c0392b"
OTHER_COLOUR = "#34495e"
FALLBACK_COLOUR = "#95a5a6"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def ranker_intervals_plot(
    segments: Mapping[str, Sequence[RankerInterval]], *, metric: str
) -> bytes:
    """Dot-and-whisker of `metric` per ranker, one panel per segment, the model in red."""
    height = 1.0 + 0.32 * max((len(rows) for rows in segments.values()), default=1)
    figure = Figure(figsize=(5.2 * max(len(segments), 1), height))
    for position, (segment, rows) in enumerate(segments.items(), start=1):
        axes = figure.add_subplot(1, max(len(segments), 1), position)
        ordered = list(reversed(rows))  # best at the top
        y = np.arange(len(ordered))
        for index, row in enumerate(ordered):
            colour = MODEL_COLOUR if row.ranker == MODEL else OTHER_COLOUR
            if row.low is not None and row.high is not None:
                axes.plot([row.low, row.high], [index, index], color=colour, linewidth=2)
            axes.plot(row.value, index, "o", color=colour)
        axes.set_yticks(y, [row.ranker for row in ordered], fontsize=8)
        axes.set_xlabel(f"{metric} (95% bootstrap interval)")
        axes.set_title(segment.replace("_", " "))
        axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def recall_plot(recall: Mapping[str, float]) -> bytes:
    """Bars of candidate recall per source, the union of all sources last."""
    names = list(recall)
    figure = Figure(figsize=(6.5, 3.2))
    axes = figure.add_subplot()
    colours = [MODEL_COLOUR if name == "all_sources" else OTHER_COLOUR for name in names]
    bars = axes.bar(names, [recall[name] for name in names], color=colours)
    axes.bar_label(bars, labels=[f"{recall[name]:.1%}" for name in names], fontsize=8)
    axes.set_ylabel("share of test positives")
    axes.set_ylim(0, min(1.0, max(recall.values(), default=1.0) * 1.2 + 0.02))
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(figure)


def importance_plot(features: Sequence[str], gain_share: Sequence[float]) -> bytes:
    """Horizontal bars of each feature's share of the model's total gain, most at the top."""
    figure = Figure(figsize=(6.5, 0.9 + 0.28 * max(len(features), 1)))
    axes = figure.add_subplot()
    axes.barh(list(reversed(features)), list(reversed(gain_share)), color=OTHER_COLOUR)
    axes.set_xlabel("share of total gain")
    axes.tick_params(axis="y", labelsize=8)
    return _png(figure)


def score_plot(summary: ScoreSummary, *, bins: int = 40) -> bytes:
    """Histogram of the batch's model scores, and the rows served by model vs by fallback."""
    figure = Figure(figsize=(9.0, 3.2))
    scores, rows = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    if summary.model_rows:
        scores.hist(summary.model_scores, bins=bins, color=OTHER_COLOUR)
    scores.set_xlabel("model score")
    scores.set_ylabel("rows")
    scores.set_title(f"model rows ({summary.model_rows:,})")
    bars = rows.bar(
        ["model", "fallback (no score)"],
        [summary.model_rows, summary.fallback_rows],
        color=[OTHER_COLOUR, FALLBACK_COLOUR],
    )
    rows.bar_label(bars, labels=[f"{summary.model_rows:,}", f"{summary.fallback_rows:,}"])
    rows.set_ylim(0, max(summary.model_rows, summary.fallback_rows, 1) * 1.15)
    rows.set_ylabel("rows served")
    rows.set_title(f"{summary.fallback_users:,} of {summary.users:,} users on the fallback")
    return _png(figure)


def popularity_plot(popularity: ServedPopularity) -> bytes:
    """Cumulative share of served rows and of catalogue items by popularity rank (log scale):
    the further the served curve sits above the catalogue's, the stronger the popularity bias."""
    figure = Figure(figsize=(6.5, 3.4))
    axes = figure.add_subplot()
    for values, label, colour in (
        (popularity.catalogue, "catalogue items", FALLBACK_COLOUR),
        (popularity.served, "served rows", MODEL_COLOUR),
    ):
        if len(values):
            ordered = np.sort(values)
            share = np.arange(1, len(ordered) + 1) / len(ordered)
            axes.step(ordered, share, where="post", label=label, color=colour, linewidth=2)
    axes.set_xscale("log")
    axes.set_xlabel("popularity rank (1 = most popular, log scale)")
    axes.set_ylabel("cumulative share")
    axes.set_ylim(0, 1.02)
    axes.set_title(f"{popularity.coverage:.1%} of the catalogue served")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)


def quality_plot(series: QualitySeries) -> bytes:
    """Realised NDCG and recall of what was served per serving day, beside popularity."""
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.add_subplot()
    for name, values in series.values.items():
        axes.plot(series.dates, values, marker="o", label=name)
    axes.set_xlabel("serving date")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return _png(figure)
