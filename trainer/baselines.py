"""Baselines the evaluation computes itself, beside the model, from the users' history.

Every baseline reads `history` (one row per user and item before the cutoff: user_id, item_id,
event_count, interaction_weight, last_event_at) and returns, for every user asked for, a frame
user_id, item_id, rank (1..k, sorted by user_id then rank). Lists hold k items whenever the
catalogue (the items in `history`) has enough items the user may get; ties are broken by item_id
so two runs give the same lists. With `exclude_seen` a user's own history items are never
recommended.

  popularity_all / _<n>d  items by distinct users whose last event falls in the window
                          [cutoff - n days, cutoff) (all history for `_all`); cold users get
                          the same list
  global_popularity       one all-history list for everyone, seen items included
  item_knn                item-item cosine on the binary user x item matrix, each item keeping
                          its top `neighbours`; a user's score for an item is the sum of its
                          similarities to the user's items
  als                     implicit's ALS (the optional `evaluation` extra), seeded

kNN and ALS fill lists that run short (cold users, users whose items have no neighbours) from
the all-history popularity list, so every baseline lists k items where it can.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from trainer import ordering
from trainer.columns import ITEM_ID, USER_ID
from trainer.errors import TrainerInputError

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = (USER_ID, ITEM_ID, "event_count", "interaction_weight", "last_event_at")
# Cells of a dense score block (users or items x catalogue); bounds memory whatever the scale.
BLOCK_CELLS = 8_000_000


@dataclass(frozen=True)
class AlsParams:
    """Settings of the ALS baseline; confidence of a history pair = 1 + alpha * log1p(weight)."""

    factors: int = 64
    iterations: int = 15
    regularization: float = 0.01
    alpha: float = 10.0
    seed: int = 0
    # implicit's threads (0: every core) each solve whole users or items: results do not change.
    threads: int = 0


@dataclass(frozen=True)
class _Interactions:
    """History rows as integer codes: users and items numbered in sorted id order."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_codes: np.ndarray
    item_codes: np.ndarray
    weights: np.ndarray
    last_event_at: pd.Series

    @classmethod
    def of(cls, history: pd.DataFrame, cutoff: pd.Timestamp) -> _Interactions:
        missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
        if missing:
            raise TrainerInputError(f"baselines: history lacks columns {missing}")
        if history[USER_ID].isna().any() or history[ITEM_ID].isna().any():
            raise TrainerInputError("baselines: history has rows without user_id or item_id")
        last_event_at = _utc(history["last_event_at"])
        if len(history) and last_event_at.max() >= cutoff:
            raise TrainerInputError(
                f"baselines: history has events at or after the cutoff {cutoff} "
                f"(latest {last_event_at.max()}); it must hold only what was known before it"
            )
        user_codes, user_ids = pd.factorize(history[USER_ID], sort=True)
        item_codes, item_ids = pd.factorize(history[ITEM_ID], sort=True)
        pairs = np.sort(user_codes.astype(np.int64) * len(item_ids) + item_codes)
        if len(pairs) and (pairs[1:] == pairs[:-1]).any():
            raise TrainerInputError(
                "baselines: history has more than one row for a (user_id, item_id) pair; "
                "it must be aggregated to one row per pair"
            )
        return cls(
            user_ids=np.asarray(user_ids, dtype=object),
            item_ids=np.asarray(item_ids, dtype=object),
            user_codes=user_codes.astype(np.int64, copy=False),
            item_codes=item_codes.astype(np.int64, copy=False),
            weights=history["interaction_weight"].to_numpy(dtype=np.float64),
            last_event_at=last_event_at.reset_index(drop=True),
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """users x items, one stored value per history row."""
        return sp.csr_matrix(
            (values, (self.user_codes, self.item_codes)),
            shape=(len(self.user_ids), self.n_items),
        )

    def popularity_order(
        self, window_days: int | None = None, cutoff: pd.Timestamp | None = None
    ) -> np.ndarray:
        """Item codes by distinct users in [cutoff - window_days, cutoff), most first, then
        item_id; all history when window_days is None."""
        in_window = np.ones(len(self.item_codes), dtype=bool)
        if window_days is not None and cutoff is not None:
            start = cutoff - pd.Timedelta(days=window_days)
            in_window = (self.last_event_at >= start).to_numpy(dtype=bool)
        users = np.bincount(self.item_codes[in_window], minlength=self.n_items)
        return np.argsort(-users, kind="stable")


@dataclass(frozen=True)
class _Targets:
    """The users to recommend for, sorted by id, with their history user codes (-1 if cold)."""

    user_ids: np.ndarray
    history_codes: np.ndarray

    @classmethod
    def of(cls, users: Sequence[str] | np.ndarray, interactions: _Interactions) -> _Targets:
        user_ids = np.sort(pd.unique(pd.Series(np.asarray(users, dtype=object), dtype=object)))
        history_codes = pd.Index(interactions.user_ids).get_indexer(user_ids)
        return cls(user_ids.astype(object), history_codes.astype(np.int64))

    def warm(self) -> np.ndarray:
        """Positions of the users with history."""
        return np.flatnonzero(self.history_codes >= 0)

    def seen(self, interactions: _Interactions) -> tuple[np.ndarray, np.ndarray]:
        """(target position, item code) of every history pair of a target user."""
        position_of = np.full(len(interactions.user_ids), -1, dtype=np.int64)
        warm = self.warm()
        position_of[self.history_codes[warm]] = warm
        positions = position_of[interactions.user_codes]
        mine = positions >= 0
        return positions[mine], interactions.item_codes[mine]


@dataclass(frozen=True)
class _Lists:
    """Ranked lists as codes: target position, item code, rank, sorted by position then rank."""

    positions: np.ndarray
    items: np.ndarray
    ranks: np.ndarray

    @classmethod
    def empty(cls) -> _Lists:
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, nothing, nothing)

    @classmethod
    def concat(cls, parts: Sequence[_Lists]) -> _Lists:
        return cls(
            *(
                np.concatenate([getattr(part, field.name) for part in parts])
                for field in dataclasses.fields(cls)
            )
        )

    def take(self, rows: np.ndarray) -> _Lists:
        return _Lists(self.positions[rows], self.items[rows], self.ranks[rows])

    def frame(self, targets: _Targets, interactions: _Interactions) -> pd.DataFrame:
        return pd.DataFrame(
            {
                USER_ID: targets.user_ids[self.positions],
                ITEM_ID: interactions.item_ids[self.items],
                "rank": self.ranks.astype(np.int64),
            }
        )


