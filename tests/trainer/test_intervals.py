"""Bootstrap intervals over users: against a plain loop, the textbook width, pairing, the edge
cases (no user, one user) and bounded memory at 100,000 users."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from trainer import intervals
from trainer.intervals import Interval, bootstrap_interval, bootstrap_intervals, paired_difference


def loop_reference(values: np.ndarray, *, resamples: int, seed: int, confidence: float):
    """The percentile bootstrap written out one resample at a time, with the same draws."""
    rng = np.random.default_rng(seed)
    means = [
        values[rng.integers(0, len(values), size=len(values))].mean() for _ in range(resamples)
    ]
    tail = (1 - confidence) / 2
    return np.quantile(means, [tail, 1 - tail])


@pytest.mark.parametrize(("seed", "confidence"), [(0, 0.95), (3, 0.9), (11, 0.99)])
def test_matches_a_plain_loop_bootstrap(seed: int, confidence: float) -> None:
    values = np.random.default_rng(100 + seed).exponential(size=300)
    interval = bootstrap_interval(values, resamples=400, seed=seed, confidence=confidence)

    low, high = loop_reference(values, resamples=400, seed=seed, confidence=confidence)
    assert interval.low == pytest.approx(low, rel=1e-12)
    assert interval.high == pytest.approx(high, rel=1e-12)
    assert interval.mean == pytest.approx(values.mean(), rel=1e-15)
    assert (interval.users, interval.resamples, interval.confidence) == (300, 400, confidence)


def test_width_agrees_with_the_standard_error() -> None:
    # For a mean over n users the 95% interval is about +-1.96 sd / sqrt(n).
    values = np.random.default_rng(7).normal(loc=0.3, scale=0.2, size=5000)
    interval = bootstrap_interval(values)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert interval.low < interval.mean < interval.high
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.1)


def test_seeded_and_wider_at_higher_confidence() -> None:
    values = np.random.default_rng(1).random(500)
    assert bootstrap_interval(values, seed=4) == bootstrap_interval(values, seed=4)
    assert bootstrap_interval(values, seed=4) != bootstrap_interval(values, seed=5)
    narrow = bootstrap_interval(values, confidence=0.8)
    wide = bootstrap_interval(values, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_columns_share_their_resamples() -> None:
    # One draw of users for every column: a column twice another gets exactly twice the bounds.
    base = np.random.default_rng(2).random(400)
    result = bootstrap_intervals(pd.DataFrame({"x": base, "twice": 2 * base}), resamples=300)
    assert result["twice"].low == pytest.approx(2 * result["x"].low, rel=1e-12)
    assert result["twice"].high == pytest.approx(2 * result["x"].high, rel=1e-12)
    alone = bootstrap_interval(base, resamples=300)
    assert (result["x"].low, result["x"].high) == pytest.approx((alone.low, alone.high), rel=1e-12)


def test_chunking_does_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(5).random(1000)
    whole = bootstrap_interval(values, resamples=200, seed=9)
    monkeypatch.setattr(intervals, "MAX_DRAWS_PER_CHUNK", 3000)  # 3 resamples per chunk
    chunked = bootstrap_interval(values, resamples=200, seed=9)
    assert chunked.low == pytest.approx(whole.low, rel=1e-12)
    assert chunked.high == pytest.approx(whole.high, rel=1e-12)


def test_memory_stays_bounded_at_100k_users() -> None:
    # Drawing all 1,000 x 100,000 user indices at once would take 800 MB.
    values = np.random.default_rng(0).random(100_000)
    tracemalloc.start()
    try:
        interval = bootstrap_interval(values)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert interval.low < 0.5 < interval.high


def test_one_user_gives_a_zero_width_interval_and_no_user_is_an_error() -> None:
    single = bootstrap_interval([0.25])
    assert (single.mean, single.low, single.high, single.users) == (0.25, 0.25, 0.25, 1)
    with pytest.raises(ValueError, match="no users to resample"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="no users to resample"):
        paired_difference(pd.Series([], dtype=float), pd.Series([], dtype=float))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"resamples": 0}, "resamples"),
        ({"resamples": 2.5}, "resamples"),
    ],
)
def test_invalid_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_interval([0.1, 0.2], **kwargs)


def test_missing_values_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"missing \(NaN\) in ndcg@10"):
        bootstrap_intervals(pd.DataFrame({"recall@10": [0.1, 0.2], "ndcg@10": [0.1, np.nan]}))


def test_to_json_is_plain_json() -> None:
    body = bootstrap_interval([0.1, 0.2, 0.4], resamples=50).to_json()
    assert json.loads(json.dumps(body)) == body
    assert set(body) == {"mean", "low", "high", "confidence", "resamples", "users"}
    assert Interval(0.0, -0.1, 0.1, 0.95, 1000, 10).contains(0.0)


# --- paired differences ------------------------------------------------------------------------


def test_paired_difference_aligns_users_by_index() -> None:
    rng = np.random.default_rng(3)
    users = [f"u{i}" for i in range(200)]
    a = pd.Series(rng.random(200), index=users)
    b = pd.Series(rng.random(200), index=users)
    expected = bootstrap_interval((a - b).to_numpy(), seed=1)
    shuffled = b.sample(frac=1, random_state=0)
    assert paired_difference(a, shuffled, seed=1) == expected
    assert expected.mean == pytest.approx(a.mean() - b.mean())


def test_identical_rankers_differ_by_exactly_zero() -> None:
    a = pd.Series(np.random.default_rng(4).random(50), index=range(50))
    interval = paired_difference(a, a.copy())
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_pairing_removes_the_variation_both_rankers_share() -> None:
    # Users differ a lot in how easy they are; the second ranker is a little worse on each.
    rng = np.random.default_rng(6)
    easiness = rng.random(1000)
    a = pd.Series(easiness + rng.normal(0, 0.02, 1000))
    b = pd.Series(easiness - 0.01 + rng.normal(0, 0.02, 1000))
    paired = paired_difference(a, b)
    unpaired_a, unpaired_b = bootstrap_interval(a, seed=1), bootstrap_interval(b, seed=2)
    assert paired.low > 0  # the small, consistent difference is seen
    assert paired.high - paired.low < (unpaired_a.high - unpaired_a.low) / 5
    assert unpaired_a.low < unpaired_b.high  # unpaired, the two intervals overlap


def test_different_or_repeated_users_are_a_clear_error() -> None:
    a = pd.Series([0.1, 0.2, 0.3], index=["u1", "u2", "u3"])
    with pytest.raises(ValueError, match=r"same users.*1 only in a .*'u3'.*1 only in b .*'u9'"):
        paired_difference(a, pd.Series([0.1, 0.2, 0.3], index=["u1", "u2", "u9"]))
    with pytest.raises(ValueError, match="b repeats users"):
        paired_difference(a, pd.Series([0.1, 0.2, 0.3], index=["u1", "u2", "u2"]))
