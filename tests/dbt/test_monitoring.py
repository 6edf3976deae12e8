"""The monitoring marts (dbt/models/marts/monitoring) on the tiny sample: two served batches are
both kept in the history, the batch whose label window closed is scored against the events (and
against popularity), and a feature multiplied at the scoring cutoff trips the drift error while
the undrifted build passes."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from conftest import Isolation, TinyWarehouse, query, run_dbt_command

pytestmark = pytest.mark.dbt

K = 20
DRIFTED_FEATURE = "user_events_28d"

# Every known user gets K items: the user's candidates at `cutoff` by item-kNN score, then the
# popularity ranking at that cutoff (the trainer's fallback), as the serving tests require.
BATCH_SQL = """
create schema if not exists ml;
create or replace table ml.batch_recommendations as
with
candidates as (
    select user_id, item_id, 0 as source,
        row_number() over (partition by user_id
            order by itemknn_score desc nulls last, popularity_rank nulls last, item_id) as r
    from {candidates} where cutoff_date = $cutoff
),
popular as (
    select known_users.user_id, item_features.item_id, 1 as source,
        item_features.popularity_rank as r
    from main.known_users cross join main.item_features
    where item_features.cutoff_date = $cutoff and item_features.popularity_rank <= 2 * {k}
),
merged as (
    select user_id, item_id, min(source * 100000 + r) as position
    from (select * from candidates union all select * from popular) group by all
),
ranked as (
    select user_id, item_id, position,
        row_number() over (partition by user_id order by position, item_id) as recommendation_rank
    from merged qualify recommendation_rank <= {k}
)
select user_id, item_id, recommendation_rank,
    case when position < 100000 then 1.0 / position end as score,
    $cutoff as cutoff_date, $version as model_version,
    timestamp '2030-01-01 00:00:00' + to_days(recommendation_rank) as generated_at
from ranked
"""


@dataclass(frozen=True)
class Monitored:
    """A copy of the tiny warehouse served twice: a batch at the latest closed test cutoff, with
    the scoring candidates moved to the day before (a previous serving day with the same feature
    distribution), then one at the scoring cutoff with the candidates as built."""

    isolation: Isolation
    closed_cutoff: date
    scoring_cutoff: date
    builds: tuple[str, str]


def _serve(path: Path, candidates: str, cutoff: date, version: str) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            BATCH_SQL.format(candidates=candidates, k=K),
            {"cutoff": cutoff, "version": version},
        )


def _shift_scoring_cutoff(path: Path, *, days: int) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"update main.scoring_candidates set cutoff_date = cutoff_date + {days}")


def _serving_build(isolation: Isolation) -> tuple[int, str]:
    result = run_dbt_command(isolation, "build", "--selector", "serving")
    return result.returncode, result.output


@pytest.fixture(scope="module")
def monitored(tiny_warehouse: TinyWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    work = tmp_path_factory.mktemp("monitoring")
    isolation = Isolation.under(work, tiny_warehouse.data_dir)
    shutil.copy(tiny_warehouse.duckdb_path, isolation.duckdb_path)
    ((closed_cutoff,),) = query(
        isolation.duckdb_path,
        "select max(cutoff_date) from main.training_examples where split = 'test'",
    )
    ((scoring_cutoff,),) = query(
        isolation.duckdb_path, "select max(cutoff_date) from main.scoring_candidates"
    )
    _serve(isolation.duckdb_path, "main.training_examples", closed_cutoff, "v-closed")
    _shift_scoring_cutoff(isolation.duckdb_path, days=-1)
    first_code, first = _serving_build(isolation)
    assert first_code == 0, first
    _shift_scoring_cutoff(isolation.duckdb_path, days=1)
    _serve(isolation.duckdb_path, "main.scoring_candidates", scoring_cutoff, "v-scoring")
    second_code, second = _serving_build(isolation)
    assert second_code == 0, second
    return Monitored(isolation, closed_cutoff, scoring_cutoff, (first, second))


def _frame(path: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).df()


def test_history_keeps_both_batches(monitored: Monitored) -> None:
    """The second serving build appended its batch and left the first one's day as stored."""
    counts = query(
        monitored.isolation.duckdb_path,
        "select serving_date, model_version, count(distinct user_id), max(recommendation_rank)"
        " from main.served_recommendations_history group by 1, 2 order by 1",
    )
    ((known,),) = query(monitored.isolation.duckdb_path, "select count(*) from main.known_users")
    assert [(row[0], row[1]) for row in counts] == [
        (monitored.closed_cutoff, "v-closed"),
        (monitored.scoring_cutoff, "v-scoring"),
    ]
    assert all(row[2] == known and row[3] == K for row in counts)


