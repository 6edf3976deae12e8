"""Whole-data problems: an event log nothing can be trained on, named by its cause.

Row-level problems are quarantined one row at a time, and dbt builds every table anyway; but when
no timestamp parses, every event lies in the future, no event is positive or the days cannot hold
the train, validation and test cutoffs, the training table comes out empty and every later step
fails for a reason that is not the cause. `diagnose` reads the one-row `event_log_summary` mart
(counts, days, cutoffs and the vars that shaped them) and returns the one message that names the
cause and the setting or fix. `recflow run` asks right after `dbt build`; the trainer and the gate
ask when they find no or too few examples, through the warehouse reader, so it works on BigQuery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from trainer.errors import TrainerInputError
from trainer.warehouse import Warehouse, qualified, warehouse_of

log = logging.getLogger(__name__)

SUMMARY_MODEL = "event_log_summary"
QUARANTINE_TABLE = "stg_app__quarantined_rows"
EVENT_TYPES_FIX = (
    "(dbt/dbt_project.yml, or recflow run --var 'event_types={view: {weight: 1, is_positive: "
    "false}, purchase: {weight: 10, is_positive: true}}')"
)
# What to do when every event was quarantined for one reason.
QUARANTINE_FIXES = {
    "unparseable_event_at": "event_at must hold timestamps (a timestamp column, or ISO 8601 text "
    "such as 2026-01-05T10:00:00Z)",
    "missing_event_at": "fill the event_at column",
    "missing_user_id": "fill the user_id column",
    "missing_item_id": "fill the item_id column",
    "missing_event_type": "fill the event_type column",
    "unknown_event_type": "list the export's event types in the `event_types` var "
    + EVENT_TYPES_FIX,
}


@dataclass(frozen=True)
class EventLogSummary:
    """One row of the `event_log_summary` mart: what the staged event log can support."""

    raw_events: int
    staged_events: int
    quarantined_events: int
    top_quarantine_reason: str | None
    top_quarantine_reason_events: int
    positive_events: int
    staged_event_types: str | None
    positive_event_types: str
    event_days: int
    first_event_date: date | None
    last_event_date: date | None
    train_cutoffs: int
    validation_cutoffs: int
    test_cutoffs: int
    max_min_history_days: int | None
    min_history_days: int
    cutoff_interval_days: int
    label_window_days: int
    test_cutoff_count: int
    validation_cutoff_count: int
    as_of: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EventLogSummary:
        """The summary from a row mapping (extra columns ignored, so the mart may grow)."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})

    @property
    def history_days(self) -> int:
        """Days from the first to the last staged event, both included (0 without events)."""
        if self.first_event_date is None or self.last_event_date is None:
            return 0
        return (self.last_event_date - self.first_event_date).days + 1


def diagnose(summary: EventLogSummary) -> str | None:
    """The message naming what makes the whole event log untrainable, or None if nothing does.

    Checked in causal order: no events at all, none staged (every one quarantined), none
    positive, then too little history for the cutoffs. Each message gives the counts that show
    the cause and the setting or fix.
    """
    if summary.raw_events == 0:
        return "the events table holds no rows: there is nothing to train on."
    if summary.staged_events == 0:
        return _all_quarantined(summary)
    if summary.positive_events == 0:
        return (
            f"none of the {summary.staged_events:,} staged events is positive: their event types "
            f"({summary.staged_event_types}) are not among those the `event_types` var marks "
            f"is_positive ({summary.positive_event_types}), so there is no training label. Mark "
            f"the event types that show interest with is_positive: true {EVENT_TYPES_FIX}, or "
            "use an export that holds such events."
        )
    if min(summary.train_cutoffs, summary.validation_cutoffs, summary.test_cutoffs) == 0:
        return _too_little_history(summary)
    return None


