"""The benchmark's data: a generated scale written as a data directory minus its last day, and
that day appended later, as a daily export would arrive.

The raw data contract holds one file per table (`register_raw_tables` refuses two), so appending
a day rewrites `events.parquet` with the held-back rows added at the end. The held-back rows are
the last day's events plus a share of the two days before it that arrive late; the incremental
build's lookback (`incremental_lookback_days`, 3) must pick those up, and duplicates split across
the two exports must still be recognised.

Run as `python -m recflow.bench.dataset generate|append ...` so each is its own process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.samples import events as sample_events

log = logging.getLogger(__name__)

LATE_DAYS = 2  # late rows come from the days just before the held-back one (within the lookback)
LATE_SHARE = 0.02  # share of those days' events that arrive only with the next export


@dataclass(frozen=True)
class HeldBackSplit:
    """The first export and the day appended after it."""

    initial: pa.Table
    held_back: pa.Table
    late_rows: int  # rows of `held_back` whose event_at lies before the held-back day


@dataclass(frozen=True)
class DatasetSummary:
    scale: str
    users: int
    items: int
    days: int
    events_total: int
    events_initial: int
    events_appended: int
    late_events_appended: int


def hold_back_last_day(
    events: pa.Table, spec: sample_events.SampleSpec, *, late_share: float = LATE_SHARE
) -> HeldBackSplit:
    """Split `events` into the export before the period's last day and the rows that arrive with
    it: that day's events plus `late_share` of the `LATE_DAYS` days before it. Rows without a
    timestamp or in the future stay in the first export (they are quarantined either way)."""
    day_start = spec.end_at - timedelta(days=1)
    late_start = day_start - timedelta(days=LATE_DAYS)
    event_at = events["event_at"]
    scalar = pa.scalar
    in_last_day = pc.and_(
        pc.greater_equal(event_at, scalar(day_start, sample_events.TS)),
        pc.less(event_at, scalar(spec.end_at, sample_events.TS)),
    )
    in_late_days = pc.and_(
        pc.greater_equal(event_at, scalar(late_start, sample_events.TS)),
        pc.less(event_at, scalar(day_start, sample_events.TS)),
    )
    rng = np.random.default_rng(spec.seed)
    arrives_late = pc.and_(
        in_late_days, pa.array(rng.random(events.num_rows) < late_share, pa.bool_())
    )
    held = pc.fill_null(pc.or_(in_last_day, arrives_late), False)
    return HeldBackSplit(
        initial=events.filter(pc.invert(held)),
        held_back=events.filter(held),
        late_rows=int(pc.sum(pc.fill_null(arrives_late, False)).as_py() or 0),
    )


def generate(scale: str, data_dir: Path, held_back_file: Path) -> DatasetSummary:
    """Generate `scale`, write all but the held-back rows to `data_dir`, those to a file."""
    spec = sample_events.SCALES[scale]
    generated = sample_events.generate(spec)
    split = hold_back_last_day(generated.tables["events"], spec)
    sample_events.write_data_dir(
        {**generated.tables, "events": split.initial}, data_dir, file_format="parquet"
    )
    held_back_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(split.held_back, held_back_file, compression="zstd")
    return DatasetSummary(
        scale=scale,
        users=spec.n_users,
        items=spec.n_items,
        days=spec.n_days,
        events_total=generated.tables["events"].num_rows,
        events_initial=split.initial.num_rows,
        events_appended=split.held_back.num_rows,
        late_events_appended=split.late_rows,
    )


def append(data_dir: Path, held_back_file: Path) -> int:
    """Rewrite the data directory's events with the held-back rows at the end; rows written."""
    events = pa.concat_tables(
        [pq.read_table(data_dir / "events.parquet"), pq.read_table(held_back_file)]
    )
    sample_events.write_data_dir({"events": events}, data_dir, file_format="parquet")
    return events.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recflow.bench.dataset", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    gen = actions.add_parser("generate")
    gen.add_argument("--scale", choices=sorted(sample_events.SCALES), required=True)
    gen.add_argument("--summary-out", type=Path, required=True)
    for action in (gen, actions.add_parser("append")):
        action.add_argument("--data-dir", type=Path, required=True)
        action.add_argument("--held-back-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.action == "generate":
        summary = generate(args.scale, args.data_dir, args.held_back_file)
        args.summary_out.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    else:
        log.info("events after the append: %d", append(args.data_dir, args.held_back_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
