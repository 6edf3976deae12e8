"""The trainer's write-back refuses a batch the serving checks reject (the gate's own checks),
so the served table is never replaced by one that misses users."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pytest

from trainer.errors import TrainerInputError
from trainer.pipeline import check_servable

SCORING = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"]})
KNOWN_USERS = pd.Series(["u1", "u2", "u3"])
FALLBACK = ["a", "b"]


def batch(rows: list[tuple[str, str, int, float | None]]) -> pa.Table:
    users, items, ranks, scores = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": users,
            "item_id": items,
            "recommendation_rank": ranks,
            "score": scores,
            "cutoff_date": [date(2026, 1, 12)] * len(rows),
            "model_version": ["run"] * len(rows),
            "generated_at": [datetime(2026, 1, 12, tzinfo=UTC)] * len(rows),
        }
    )


SERVABLE = [
    ("u1", "b", 1, 0.9),
    ("u1", "a", 2, 0.5),
    ("u2", "a", 1, 0.7),
    ("u3", "a", 1, None),
    ("u3", "b", 2, None),
]


def test_a_servable_batch_passes() -> None:
    check_servable(batch(SERVABLE), SCORING, KNOWN_USERS, FALLBACK, k=2, table="ml.recs")


def test_a_batch_missing_a_known_user_is_refused_naming_the_table() -> None:
    without_u3 = [row for row in SERVABLE if row[0] != "u3"]

    with pytest.raises(TrainerInputError) as refused:
        check_servable(batch(without_u3), SCORING, KNOWN_USERS, FALLBACK, k=2, table="ml.recs")

    assert "ml.recs was left as it was" in str(refused.value)
    assert "1 known user(s) have no recommendations, e.g. ('u3')" in str(refused.value)
