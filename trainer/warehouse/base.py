"""What every warehouse does for the trainer: read a table as Arrow, replace one atomically."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

import pyarrow as pa

log = logging.getLogger(__name__)

LOCAL_SCHEMA = "main"


class Warehouse(ABC):
    """A warehouse named by one URI (see trainer.warehouse): `open_warehouse` builds one.

    A table is named `table` (in `default_schema`) or `schema.table`; BigQuery also takes
    `project.dataset.table`.
    """

    uri: str

    @property
    def default_schema(self) -> str | None:
        """Where the marts are when no schema is given: `main` unless a subclass says."""
        return LOCAL_SCHEMA

    def read(self, table: str, *, columns: Sequence[str] | None = None) -> pa.Table:
        """The table as Arrow, only `columns` (in that order) when given; a TrainerInputError
        naming the table, the URI and the fix when it cannot be read."""
        wanted = None if columns is None else list(columns)
        result = self._read(table, wanted)
        if wanted is not None:
            # BigQuery's Storage Read API sends selected fields in the table's order.
            result = result.select(wanted)
        log.info("read %s from %s: %d rows", table, self.uri, result.num_rows)
        return result

    @abstractmethod
    def check_writable(self, table: str) -> None:
        """Fail before any work when `table` could not be replaced in this warehouse."""

    @abstractmethod
    def replace(self, table: str, rows: pa.Table) -> None:
        """Replace `table` with `rows` atomically: readers see the old rows or the new ones."""

    @abstractmethod
    def _read(self, table: str, columns: list[str] | None) -> pa.Table: ...


def qualified(schema: str | None, table: str) -> str:
    """`schema.table`, or the bare name when there is no schema to put before it."""
    return f"{schema}.{table}" if schema else table
