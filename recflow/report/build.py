"""One self-contained HTML report per run (`report.html` in the run directory): the model
against every baseline with intervals, candidate recall per source, feature importance, the
batch's scores, catalogue coverage and popularity bias, and realised quality when there is a
history. Pictures are PNG embedded as base64, so the file stands alone."""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from string import Template

from recflow.report import plots
from recflow.report.figures import (
    MODEL,
    model_differences,
    quality_series,
    ranker_intervals,
    score_summary,
    served_popularity,
    top_features,
)
from recflow.report.inputs import (
    QUALITY_TABLE,
    RunArtifacts,
    WarehouseFacts,
    read_run,
    read_warehouse,
)

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
PRIMARY_METRIC = "ndcg@10"
SEGMENTS = ("warm_users", "all_users")
# Section ids, in page order; the tests look for each.
SECTIONS = (
    "key-figures",
    "model-vs-baselines",
    "candidate-recall",
    "feature-importance",
    "score-distribution",
    "coverage-popularity",
    "realised-quality",
)

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>recflow run $run_id</title>
<style>
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.note { color: #666; }
</style>
</head>
<body>
<h1>recflow run $run_id</h1>
<p class="note">warehouse $warehouse_uri, commit $commit</p>
$sections
</body>
</html>
""")


@dataclass(frozen=True)
class Section:
    """One titled part of the page: HTML paragraphs or tables, and pictures."""

    section_id: str
    title: str
    body: str

    def html(self) -> str:
        heading = f"<h2>{html.escape(self.title)}</h2>"
        return f'<section id="{self.section_id}">\n{heading}\n{self.body}\n</section>'


def write_report(
    run_dir: Path,
    *,
    warehouse_uri: str | None = None,
    schema: str | None = None,
    quality_table: str = QUALITY_TABLE,
) -> Path:
    """Build `report.html` in `run_dir` from its files and the warehouse (default: the one the
    run recorded in run_metadata.json); returns its path."""
    run = read_run(run_dir)
    uri = warehouse_uri or str(run.metadata.get("warehouse_uri", ""))
    facts = read_warehouse(uri, run, schema=schema, quality_table=quality_table)
    path = run_dir / REPORT_FILE
    path.write_text(render(run, facts, warehouse_uri=uri, quality_table=quality_table))
    log.info("wrote the run report %s", path)
    return path


def render(
    run: RunArtifacts, facts: WarehouseFacts, *, warehouse_uri: str, quality_table: str
) -> str:
    """The whole page as one string."""
    sections = [
        _key_figures(run, facts),
        _model_vs_baselines(run),
        _candidate_recall(facts),
        _feature_importance(run),
        _score_distribution(run),
        _coverage_popularity(run, facts),
        _realised_quality(facts, quality_table),
    ]
    return PAGE.substitute(
        run_id=html.escape(run.run_id),
        warehouse_uri=html.escape(warehouse_uri or "unknown"),
        commit=html.escape(str(run.metadata.get("git_commit", "unknown"))),
        sections="\n".join(section.html() for section in sections),
    )


def _key_figures(run: RunArtifacts, facts: WarehouseFacts) -> Section:
    rows: list[tuple[str, str]] = []
    for segment in SEGMENTS:
        model = next(
            (
                row
                for row in ranker_intervals(run.metrics, segment=segment, metric=PRIMARY_METRIC)
                if row.ranker == MODEL
            ),
            None,
        )
        if model is not None:
            rows.append(
                (
                    f"model {PRIMARY_METRIC}, {_label(segment)}",
                    _interval(model.value, model.low, model.high),
                )
            )
        differences = model_differences(run.metrics, segment=segment)
        if differences:
            closest = differences[0]
            rows.append(
                (
                    f"model - best other ranker ({closest.ranker}), {_label(segment)}",
                    f"{closest.mean:+.4f} [{closest.low:+.4f}, {closest.high:+.4f}] "
                    f"({closest.verdict})",
                )
            )
    if facts.recall:
        rows.append(
            (
                "candidate recall of test positives, all sources",
                f"{facts.recall['all_sources']:.1%}",
            )
        )
    for segment, ceiling in run.metrics.get("candidate_recall", {}).items():
        rows.append((f"candidate recall, mean per user, {_label(segment)}", f"{ceiling:.1%}"))
    scores = score_summary(run.batch)
    rows.append(("users served", f"{scores.users:,}"))
    rows.append(("users on the popularity fallback", f"{scores.fallback_users:,}"))
    if facts.catalogue is not None:
        popularity = served_popularity(run.batch, facts.catalogue)
        rows.append(
            (
                "catalogue served",
                f"{popularity.served_items:,} of {popularity.catalogue_items:,} items "
                f"({popularity.coverage:.1%})",
            )
        )
        rows.append(
            (
                "served rows on the top 10% most popular items",
                f"{popularity.popular_share_of_rows:.1%}",
            )
        )
    rows.append(("best iteration", str(run.metadata.get("best_iteration", ""))))
    body = (
        "<table>\n"
        + "\n".join(
            f'<tr><th>{html.escape(name)}</th><td class="number">{html.escape(value)}</td></tr>'
            for name, value in rows
        )
        + "\n</table>"
    )
    return Section("key-figures", "Key figures", body)


def _model_vs_baselines(run: RunArtifacts) -> Section:
    by_segment = {
        segment: ranker_intervals(run.metrics, segment=segment, metric=PRIMARY_METRIC)
        for segment in SEGMENTS
    }
    by_segment = {segment: rows for segment, rows in by_segment.items() if rows}
    if not by_segment:
        return Section("model-vs-baselines", "Model against baselines", _note("no metrics"))
    header = (
        "<tr><th>ranker</th>"
        + "".join(
            f"<th>{_label(segment)}: {PRIMARY_METRIC} [95%]</th><th>model - it [95%]</th>"
            for segment in by_segment
        )
        + "</tr>"
    )
    names = [row.ranker for row in next(iter(by_segment.values()))]
    lines = []
    for name in names:
        cells = []
        for segment, rows in by_segment.items():
            row = next((row for row in rows if row.ranker == name), None)
            difference = next(
                (d for d in model_differences(run.metrics, segment=segment) if d.ranker == name),
                None,
            )
            cells.append(_interval(row.value, row.low, row.high) if row else "")
            cells.append(
                f"{difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]"
                if difference
                else ""
            )
        lines.append(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f'<td class="number">{html.escape(cell)}</td>' for cell in cells)
            + "</tr>"
        )
    body = (
        _figure(
            "ranker-intervals",
            plots.ranker_intervals_plot(by_segment, metric=PRIMARY_METRIC),
            f"{PRIMARY_METRIC} per ranker with 95% intervals",
        )
        + "\n<table>\n"
        + header
        + "\n"
        + "\n".join(lines)
        + "\n</table>"
    )
    return Section("model-vs-baselines", "Model against baselines", body)


def _candidate_recall(facts: WarehouseFacts) -> Section:
    title = "Candidate recall per source (test window)"
    if not facts.recall:
        reason = facts.problems.get("recall", "no positive interaction in the test window")
        return Section("candidate-recall", title, _note(f"not available: {reason}"))
    body = _note(
        "Share of the test window's positive interactions (label_window_positives) that each "
        "candidate source put in front of the ranker; all_sources is the ceiling of any "
        "ranker's recall."
    ) + _figure("candidate-recall", plots.recall_plot(facts.recall), "candidate recall per source")
    return Section("candidate-recall", title, body)


def _feature_importance(run: RunArtifacts) -> Section:
    top = top_features(run.importance)
    picture = plots.importance_plot(top["feature"].tolist(), top["gain_share"].tolist())
    body = _note(f"The {len(top)} features with the most gain, of {len(run.importance)}.")
    return Section(
        "feature-importance",
        "Feature importance",
        body + _figure("feature-importance", picture, "share of gain per feature"),
    )


def _score_distribution(run: RunArtifacts) -> Section:
    summary = score_summary(run.batch)
    body = _note(
        f"{summary.model_rows:,} rows scored by the model, {summary.fallback_rows:,} served by "
        "the popularity fallback (no score)."
    ) + _figure("score-distribution", plots.score_plot(summary), "batch score distribution")
    return Section("score-distribution", "Score distribution of the batch", body)


def _coverage_popularity(run: RunArtifacts, facts: WarehouseFacts) -> Section:
    title = "Catalogue coverage and popularity bias"
    if facts.catalogue is None or facts.catalogue.empty:
        reason = facts.problems.get("catalogue", "no catalogue at the batch's cutoff")
        return Section("coverage-popularity", title, _note(f"not available: {reason}"))
    popularity = served_popularity(run.batch, facts.catalogue)
    body = _note(
        f"{popularity.served_items:,} of {popularity.catalogue_items:,} catalogue items served "
        f"({popularity.coverage:.1%}); {popularity.popular_share_of_rows:.1%} of served rows are "
        f"on the top 10% most popular items; {popularity.served_rows_unranked:,} served rows on "
        "items without a popularity rank."
    ) + _figure(
        "coverage-popularity",
        plots.popularity_plot(popularity),
        "served popularity against the catalogue",
    )
    return Section("coverage-popularity", title, body)


def _realised_quality(facts: WarehouseFacts, quality_table: str) -> Section:
    title = "Realised quality over time"
    series = quality_series(facts.quality) if facts.quality is not None else None
    if series is None:
        return Section("realised-quality", title, _note(f"no history yet ({quality_table})"))
    body = _figure(
        "realised-quality",
        plots.quality_plot(series),
        "realised quality of the served lists beside the popularity baseline, per serving day",
    )
    return Section("realised-quality", title, body)


def _figure(name: str, png: bytes, caption: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure data-figure="{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(caption)}'
        "</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _label(segment: str) -> str:
    return segment.replace("_", " ")


def _interval(value: float, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"
