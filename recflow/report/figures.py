"""The numbers behind each picture of the run report, as pure functions on the run directory's
JSON and frames and on mart rows: no file, no warehouse, no plotting here, so each is tested on
small hand-made inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

KEYS = ["user_id", "item_id", "cutoff_date"]
SOURCE_PREFIX = "is_from_"
MODEL = "model"
# A served item counts as popular when its popularity rank is in this top share of the
# catalogue's ranked items.
POPULAR_SHARE = 0.1


@dataclass(frozen=True)
class RankerInterval:
    """One ranker's metric on one segment, with its 95% bootstrap interval when known."""

    ranker: str
    value: float
    low: float | None
    high: float | None


def ranker_intervals(
    metrics: Mapping[str, Any], *, segment: str, metric: str
) -> list[RankerInterval]:
    """Every ranker of `segment` (model, source:*, baseline:*, ...) with `metric` and its
    interval, best first: the dot-and-whisker picture and the table read from this."""
    values = metrics.get("metrics", {}).get(segment, {})
    intervals = metrics.get("intervals", {}).get(segment, {})
    rows = []
    for ranker, by_metric in values.items():
        if metric not in by_metric:
            continue
        bounds = intervals.get(ranker, {}).get(metric)
        rows.append(
            RankerInterval(
                ranker=ranker,
                value=float(by_metric[metric]),
                low=float(bounds[0]) if bounds else None,
                high=float(bounds[1]) if bounds else None,
            )
        )
    return sorted(rows, key=lambda row: (-row.value, row.ranker))


