"""Batch recommendations: the model's top-K candidates per user at the latest cutoff."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from trainer.evaluation import SCORE, top_k_positions

RECOMMENDATIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("recommendation_rank", pa.int64()),
        ("score", pa.float64()),
        ("snapshot_date", pa.date32()),
        ("model_version", pa.string()),
        ("generated_at", pa.timestamp("us")),
    ]
)


def top_k_recommendations(
    scoring_rows: pd.DataFrame,
    scores: np.ndarray,
    *,
    k: int,
    model_version: str,
    generated_at: datetime,
) -> pa.Table:
    """Each user's k best-scored candidates, ranked 1..k, in the warehouse table's schema."""
    keys = scoring_rows[["user_id", "item_id", "snapshot_date"]]
    positions, rank = top_k_positions(keys.assign(**{SCORE: scores}), SCORE, k=k, descending=True)
    top = keys.take(positions).reset_index(drop=True)
    top = top.assign(rank=rank, **{SCORE: np.asarray(scores)[positions]})
    if top.duplicated(["user_id", "item_id"]).any():
        raise ValueError("scoring rows repeat a (user_id, item_id) pair: it would be ranked twice")
    frame = pd.DataFrame(
        {
            "user_id": top["user_id"],
            "item_id": top["item_id"],
            "recommendation_rank": top["rank"].astype("int64"),
            "score": top[SCORE].astype("float64"),
            "snapshot_date": top["snapshot_date"],
            "model_version": model_version,
            "generated_at": pd.Timestamp(generated_at).tz_localize(None),
        }
    )
    return pa.Table.from_pandas(frame, schema=RECOMMENDATIONS_SCHEMA, preserve_index=False)
