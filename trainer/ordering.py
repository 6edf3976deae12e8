"""Sorting and top-k selection on integer codes: pure numpy, no string comparisons in the loop.

Sorting millions of rows by string columns (user_id, item_id) in pandas or Arrow is the slow part
of ranking at scale. Here each column becomes dense integer codes that sort like its values (the
few distinct strings are sorted once), and rows are ordered by one argsort on a packed int64 key.
Sorts are stable, so the results equal a stable multi-column sort of the original values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Column = pa.Array | pa.ChunkedArray | pd.Series | np.ndarray


def sort_codes(values: Column) -> np.ndarray:
    """Dense int64 codes 0..n-1 that order like `values`, nulls (and NaN) last.

    Strings compare as bytes (Arrow) or code points (pandas), the same order for UTF-8.
    """
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return _arrow_sort_codes(values)
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=True)
    codes = codes.astype(np.int64, copy=False)
    codes[codes < 0] = len(uniques)
    return codes


def _arrow_sort_codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    # Hash the values into a dictionary (fast), sort only the distinct values, map back.
    encoded = pc.dictionary_encode(values)
    dictionary_rank = np.empty(len(encoded.dictionary), dtype=np.int64)
    dictionary_rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(
        len(encoded.dictionary)
    )
    indices = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()
    return np.append(dictionary_rank, len(encoded.dictionary))[indices]


def lexicographic_order(codes: Sequence[np.ndarray]) -> np.ndarray:
    """Stable permutation sorting rows by codes[0], then codes[1], ... (all non-negative).

    One argsort of a packed int64 key when it fits, else np.lexsort.
    """
    if not codes:
        raise ValueError("lexicographic_order needs at least one column of codes")
    sizes = [int(column.max()) + 1 if len(column) else 1 for column in codes]
    if float(np.prod(np.asarray(sizes, dtype=np.float64))) >= 2**62:
        return np.lexsort(tuple(reversed(codes)))
    packed = np.zeros(len(codes[0]), dtype=np.int64)
    for column, size in zip(codes, sizes, strict=True):
        packed *= size
        packed += column
    return np.argsort(packed, kind="stable")


def run_starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Index where each run of equal consecutive values starts."""
    if len(sorted_codes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])


def run_lengths(sorted_codes: np.ndarray) -> np.ndarray:
    """Length of each run of equal consecutive values, in order."""
    return _lengths(run_starts(sorted_codes), len(sorted_codes))


def position_in_run(sorted_codes: np.ndarray) -> np.ndarray:
    """1-based position of each row within its run of equal values."""
    starts = run_starts(sorted_codes)
    lengths = _lengths(starts, len(sorted_codes))
    return np.arange(1, len(sorted_codes) + 1) - np.repeat(starts, lengths)


def _lengths(starts: np.ndarray, total: int) -> np.ndarray:
    return np.diff(np.r_[starts, total])


def top_k_per_group(
    group: np.ndarray, value: np.ndarray, tie_break: np.ndarray, *, k: int, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of each group's k best rows and their 1-based ranks.

    Rows come out sorted by group, then value (descending or ascending), then tie_break
    ascending, with equal keys in input order: exactly a stable sort on (group, value,
    tie_break) cut at k. `group` and `tie_break` are non-negative integer codes; rows whose
    value is NaN are left out.
    """
    present = np.flatnonzero(~np.isnan(value))
    value_codes = sort_codes(-value[present] if descending else value[present])
    order = present[lexicographic_order([group[present], value_codes, tie_break[present]])]
    rank = position_in_run(group[order])
    keep = rank <= k
    return order[keep], rank[keep]