def popularity(
    history: pd.DataFrame,
    users: Sequence[str] | np.ndarray,
    cutoff: object,
    k: int,
    window_days: int | None,
    exclude_seen: bool,
) -> pd.DataFrame:
    """Each user's k most popular items in the window before the cutoff (None: all history).

    Popularity is the number of distinct users whose last event on the item falls in
    [cutoff - window_days, cutoff); items outside the window follow at zero, by item_id.
    """
    cutoff = _utc_scalar(cutoff)
    interactions = _Interactions.of(history, cutoff)
    targets = _Targets.of(users, interactions)
    return _popularity(interactions, targets, cutoff, _checked_k(k), window_days, exclude_seen)


def global_popularity(
    history: pd.DataFrame,
    users: Sequence[str] | np.ndarray,
    cutoff: object,
    k: int,
    window_days: int | None = None,
) -> pd.DataFrame:
    """The same k most popular items for every user, seen items included.

    Not a valid recommendation when seen items are excluded; it shows what that rule costs.
    """
    return popularity(history, users, cutoff, k, window_days, exclude_seen=False)


def item_knn(
    history: pd.DataFrame,
    users: Sequence[str] | np.ndarray,
    cutoff: object,
    k: int,
    exclude_seen: bool,
    *,
    neighbours: int = 50,
) -> pd.DataFrame:
    """Item-kNN: cosine on the binary user x item matrix, each item keeping its top neighbours.

    A user's score for item j sums sim(i, j) over the user's items i that keep j among their
    `neighbours`; items without a positive score are not scored, and the list is filled from
    the all-history popularity list.
    """
    cutoff = _utc_scalar(cutoff)
    interactions = _Interactions.of(history, cutoff)
    targets = _Targets.of(users, interactions)
    return _item_knn(interactions, targets, _checked_k(k), exclude_seen, neighbours)