def _all_quarantined(summary: EventLogSummary) -> str:
    reason = summary.top_quarantine_reason
    total = summary.raw_events
    if summary.top_quarantine_reason_events == total:
        cause = f"all {total:,} events are quarantined as {reason}"
    else:
        cause = (
            f"all {total:,} events are quarantined, {summary.top_quarantine_reason_events:,} of "
            f"them as {reason}"
        )
    if reason == "future_event_at":
        as_of = (
            f"the `as_of` var, {summary.as_of}"
            if summary.as_of
            else "the start of the run (the `as_of` var is unset)"
        )
        fix = (
            f"they are later than {as_of}. If the export's clock is right, set `as_of` to an "
            "instant after its last event (recflow run --var as_of='YYYY-MM-DD HH:MM:SS'); "
            "otherwise fix the time zone or clock of event_at"
        )
    else:
        fix = QUARANTINE_FIXES.get(reason or "", "each row's reason is in the quarantine table")
    return f"{cause}: {fix} ({QUARANTINE_TABLE} holds each row with its reason)."


def _too_little_history(summary: EventLogSummary) -> str:
    held_out = summary.test_cutoff_count + summary.validation_cutoff_count
    needed = (
        summary.min_history_days
        + held_out * summary.cutoff_interval_days
        + summary.label_window_days
    )
    span = (
        f"the {summary.staged_events:,} staged events cover {_days(summary.history_days)} "
        f"({summary.first_event_date} to {summary.last_event_date})"
    )
    if summary.history_days < summary.min_history_days:
        cause = (
            f"{span}, fewer than min_history_days = {summary.min_history_days}: no cutoff has "
            "that much history before it"
        )
    else:
        cause = (
            f"{span}: too few for {summary.test_cutoff_count} test and "
            f"{summary.validation_cutoff_count} validation cutoffs and at least one train cutoff "
            f"before them, {summary.cutoff_interval_days} days apart, each at least "
            f"min_history_days = {summary.min_history_days} after the first event and with its "
            f"{summary.label_window_days}-day label window closed by the last event (found "
            f"{summary.train_cutoffs} train, {summary.validation_cutoffs} validation, "
            f"{summary.test_cutoffs} test)"
        )
    requirement = (
        f"with these settings training needs about {needed} days "
        f"(min_history_days + {held_out} held-out cutoffs x cutoff_interval_days + "
        "label_window_days, plus up to one interval to reach the weekly calendar)"
    )
    fewer = (
        "hold out fewer or shorter windows (--var test_cutoff_count=N, --var "
        "validation_cutoff_count=N, --holdout-days N)"
    )
    longest = summary.max_min_history_days
    if longest is not None and longest >= 1 and longest < summary.min_history_days:
        fix = (
            f"lower min_history_days to at most {longest} (recflow run --var "
            f"min_history_days={longest}), use more days of data, or {fewer}"
        )
    else:
        fix = f"use more days of data, or {fewer}"
    return f"{cause}; {requirement}. Fix: {fix}."


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def read_summary(warehouse: Warehouse | str, *, schema: str | None) -> EventLogSummary | None:
    """The warehouse's event log summary, or None where it has none (an older build, or a
    directory of exported marts): the caller then keeps its own message."""
    table = qualified(schema, SUMMARY_MODEL)
    try:
        rows = warehouse_of(warehouse).read(table).to_pylist()
    except TrainerInputError as error:
        log.info("no event log summary to diagnose with: %s", error)
        return None
    if len(rows) != 1:
        log.warning("%s holds %d rows, expected one: not diagnosed", table, len(rows))
        return None
    return EventLogSummary.from_row(rows[0])


def check_warehouse(warehouse: Warehouse | str, *, schema: str | None) -> None:
    """Raise TrainerInputError with `diagnose`'s message if the warehouse's event log has a
    whole-data problem; return quietly when it has none or no summary to tell."""
    summary = read_summary(warehouse, schema=schema)
    if summary is not None and (problem := diagnose(summary)):
        raise TrainerInputError(problem)
