"""Bootstrap confidence intervals over users, for metrics that are a mean of per-user values.

A ranking metric is an average over the evaluated users, so how much it would move on another
set of users is measured by resampling users with replacement (a percentile bootstrap). Two
rankers scored on the same users are compared through their per-user differences (a paired
bootstrap), which cancels the variation both share: which users are easy, which are hard.

Everything here is pure, seeded and vectorised. The resamples are drawn in chunks of at most
`MAX_DRAWS_PER_CHUNK` user draws, so memory stays bounded whatever the number of users, and
every column of a frame is resampled with the same draws (one matrix product per chunk).

Degenerate inputs: no users is an error (there is no mean to speak of); one user gives an
interval of zero width at that user's value (every resample draws the same user), which says
nothing about the noise: `Interval.users` tells the reader so.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
# User draws per chunk: bounds the draw and count matrices (8 bytes each) to ~32 MB apiece.
MAX_DRAWS_PER_CHUNK = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A mean over users and its percentile-bootstrap interval [low, high]."""

    mean: float
    low: float
    high: float
    confidence: float
    resamples: int
    users: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "users": self.users,
        }


def bootstrap_interval(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of per-user `values` and its percentile-bootstrap interval over users."""
    frame = pd.DataFrame({"value": np.asarray(values, dtype=np.float64)})
    return bootstrap_intervals(frame, confidence=confidence, resamples=resamples, seed=seed)[
        "value"
    ]


def bootstrap_intervals(
    frame: pd.DataFrame,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[Hashable, Interval]:
    """`bootstrap_interval` of every column of `frame` (one row per user), on shared resamples.

    Sharing the resamples makes the intervals of several metrics or rankers on the same users
    consistent with each other, and costs one draw of users for all columns.
    """
    return bootstrap_interval_sets([frame], confidence=confidence, resamples=resamples, seed=seed)[
        0
    ]


def bootstrap_interval_sets(
    frames: Sequence[pd.DataFrame],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict[Hashable, Interval]]:
    """`bootstrap_intervals` of each of `frames` (the same users, in the same row order), all
    from one draw of users.

    Each result equals `bootstrap_intervals(frame, seed=seed)`: the draws depend only on the
    seed and the number of users, so drawing them once for every frame changes nothing but the
    time taken. Each frame keeps its own matrix product, so its arithmetic is that of a call on
    its own.
    """
    _check_settings(confidence, resamples)
    if not frames:
        return []
    values = [_checked_values(frame) for frame in frames]
    n_users = {len(frame) for frame in frames}
    if len(n_users) > 1:
        raise ValueError(f"frames resampled together must hold the same users, got {n_users}")
    all_means = _resampled_means_of_each(values, resamples, seed)
    tail = (1.0 - confidence) / 2.0
    results = []
    for frame, frame_values, means in zip(frames, values, all_means, strict=True):
        low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
        point = frame_values.mean(axis=0)
        results.append(
            {
                name: Interval(
                    mean=float(point[i]),
                    # The observed mean always lies inside (floating-point noise aside at zero
                    # width).
                    low=float(min(low[i], point[i])),
                    high=float(max(high[i], point[i])),
                    confidence=confidence,
                    resamples=resamples,
                    users=len(frame),
                )
                for i, name in enumerate(frame.columns)
            }
        )
    return results


def _checked_values(frame: pd.DataFrame) -> np.ndarray:
    """`frame` as a float64 matrix; no NaN and at least one user."""
    values = frame.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        bad = [str(name) for name in frame.columns[np.isnan(values).any(axis=0)]]
        raise ValueError(f"per-user values are missing (NaN) in {', '.join(bad)}")
    if len(frame) == 0:
        raise ValueError("no users to resample: a bootstrap interval needs at least one user")
    return values


def paired_difference(
    a: pd.Series,
    b: pd.Series,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Interval of mean(a - b) for two rankers' per-user values on the same users.

    `a` and `b` are indexed by user; they are aligned by that index (order does not matter), and
    must hold exactly the same users, once each: a comparison on different users is not paired.
    """
    difference = paired_differences(a, b)
    return bootstrap_interval(difference, confidence=confidence, resamples=resamples, seed=seed)


def paired_differences(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Per-user a - b, aligned by user (the index), in a's order: what `paired_difference`
    resamples. Raises ValueError unless both hold exactly the same users, once each."""
    for name, series in (("a", a), ("b", b)):
        if not series.index.is_unique:
            repeated = series.index[series.index.duplicated()].unique()[:5]
            raise ValueError(f"{name} repeats users, e.g. {list(repeated)}")
    if not a.index.equals(b.index):
        only_a = a.index.difference(b.index)
        only_b = b.index.difference(a.index)
        if len(only_a) or len(only_b):
            raise ValueError(
                "a paired comparison needs the same users on both sides: "
                f"{len(only_a)} only in a (e.g. {list(only_a[:5])}), "
                f"{len(only_b)} only in b (e.g. {list(only_b[:5])})"
            )
        b = b.reindex(a.index)
    return a.to_numpy(dtype=np.float64) - b.to_numpy(dtype=np.float64)


def _check_settings(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be an integer of at least 1, got {resamples!r}")


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, columns) means of `values` rows drawn with replacement, chunk by chunk."""
    return _resampled_means_of_each([values], resamples, seed)[0]


def _resampled_means_of_each(
    values: Sequence[np.ndarray], resamples: int, seed: int
) -> list[np.ndarray]:
    """`_resampled_means` of each matrix of `values` (all with the same rows), on one draw.

    Each chunk turns its draws into per-user counts, so every column's resampled sum is one
    matrix product with the values.
    """
    n_users = len(values[0])
    rng = np.random.default_rng(seed)
    per_chunk = max(1, MAX_DRAWS_PER_CHUNK // n_users)
    means = [np.empty((resamples, matrix.shape[1]), dtype=np.float64) for matrix in values]
    for start in range(0, resamples, per_chunk):
        rows = min(per_chunk, resamples - start)
        draws = rng.integers(0, n_users, size=(rows, n_users))
        draws += np.arange(rows)[:, None] * n_users  # a distinct slot per (resample, user)
        counts = np.bincount(draws.ravel(), minlength=rows * n_users).reshape(rows, n_users)
        counts = counts.astype(np.float64)
        for matrix, result in zip(values, means, strict=True):
            result[start : start + rows] = counts @ matrix / n_users
    return means