def als(
    history: pd.DataFrame,
    users: Sequence[str] | np.ndarray,
    cutoff: object,
    k: int,
    exclude_seen: bool,
    *,
    factors: int = AlsParams.factors,
    iterations: int = AlsParams.iterations,
    regularization: float = AlsParams.regularization,
    alpha: float = AlsParams.alpha,
    seed: int = AlsParams.seed,
    threads: int = AlsParams.threads,
) -> pd.DataFrame:
    """Implicit-feedback ALS (Hu, Koren, Volinsky) from the `implicit` library, seeded.

    Confidence of a history pair is 1 + alpha * log1p(interaction_weight) (the log keeps a few
    heavy users from dominating); unseen pairs have confidence 1 and preference 0. Users are
    scored by user factors . item factors. Needs the `evaluation` extra.
    """
    cutoff = _utc_scalar(cutoff)
    interactions = _Interactions.of(history, cutoff)
    targets = _Targets.of(users, interactions)
    params = AlsParams(factors, iterations, regularization, alpha, seed, threads)
    return _als(interactions, targets, _checked_k(k), exclude_seen, params)


def compute_baselines(
    history: pd.DataFrame,
    users: Sequence[str] | np.ndarray,
    cutoff: object,
    *,
    k: int,
    exclude_seen: bool,
    windows: Sequence[int | None] = (None, 7, 30),
    neighbours: int = 50,
    als_params: AlsParams | None = AlsParams(),
) -> dict[str, pd.DataFrame]:
    """Every baseline's top-k lists for `users`, by name (popularity_all, popularity_7d, ...,
    global_popularity, item_knn, als); `als_params=None` leaves ALS out.
    """
    cutoff = _utc_scalar(cutoff)
    k = _checked_k(k)
    interactions = _Interactions.of(history, cutoff)
    targets = _Targets.of(users, interactions)
    jobs = {
        f"popularity_{'all' if window is None else f'{window}d'}": (
            lambda window=window: _popularity(
                interactions, targets, cutoff, k, window, exclude_seen
            )
        )
        for window in windows
    }
    jobs["global_popularity"] = lambda: _popularity(interactions, targets, cutoff, k, None, False)
    jobs["item_knn"] = lambda: _item_knn(interactions, targets, k, exclude_seen, neighbours)
    if als_params is not None:
        jobs["als"] = lambda: _als(interactions, targets, k, exclude_seen, als_params)
    results = {}
    for name, job in jobs.items():
        started = time.perf_counter()
        results[name] = job()
        logger.info(
            "baseline %s: %d users, %d rows in %.1f s",
            name,
            len(targets.user_ids),
            len(results[name]),
            time.perf_counter() - started,
        )
    return results


def _popularity(
    interactions: _Interactions,
    targets: _Targets,
    cutoff: pd.Timestamp,
    k: int,
    window_days: int | None,
    exclude_seen: bool,
) -> pd.DataFrame:
    if window_days is not None and window_days < 1:
        raise TrainerInputError(f"baselines: window_days must be at least 1, got {window_days}")
    order = interactions.popularity_order(window_days, cutoff)
    seen = targets.seen(interactions) if exclude_seen else None
    lists = _fill(_Lists.empty(), len(targets.user_ids), order, seen, k, interactions.n_items)
    return lists.frame(targets, interactions)


def _item_knn(
    interactions: _Interactions,
    targets: _Targets,
    k: int,
    exclude_seen: bool,
    neighbours: int,
) -> pd.DataFrame:
    if neighbours < 1:
        raise TrainerInputError(f"baselines: neighbours must be at least 1, got {neighbours}")
    binary = interactions.matrix(np.ones(len(interactions.item_codes), dtype=np.float64))
    similar = _item_neighbours(binary, neighbours)
    warm = targets.warm()
    rows = binary[targets.history_codes[warm]]
    # Rows of the score block hold at most (the user's items x neighbours) non-zeros, all
    # positive: only those are ranked, never a dense users x catalogue block.
    parts = []
    for start, stop in _row_chunks(len(warm), interactions.n_items):
        scores = rows[start:stop] @ similar
        row, item = _stored(scores)
        value = scores.data
        if exclude_seen:
            seen_row, seen_item = rows[start:stop].nonzero()
            unseen = ~_sorted_contains(
                np.sort(seen_row * interactions.n_items + seen_item),
                row * interactions.n_items + item,
            )
            row, item, value = row[unseen], item[unseen], value[unseen]
        order, rank = _top_k_stored(row, value, item, stop - start, k)
        parts.append(_Lists(warm[start + row[order]], item[order], rank))
    return _filled_from_popularity(interactions, targets, parts, k, exclude_seen)