@dataclass(frozen=True)
class Difference:
    """The paired (model - ranker) difference of the primary metric over the same users."""

    ranker: str
    mean: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the interval excludes zero, else 'tied'."""
        if self.low > 0:
            return "better"
        return "worse" if self.high < 0 else "tied"


def model_differences(metrics: Mapping[str, Any], *, segment: str) -> list[Difference]:
    """The model against every other ranker on `segment` (metrics.json `model_against`),
    closest competitor first."""
    against = metrics.get("model_against", {}).get(segment, {})
    rows = [
        Difference(name, float(value["mean"]), float(value["low"]), float(value["high"]))
        for name, value in against.items()
    ]
    return sorted(rows, key=lambda row: (row.mean, row.ranker))


def recall_by_source(positives: pd.DataFrame, candidates: pd.DataFrame) -> dict[str, float]:
    """Of the test window's positive (user, item, cutoff) rows, the share each candidate source
    put in front of the ranker (`candidates`' `is_from_<source>` flags), and `all_sources` for
    their union: the ceiling of any ranker's recall. Empty when there is no positive."""
    sources = sorted(
        column.removeprefix(SOURCE_PREFIX)
        for column in candidates.columns
        if column.startswith(SOURCE_PREFIX)
    )
    if positives.empty:
        return {}
    flags = candidates[[*KEYS, *(SOURCE_PREFIX + source for source in sources)]]
    matched = positives[KEYS].merge(flags, on=KEYS, how="left", indicator=True)
    shares = {
        source: float(matched[SOURCE_PREFIX + source].fillna(False).astype(bool).mean())
        for source in sources
    }
    shares["all_sources"] = float((matched["_merge"] == "both").mean())
    return shares


def top_features(importance: pd.DataFrame, *, n: int = 15) -> pd.DataFrame:
    """The `n` features with the most gain, with their share of the total gain, most first."""
    total = float(importance["gain"].sum())
    ranked = importance.sort_values(["gain", "feature"], ascending=[False, True]).head(n)
    share = ranked["gain"] / total if total > 0 else ranked["gain"] * 0.0
    return pd.DataFrame(
        {"feature": ranked["feature"].to_numpy(), "gain": ranked["gain"], "gain_share": share}
    ).reset_index(drop=True)


@dataclass(frozen=True)
class ScoreSummary:
    """The batch's model scores, and how many rows the popularity fallback served unscored."""

    model_scores: np.ndarray
    fallback_rows: int
    fallback_users: int
    users: int

    @property
    def model_rows(self) -> int:
        return len(self.model_scores)


def score_summary(batch: pd.DataFrame) -> ScoreSummary:
    """Split the batch into model rows and fallback rows (the batch stores a null score for a
    row no model scored: trainer/recommend.py)."""
    is_fallback = batch["score"].isna()
    return ScoreSummary(
        model_scores=batch.loc[~is_fallback, "score"].to_numpy(dtype=np.float64),
        fallback_rows=int(is_fallback.sum()),
        fallback_users=int(batch.loc[is_fallback, "user_id"].nunique()),
        users=int(batch["user_id"].nunique()),
    )


@dataclass(frozen=True)
class ServedPopularity:
    """What the batch serves against the catalogue at its cutoff.

    Popularity ranks (1 = most popular): one per served row (`served`), one per ranked
    catalogue item (`catalogue`); items without a rank (no users in the popularity window) are
    counted apart.
    """

    catalogue_items: int
    served_items: int
    served: np.ndarray
    catalogue: np.ndarray
    served_rows_unranked: int
    popular_share_of_rows: float

    @property
    def coverage(self) -> float:
        """Share of the catalogue served to at least one user."""
        return self.served_items / self.catalogue_items if self.catalogue_items else 0.0


def served_popularity(batch: pd.DataFrame, catalogue: pd.DataFrame) -> ServedPopularity:
    """Catalogue coverage and popularity bias of the batch: `catalogue` holds item_id and
    popularity_rank at the batch's cutoff (item_features)."""
    catalogue = catalogue.drop_duplicates("item_id")
    ranks = catalogue.set_index("item_id")["popularity_rank"].astype("float64")
    ranked_items = int(ranks.notna().sum())
    scale = float(max(ranked_items, 1))
    served_ranks = batch["item_id"].map(ranks)
    served = served_ranks.dropna().to_numpy(dtype=np.float64)
    popular = int(((served - 1) / scale < POPULAR_SHARE).sum())
    return ServedPopularity(
        catalogue_items=len(catalogue),
        served_items=int(batch.loc[batch["item_id"].isin(ranks.index), "item_id"].nunique()),
        served=served,
        catalogue=np.sort(ranks.dropna().to_numpy(dtype=np.float64)),
        served_rows_unranked=int(served_ranks.isna().sum()),
        popular_share_of_rows=popular / len(batch) if len(batch) else 0.0,
    )


@dataclass(frozen=True)
class QualitySeries:
    """Realised quality over serving days: what was served beside the popularity baseline."""

    dates: pd.Series
    values: dict[str, pd.Series]


# Columns of the dbt model served_quality_realised drawn over time: the served lists and what
# the popularity baseline would have scored for the same users.
QUALITY_DATE = "serving_date"
QUALITY_METRICS = ("ndcg", "popularity_ndcg", "recall", "popularity_recall")


def quality_series(frame: pd.DataFrame) -> QualitySeries | None:
    """Each serving day's realised quality, averaged over the model versions served that day
    and weighted by their evaluated users; None when there is no closed window yet."""
    if frame.empty:
        return None
    weights = pd.to_numeric(frame["evaluated_users"], errors="coerce").astype("float64")
    # Decimals (a SQL numeric) arrive as objects.
    weighted = pd.DataFrame(
        {
            QUALITY_DATE: pd.to_datetime(frame[QUALITY_DATE]),
            "weight": weights,
            **{
                name: pd.to_numeric(frame[name], errors="coerce").astype("float64") * weights
                for name in QUALITY_METRICS
            },
        }
    )
    daily = weighted.groupby(QUALITY_DATE, sort=True).sum()
    return QualitySeries(
        dates=pd.Series(daily.index),
        values={
            name: (daily[name] / daily["weight"]).reset_index(drop=True) for name in QUALITY_METRICS
        },
    )