def _expected_metrics(path: Path, serving_date: date, lists: pd.DataFrame) -> dict[str, float]:
    """Hit rate, recall and NDCG at K recomputed in pandas from the staged positive events."""
    positives = _frame(
        path,
        "select distinct e.user_id, e.item_id from main.stg_app__events as e"
        f" where e.is_positive and e.event_date >= date '{serving_date}'"
        f" and e.event_date < date '{serving_date}' + interval 7 day",
    )
    by_user = positives.groupby("user_id")["item_id"].apply(set)
    served = lists.sort_values("recommendation_rank").groupby("user_id")["item_id"].apply(list)
    hits, recalls, ndcgs = [], [], []
    for user, relevant in by_user.items():
        items = served.get(user, [])[:K]
        gains = [1 / math.log2(i + 2) for i, item in enumerate(items) if item in relevant]
        ideal = sum(1 / math.log2(i + 2) for i in range(min(K, len(relevant))))
        hits.append(float(bool(gains)))
        recalls.append(len(gains) / len(relevant))
        ndcgs.append(sum(gains) / ideal)
    count = len(by_user)
    return {
        "evaluated_users": count,
        "hit_rate": sum(hits) / count,
        "recall": sum(recalls) / count,
        "ndcg": sum(ndcgs) / count,
    }


def test_realised_quality_scores_the_closed_window_only(monitored: Monitored) -> None:
    """The batch served at the closed test cutoff is scored as the trainer's metrics define it;
    the batch at the scoring cutoff, whose window has not closed, is not scored yet."""
    path = monitored.isolation.duckdb_path
    quality = _frame(path, "select * from main.served_quality_realised")
    assert quality["serving_date"].dt.date.tolist() == [monitored.closed_cutoff]
    row = quality.iloc[0]
    lists = _frame(
        path,
        "select user_id, item_id, recommendation_rank from main.served_recommendations_history"
        f" where serving_date = date '{monitored.closed_cutoff}'",
    )
    expected = _expected_metrics(path, monitored.closed_cutoff, lists)
    assert row["evaluated_users"] == expected["evaluated_users"] > 0
    for metric in ("hit_rate", "recall", "ndcg"):
        assert row[metric] == pytest.approx(expected[metric], rel=1e-9), metric
    for metric in ("popularity_hit_rate", "popularity_recall", "popularity_ndcg"):
        assert 0.0 <= row[metric] <= 1.0
    print(
        f"realised ndcg@{K}={row['ndcg']:.4f} popularity={row['popularity_ndcg']:.4f}"
        f" hit_rate={row['hit_rate']:.4f}/{row['popularity_hit_rate']:.4f}"
        f" users={row['evaluated_users']}"
    )


def test_batch_summary_counts_reach_and_fallback(monitored: Monitored) -> None:
    """Both serving days are summarised; the candidate share is known users with candidates."""
    path = monitored.isolation.duckdb_path
    summary = _frame(path, "select * from main.served_batches_summarised order by serving_date")
    assert summary["serving_date"].dt.date.tolist() == [
        monitored.closed_cutoff,
        monitored.scoring_cutoff,
    ]
    ((with_candidates, known),) = query(
        path,
        "select count(distinct s.user_id), (select count(*) from main.known_users)"
        " from main.scoring_candidates as s",
    )
    assert summary["candidate_user_share"].iloc[-1] == pytest.approx(with_candidates / known)
    assert 0.0 < summary["fallback_row_share"].iloc[-1] < 1.0


def test_drift_error_trips_on_a_drifted_feature_only(
    monitored: Monitored, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The undrifted serving build passed its drift tests; the same warehouse with one feature
    multiplied at the scoring cutoff fails the error test on that feature."""
    path = monitored.isolation.duckdb_path
    features = query(path, "select count(distinct feature_name) from main.feature_drift")[0][0]
    assert features >= 30  # every training_examples column with the role feature
    undrifted = _frame(
        path,
        "select feature_name, reference_population, psi from main.feature_drift"
        f" where serving_date = date '{monitored.scoring_cutoff}'",
    )
    day_over_day = undrifted[undrifted["reference_population"] == "previous_serving_day"]
    assert len(day_over_day) == features
    assert day_over_day["psi"].max() == pytest.approx(0.0, abs=1e-9)

    drifted = Isolation.under(tmp_path_factory.mktemp("drifted"), monitored.isolation.data_dir)
    shutil.copy(path, drifted.duckdb_path)
    with duckdb.connect(str(drifted.duckdb_path)) as connection:
        connection.execute(
            f"update main.scoring_candidates set {DRIFTED_FEATURE} = {DRIFTED_FEATURE} * 5 + 10"
        )
    code, output = _serving_build(drifted)
    assert code != 0, output
    assert "feature_drift_errors_above_psi" in output
    after = _frame(
        drifted.duckdb_path,
        "select feature_name, reference_population, psi from main.feature_drift"
        f" where serving_date = date '{monitored.scoring_cutoff}'"
        f" and feature_name = '{DRIFTED_FEATURE}'",
    )
    drifted_day = after.set_index("reference_population")["psi"]
    assert drifted_day["previous_serving_day"] > 0.25
    before = undrifted[undrifted["feature_name"] == DRIFTED_FEATURE]
    print(
        "psi of",
        DRIFTED_FEATURE,
        "undrifted:",
        before.set_index("reference_population")["psi"].round(4).to_dict(),
        "drifted:",
        drifted_day.round(4).to_dict(),
        "max undrifted day-over-day psi:",
        round(day_over_day["psi"].max(), 6),
    )