def _item_neighbours(binary: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """items x items: row i holds the cosine similarity of item i to its top neighbours."""
    n_items = binary.shape[1]
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    by_item = binary.T.tocsr()
    rows, columns, values = [], [], []
    for start, stop in _row_chunks(n_items, n_items):
        # Co-occurrence of a block of items with every item, never the whole item x item matrix;
        # only its non-zeros (positive cosines) are ranked.
        block = by_item[start:stop] @ binary
        row, column = _stored(block)
        row = start + row
        cosine = block.data / (norms[row] * norms[column])
        other = row != column  # not its own neighbour
        row, column, cosine = row[other], column[other], cosine[other]
        order, _ = _top_k_stored(row - start, cosine, column, stop - start, neighbours)
        rows.append(row[order])
        columns.append(column[order])
        values.append(cosine[order])
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_items, n_items),
    )


def _als(
    interactions: _Interactions,
    targets: _Targets,
    k: int,
    exclude_seen: bool,
    params: AlsParams,
) -> pd.DataFrame:
    warm = targets.warm()
    parts = []
    if len(warm):
        user_factors, item_factors = _als_factors(interactions, params)
        seen = interactions.matrix(np.ones(len(interactions.item_codes), dtype=np.float32))
        seen_rows = seen[targets.history_codes[warm]]
        for start, stop in _row_chunks(len(warm), interactions.n_items):
            codes = targets.history_codes[warm[start:stop]]
            scores = user_factors[codes] @ item_factors.T
            if exclude_seen:
                scores[seen_rows[start:stop].nonzero()] = -np.inf
            row, item, rank = _top_k_dense(scores, k)
            parts.append(_Lists(warm[start + row], item, rank))
    return _filled_from_popularity(interactions, targets, parts, k, exclude_seen)


