"""`diagnose` on hand-made summaries: which cause wins when several hold, and what each message
says. The real commands on real builds are in test_whole_data_problems.py."""

from __future__ import annotations

import dataclasses
from datetime import date

from trainer.data_problems import EventLogSummary, diagnose

# A trainable log: 70 days, positives, every split present.
HEALTHY = EventLogSummary(
    raw_events=5_000,
    staged_events=4_990,
    quarantined_events=10,
    top_quarantine_reason="duplicate_event",
    top_quarantine_reason_events=6,
    positive_events=800,
    staged_event_types="click, view",
    positive_event_types="click, cart, purchase",
    event_days=70,
    first_event_date=date(2026, 1, 5),
    last_event_date=date(2026, 3, 15),
    train_cutoffs=2,
    validation_cutoffs=2,
    test_cutoffs=2,
    max_min_history_days=35,
    min_history_days=28,
    cutoff_interval_days=7,
    label_window_days=7,
    test_cutoff_count=2,
    validation_cutoff_count=2,
    as_of=None,
)


def with_(**changes: object) -> EventLogSummary:
    return dataclasses.replace(HEALTHY, **changes)


def test_a_trainable_log_has_no_problem() -> None:
    assert diagnose(HEALTHY) is None
    # Fewer test cutoffs than configured still train: only a missing split is a problem.
    assert diagnose(with_(test_cutoffs=1)) is None


def test_quarantine_outranks_every_later_cause_and_names_the_mix() -> None:
    mixed = with_(
        staged_events=0,
        quarantined_events=5_000,
        top_quarantine_reason="unknown_event_type",
        top_quarantine_reason_events=4_200,
        positive_events=0,
        train_cutoffs=0,
        validation_cutoffs=0,
        test_cutoffs=0,
    )
    message = diagnose(mixed)
    assert message is not None
    assert message.startswith("all 5,000 events are quarantined, 4,200 of them as unknown_event")
    assert "`event_types` var" in message


def test_future_events_name_the_as_of_that_was_used() -> None:
    future = with_(
        staged_events=0,
        quarantined_events=5_000,
        top_quarantine_reason="future_event_at",
        top_quarantine_reason_events=5_000,
        as_of="2020-01-01",
    )
    message = diagnose(future)
    assert message is not None
    assert "all 5,000 events are quarantined as future_event_at" in message
    assert "later than the `as_of` var, 2020-01-01" in message


def test_no_positive_outranks_too_little_history() -> None:
    message = diagnose(with_(positive_events=0, train_cutoffs=0))
    assert message is not None
    assert message.startswith("none of the 4,990 staged events is positive")


def test_a_suggested_min_history_days_only_when_one_fits() -> None:
    fits = diagnose(with_(train_cutoffs=0, validation_cutoffs=1, max_min_history_days=12))
    assert fits is not None
    assert "(found 0 train, 1 validation, 2 test)" in fits
    assert "--var min_history_days=12" in fits
    none_fits = diagnose(with_(train_cutoffs=0, max_min_history_days=-3))
    assert none_fits is not None
    assert "min_history_days=" not in none_fits
    assert "use more days of data" in none_fits


def test_an_empty_events_table_is_named() -> None:
    empty = with_(raw_events=0, staged_events=0, quarantined_events=0, positive_events=0)
    assert diagnose(empty) == "the events table holds no rows: there is nothing to train on."
