"""Batch recommendations: the model's top-K candidates per user at the latest cutoff, and the
popularity fallback for every known user without candidates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from trainer import serving
from trainer.columns import CUTOFF_DATE, ITEM_ID, USER_ID
from trainer.evaluation import SCORE, top_k_positions

RECOMMENDATIONS_SCHEMA = pa.schema(
    [
        (USER_ID, pa.string()),
        (ITEM_ID, pa.string()),
        ("recommendation_rank", pa.int64()),
        ("score", pa.float64()),
        (CUTOFF_DATE, pa.date32()),
        ("model_version", pa.string()),
        ("generated_at", pa.timestamp("us")),
    ]
)


def top_k_recommendations(
    scoring_rows: pd.DataFrame,
    scores: np.ndarray,
    *,
    k: int,
    users: Sequence[str],
    fallback: list[str],
    cutoff: date,
    model_version: str,
    generated_at: datetime,
) -> pa.Table:
    """Each user's k best-scored candidates, ranked 1..k, in the warehouse table's schema.

    Every user in `users` without candidates gets the first k `fallback` items with a null
    score (trainer/serving.py), so the batch serves every known user.
    """
    keys = scoring_rows[[USER_ID, ITEM_ID]]
    positions, rank = top_k_positions(keys.assign(**{SCORE: scores}), SCORE, k=k, descending=True)
    top = keys.take(positions).reset_index(drop=True)
    top = top.assign(rank=rank, **{SCORE: np.asarray(scores, dtype=np.float64)[positions]})
    if top.duplicated([USER_ID, ITEM_ID]).any():
        raise ValueError("scoring rows repeat a (user_id, item_id) pair: it would be ranked twice")
    served = serving.serve(top, users, fallback[:k])
    frame = pd.DataFrame(
        {
            USER_ID: served[USER_ID],
            ITEM_ID: served[ITEM_ID],
            "recommendation_rank": served["rank"].astype("int64"),
            # Null for fallback rows: no model scored them.
            "score": served[SCORE].astype("float64"),
            CUTOFF_DATE: cutoff,
            "model_version": model_version,
            "generated_at": pd.Timestamp(generated_at).tz_localize(None),
        }
    )
    return pa.Table.from_pandas(frame, schema=RECOMMENDATIONS_SCHEMA, preserve_index=False)