def _als_factors(interactions: _Interactions, params: AlsParams) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS on the whole history; (user factors, item factors) indexed by code."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError as error:
        raise TrainerInputError(
            "baselines: the ALS baseline needs the `implicit` library: install the evaluation "
            "extra (pip install -c requirements.lock -e '.[evaluation]'), or leave ALS out "
            "(als_params=None)"
        ) from error
    confidence = 1.0 + params.alpha * np.log1p(np.maximum(interactions.weights, 0.0))
    matrix = interactions.matrix(confidence.astype(np.float32))
    # implicit's own threads parallelise over users; BLAS threads inside them only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,  # confidences are passed as they are
            iterations=params.iterations,
            random_state=params.seed,
            num_threads=params.threads,
        )
        model.fit(matrix, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def _filled_from_popularity(
    interactions: _Interactions,
    targets: _Targets,
    parts: list[_Lists],
    k: int,
    exclude_seen: bool,
) -> pd.DataFrame:
    """Concatenate ranked parts and fill short lists from the all-history popularity list."""
    listed = _Lists.concat([_Lists.empty(), *parts])
    order = interactions.popularity_order()
    seen = targets.seen(interactions) if exclude_seen else None
    lists = _fill(listed, len(targets.user_ids), order, seen, k, interactions.n_items)
    return lists.frame(targets, interactions)


def _fill(
    listed: _Lists,
    n_targets: int,
    order: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None,
    k: int,
    n_items: int,
) -> _Lists:
    """Append to each user's list the first items of `order` it lacks, up to k items.

    Items already listed, and seen items when `seen` is given, are skipped.
    """
    listed_count = np.bincount(listed.positions, minlength=n_targets)
    blocked_positions, blocked_items = listed.positions, listed.items
    if seen is not None:
        blocked_positions = np.concatenate([blocked_positions, seen[0]])
        blocked_items = np.concatenate([blocked_items, seen[1]])
    blocked_count = np.bincount(blocked_positions, minlength=n_targets)
    need = np.maximum(k - listed_count, 0)
    # The first need + blocked items of the order always hold `need` unblocked ones (if any).
    take = np.minimum(need + blocked_count, len(order)) * (need > 0)
    positions = np.repeat(np.arange(n_targets), take)
    items = order[ordering.position_in_run(positions) - 1] if len(positions) else positions
    blocked = np.sort(blocked_positions * n_items + blocked_items)
    free = ~_sorted_contains(blocked, positions * n_items + items)
    positions, items = positions[free], items[free]
    place = ordering.position_in_run(positions) if len(positions) else positions
    keep = place <= need[positions]
    added = _Lists(positions[keep], items[keep], listed_count[positions[keep]] + place[keep])
    merged = _Lists.concat([listed, added])
    if not len(merged.positions):
        return merged
    return merged.take(ordering.lexicographic_order([merged.positions, merged.ranks]))


def _sorted_contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each value is in `sorted_values` (a binary search: np.isin hashes, slower)."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    found = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[found] == values


def _top_k_dense(
    scores: np.ndarray, k: int, *, above: float = -np.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's k highest scores greater than `above` as (row, column, rank), by score then
    column. There must be no NaN.
    """
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if k == 0 or n_rows == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return nothing, nothing, nothing
    kth = np.partition(scores, n_columns - k, axis=1)[:, n_columns - k]
    # At least k per row (more where scores tie with the k-th); the final cut breaks the ties.
    row, column = np.nonzero((scores >= kth[:, None]) & (scores > above))
    order, rank = ordering.top_k_per_group(
        row, scores[row, column].astype(np.float64), column, k=k, descending=True
    )
    return row[order], column[order], rank


def _stored(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each stored value of `matrix`, in the order of `matrix.data`."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64)


def _top_k_stored(
    row: np.ndarray, value: np.ndarray, column: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each row's k highest values (by value, then column) and their ranks.

    The entries are a sparse matrix's stored values, all positive, each (row, column) once:
    the result is `_top_k_dense` on the dense matrix with every absent cell unscored, at a cost
    that follows the stored values rather than the whole width. Rows with more than k values
    get their k-th highest from a partition over their values only, padded to the longest row
    of a group of rows of similar length.
    """
    if len(row) == 0 or k < 1:
        nothing = np.zeros(0, dtype=np.int64)
        return nothing, nothing
    by_row = np.argsort(row, kind="stable")
    counts = np.bincount(row, minlength=n_rows)
    threshold = np.full(n_rows, -np.inf)
    long_rows = np.flatnonzero(counts > k)
    if len(long_rows):
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        # Rows grouped by the power of two above their length: padding at most doubles a group.
        width_class = np.ceil(np.log2(counts[long_rows])).astype(np.int64)
        for width in np.unique(width_class):
            members = long_rows[width_class == width]
            lengths = counts[members]
            padded = np.full((len(members), int(lengths.max())), -np.inf)
            slot = np.repeat(np.arange(len(members)), lengths)
            offset = ordering.position_in_run(slot) - 1
            padded[slot, offset] = value[by_row[np.repeat(starts[members], lengths) + offset]]
            kth = padded.shape[1] - k
            threshold[members] = np.partition(padded, kth, axis=1)[:, kth]
    # At least k per row (more where values tie with the k-th); the final cut breaks the ties.
    candidates = np.flatnonzero(value >= threshold[row])
    order, rank = ordering.top_k_per_group(
        row[candidates],
        value[candidates].astype(np.float64),
        column[candidates],
        k=k,
        descending=True,
    )
    return candidates[order], rank


def _row_chunks(n_rows: int, width: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of rows whose dense block of `width` columns fits BLOCK_CELLS."""
    step = max(1, BLOCK_CELLS // max(width, 1))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def _checked_k(k: int) -> int:
    if k < 1:
        raise TrainerInputError(f"baselines: k must be at least 1, got {k}")
    return int(k)


def _utc(values: pd.Series) -> pd.Series:
    values = pd.to_datetime(values)
    return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")


def _utc_scalar(value: object) -> pd.Timestamp:
    timestamp = pd.Timestamp(value)
    if timestamp.tzinfo is None:
        return timestamp.tz_localize("UTC")
    return timestamp.tz_convert("UTC")
