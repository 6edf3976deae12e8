"""The run report: its figure data on hand-made inputs, and the whole HTML page from a real
run trained on the tiny sample's dbt build, opened and parsed, every picture decoded."""

from __future__ import annotations

import base64
import io
import shutil
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import TinyWarehouse
from PIL import Image

from recflow.cli import main as recflow_main
from recflow.report.build import REPORT_FILE, SECTIONS, write_report
from recflow.report.figures import (
    model_differences,
    quality_series,
    ranker_intervals,
    recall_by_source,
    score_summary,
    served_popularity,
    top_features,
)
from trainer import pipeline
from trainer.ranker import RankerParams

FAST = RankerParams(num_boost_round=30, num_threads=1, log_every=1000)
# A picture per section, except the realised quality, drawn only when there is a history.
FIGURES = {
    "ranker-intervals",
    "candidate-recall",
    "feature-importance",
    "score-distribution",
    "coverage-popularity",
}
METRICS = {
    "metrics": {
        "warm_users": {
            "model": {"ndcg@10": 0.20},
            "baseline:als": {"ndcg@10": 0.05},
            "source:popularity": {"ndcg@10": 0.15},
            "global_popularity": {"recall@10": 0.3},
        }
    },
    "intervals": {
        "warm_users": {
            "model": {"ndcg@10": [0.18, 0.22]},
            "baseline:als": {"ndcg@10": [0.04, 0.06]},
        }
    },
    "model_against": {
        "warm_users": {
            "baseline:als": {"mean": 0.15, "low": 0.13, "high": 0.17},
            "source:popularity": {"mean": 0.05, "low": -0.01, "high": 0.11},
        }
    },
}


def test_ranker_intervals_best_first_with_bounds_where_known() -> None:
    rows = ranker_intervals(METRICS, segment="warm_users", metric="ndcg@10")
    assert [row.ranker for row in rows] == ["model", "source:popularity", "baseline:als"]
    assert (rows[0].low, rows[0].high) == (0.18, 0.22)
    assert rows[1].low is None and rows[1].high is None
    assert ranker_intervals(METRICS, segment="all_users", metric="ndcg@10") == []


def test_model_differences_closest_first_with_a_verdict() -> None:
    rows = model_differences(METRICS, segment="warm_users")
    assert [(row.ranker, row.verdict) for row in rows] == [
        ("source:popularity", "tied"),
        ("baseline:als", "better"),
    ]


def test_recall_by_source_counts_positives_each_source_reached() -> None:
    cutoff = date(2026, 3, 1)
    positives = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["a", "b", "a", "c"],
            "cutoff_date": [cutoff] * 4,
        }
    )
    candidates = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2"],
            "item_id": ["a", "b", "a", "z"],
            "cutoff_date": [cutoff] * 4,
            "is_from_popularity": [True, False, True, True],
            "is_from_repeat": [False, True, False, False],
        }
    )
    recall = recall_by_source(positives, candidates)
    assert recall == {"popularity": 0.5, "repeat": 0.25, "all_sources": 0.75}
    assert recall_by_source(positives.head(0), candidates) == {}


def test_top_features_shares_of_total_gain() -> None:
    importance = pd.DataFrame({"feature": ["a", "b", "c"], "gain": [1.0, 3.0, 0.0]})
    top = top_features(importance, n=2)
    assert top["feature"].tolist() == ["b", "a"]
    assert top["gain_share"].tolist() == [0.75, 0.25]


def test_score_summary_separates_the_unscored_fallback() -> None:
    batch = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "score": [0.5, 0.1, np.nan, np.nan]})
    summary = score_summary(batch)
    assert summary.model_scores.tolist() == [0.5, 0.1]
    assert (summary.fallback_rows, summary.fallback_users, summary.users) == (2, 1, 2)


def test_served_popularity_coverage_and_bias() -> None:
    catalogue = pd.DataFrame(
        {"item_id": [f"i{n}" for n in range(20)], "popularity_rank": [*range(1, 20), None]}
    )
    batch = pd.DataFrame({"item_id": ["i0", "i0", "i1", "i10", "i19"]})
    popularity = served_popularity(batch, catalogue)
    assert (popularity.catalogue_items, popularity.served_items) == (20, 4)
    assert popularity.coverage == 0.2
    # i0 and i1 are in the top 10% of 19 ranked items; i19 has no rank.
    assert popularity.popular_share_of_rows == 3 / 5
    assert popularity.served_rows_unranked == 1
    assert sorted(popularity.served.tolist()) == [1.0, 1.0, 2.0, 11.0]


def test_quality_series_weights_each_days_model_versions_by_their_users() -> None:
    frame = pd.DataFrame(
        {
            "serving_date": [date(2026, 3, 2), date(2026, 3, 1), date(2026, 3, 1)],
            "model_version": ["b", "a", "b"],
            "evaluated_users": [10, 30, 10],
            # A SQL numeric arrives as Decimal objects.
            "ndcg": [Decimal("0.25"), Decimal("0.10"), Decimal("0.30")],
            "popularity_ndcg": [0.2, 0.1, 0.1],
            "recall": [0.5, 0.2, 0.6],
            "popularity_recall": [0.4, 0.3, 0.3],
        }
    )
    series = quality_series(frame)
    assert series is not None
    assert [d.date() for d in series.dates] == [date(2026, 3, 1), date(2026, 3, 2)]
    assert series.values["ndcg"].tolist() == pytest.approx([0.15, 0.25])
    assert series.values["recall"].tolist() == pytest.approx([0.3, 0.5])
    assert series.values["popularity_ndcg"].tolist() == pytest.approx([0.1, 0.2])
    assert quality_series(frame.head(0)) is None


class _Page(HTMLParser):
    """Section ids, and each figure's name with its image source."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, str] = {}
        self.text: list[str] = []
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(str(attributes["id"]))
        elif tag == "figure":
            self._figure = attributes["data-figure"]
        elif tag == "img" and self._figure:
            self.figures[self._figure] = str(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def decoded(source: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(source.removeprefix(prefix))))
    image.load()
    assert image.format == "PNG"
    assert image.width > 100 and image.height > 100
    return image


@pytest.fixture(scope="module")
def tiny_run(tiny_warehouse: TinyWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run trained (quickly) on the tiny build, its warehouse copied beside it."""
    root = tmp_path_factory.mktemp("report")
    warehouse = root / "warehouse.duckdb"
    shutil.copy(tiny_warehouse.duckdb_path, warehouse)
    run_dir = root / "runs" / "tiny"
    pipeline.run(
        pipeline.TrainerConfig(
            warehouse_uri=f"duckdb://{warehouse}",
            manifest_path=str(tiny_warehouse.isolation.target_path / "manifest.json"),
            run_dir=str(run_dir),
            run_id=run_dir.name,
            recommendations_table=None,
            params=FAST,
        )
    )
    return run_dir


@pytest.mark.dbt
def test_report_of_a_real_run_has_every_section_and_picture(tiny_run: Path) -> None:
    path = write_report(tiny_run)
    assert path == tiny_run / REPORT_FILE
    page = parsed(path)
    assert page.sections == list(SECTIONS)
    assert set(page.figures) == FIGURES
    for source in page.figures.values():
        decoded(source)
    text = " ".join(page.text)
    assert "no history yet (served_quality_realised)" in text
    assert "not available" not in text


@pytest.mark.dbt
def test_report_command_draws_the_realised_quality_when_there_is_history(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(tiny_run.parent.parent / "warehouse.duckdb", warehouse)
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            "create table main.served_quality_realised as select * from (values "
            "(date '2026-03-01', 'a', 40, 0.10, 0.08, 0.30, 0.25), "
            "(date '2026-03-02', 'a', 42, 0.12, 0.09, 0.28, 0.26)) as history(serving_date, "
            "model_version, evaluated_users, ndcg, popularity_ndcg, recall, popularity_recall)"
        )
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)

    assert (
        recflow_main(
            ["report", "--run-dir", str(run_dir), "--warehouse-uri", f"duckdb://{warehouse}"]
        )
        == 0
    )

    assert f"report: {run_dir / REPORT_FILE}" in capsys.readouterr().out
    page = parsed(run_dir / REPORT_FILE)
    assert set(page.figures) == {*FIGURES, "realised-quality"}
    decoded(page.figures["realised-quality"])
