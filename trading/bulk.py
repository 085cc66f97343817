"""Bulk upsert of validated bar frames: PostgreSQL binary COPY, SQLite executemany, one shared upsert SQL.

Both paths load a staging table, count what will be inserted / updated / unchanged, then apply it.
The caller owns the transaction; this module only issues SQL on the current connection.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db import DEFAULT_DB_ALIAS, connection, connections

from .models import Bar

STAGING = "minhos_bar_staging"
CHUNK_ROWS = 100_000
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds: PostgreSQL's binary epoch
_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


CHANGED_LISTED = 50  # changed bars described one by one; the count covers the rest


@dataclass(frozen=True)
class ChangedBar:
    """A stored bar that an upsert changed: its time and (column, stored value, new value) per changed column."""

    timestamp: datetime
    changes: tuple[tuple[str, Decimal, Decimal], ...]

    def __str__(self) -> str:
        described = ", ".join(f"{c} {before:f} -> {after:f}" for c, before, after in self.changes)
        return f"{self.timestamp.isoformat()}: {described}"


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    changed: list[ChangedBar] = field(default_factory=list)  # the first CHANGED_LISTED updated bars, by time


def upsert_bars(
    *, instrument_id: int, timeframe: str, frame: pd.DataFrame, progress: Callable[[int], None] | None = None
) -> UpsertCounts:
    """Upsert bars (columns timestamp, open, high, low, close, volume; unique timestamps) for one market."""
    if frame.empty:
        return UpsertCounts()
    vendor = connection.vendor
    if vendor == "postgresql":
        _pg_lock(instrument_id, timeframe)
        _pg_load_staging(frame, progress)
    elif vendor == "sqlite":
        _sqlite_load_staging(frame, progress)
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"bulk bar upsert is not implemented for {vendor}")
    try:
        counts = _count(instrument_id, timeframe)
        if counts.updated:
            # Re-importing must never change a stored bar silently: say which bars and what changed.
            counts.changed = _changed(instrument_id, timeframe)
        if counts.inserted or counts.updated:
            _apply_staging(instrument_id, timeframe, counts)
        return counts
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")


def _rounded(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    # Round to the stored precision first, so "unchanged" compares what the database would hold.
    places = {"volume": Bar._meta.get_field("volume").decimal_places}
    return {c: np.round(frame[c].to_numpy(dtype="float64"), places.get(c, 6)) for c in _VALUE_COLUMNS}


def _pg_lock(instrument_id: int, timeframe: str) -> None:
    # Two imports of the same market serialise instead of racing on the unique index.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"bars:{instrument_id}:{timeframe}"])


def _pg_load_staging(frame: pd.DataFrame, progress) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {STAGING} (ts timestamptz NOT NULL, open float8, high float8, low float8, "
            f"close float8, volume float8) ON COMMIT DROP"
        )
        values = _rounded(frame)
        micros = frame["timestamp"].dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64").to_numpy()
        # Binary COPY built with numpy: one packed record per row, no per-row Python.
        record = np.dtype(
            [("nfields", ">i2"), ("ts_len", ">i4"), ("ts", ">i8")]
            + [item for c in _VALUE_COLUMNS for item in ((f"{c}_len", ">i4"), (c, ">f8"))]
        )
        rows = np.empty(len(frame), dtype=record)
        rows["nfields"] = 1 + len(_VALUE_COLUMNS)
        rows["ts_len"] = 8
        rows["ts"] = micros - _PG_EPOCH_US
        for c in _VALUE_COLUMNS:
            rows[f"{c}_len"] = 8
            rows[c] = values[c]
        raw_cursor = cursor.cursor
        with raw_cursor.copy(f"COPY {STAGING} FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
            for start in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[start : start + CHUNK_ROWS]
                copy.write(chunk.tobytes())
                if progress:
                    progress(len(chunk))
            copy.write(b"\xff\xff")


def _sqlite_load_staging(frame: pd.DataFrame, progress) -> None:
    values = _rounded(frame)
    # Django's SQLite backend stores aware datetimes as naive UTC text, str(datetime): the fraction only when
    # non-zero, decided per value. Match it row by row so the unique key and ORM lookups match.
    stamps = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    text = stamps.dt.strftime("%Y-%m-%d %H:%M:%S")
    fraction = (stamps.dt.microsecond != 0).to_numpy()
    if fraction.any():
        text = text.where(~fraction, stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {STAGING} (ts text PRIMARY KEY, open real, high real, low real, close real, volume real)"
        )
        columns = [text.tolist()] + [values[c].tolist() for c in _VALUE_COLUMNS]
        rows = list(zip(*columns))
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            cursor.executemany(f"INSERT INTO {STAGING} VALUES (%s, %s, %s, %s, %s, %s)", chunk)
            if progress:
                progress(len(chunk))


def _cast(column: str) -> str:
    field = Bar._meta.get_field(column)
    return f"CAST(s.{column} AS NUMERIC({field.max_digits}, {field.decimal_places}))"


def _count(instrument_id: int, timeframe: str) -> UpsertCounts:
    table = Bar._meta.db_table
    differs = " OR ".join(f"b.{c} <> {_cast(c)}" for c in _VALUE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
              COALESCE(SUM(CASE WHEN b.id IS NULL THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN b.id IS NOT NULL AND ({differs}) THEN 1 ELSE 0 END), 0),
              COUNT(*)
            FROM {STAGING} s
            LEFT JOIN {table} b ON b.instrument_id = %s AND b.timeframe = %s AND b.timestamp = s.ts
            """,
            [instrument_id, timeframe],
        )
        inserted, updated, total = cursor.fetchone()
    return UpsertCounts(inserted=int(inserted), updated=int(updated), unchanged=int(total - inserted - updated))


def _changed(instrument_id: int, timeframe: str) -> list[ChangedBar]:
    table = Bar._meta.db_table
    differs = " OR ".join(f"b.{c} <> {_cast(c)}" for c in _VALUE_COLUMNS)
    before = ", ".join(f"b.{c}" for c in _VALUE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.ts, {before}, {', '.join(_cast(c) for c in _VALUE_COLUMNS)} FROM {STAGING} s "
            f"JOIN {table} b ON b.instrument_id = %s AND b.timeframe = %s AND b.timestamp = s.ts "
            f"WHERE {differs} ORDER BY s.ts LIMIT {CHANGED_LISTED}",
            [instrument_id, timeframe],
        )
        rows = cursor.fetchall()
    n = len(_VALUE_COLUMNS)
    changed = []
    for ts, *values in rows:
        # SQLite hands back text times and float numbers; PostgreSQL aware datetimes and Decimals.
        stamp = pd.Timestamp(ts).tz_localize("UTC") if pd.Timestamp(ts).tzinfo is None else pd.Timestamp(ts)
        pairs = [(_decimal(b, c), _decimal(a, c)) for c, b, a in zip(_VALUE_COLUMNS, values[:n], values[n:])]
        changes = tuple((c, b, a) for c, (b, a) in zip(_VALUE_COLUMNS, pairs) if b != a)
        changed.append(ChangedBar(timestamp=stamp.tz_convert("UTC").to_pydatetime(), changes=changes))
    return changed


def _decimal(value, column: str) -> Decimal:
    places = Bar._meta.get_field(column).decimal_places
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return number.quantize(Decimal(1).scaleb(-places)).normalize()


def _apply_staging(instrument_id: int, timeframe: str, counts: UpsertCounts) -> None:
    # A plain INSERT of the new keys plus an UPDATE of the changed ones: cheaper than ON CONFLICT,
    # which would probe the unique index again for every row. The advisory lock (PostgreSQL) or
    # SQLite's single writer keeps other writers out between the count and these statements.
    table = Bar._meta.db_table
    same_key = "b.instrument_id = %s AND b.timeframe = %s AND b.timestamp = s.ts"
    casts = ", ".join(_cast(c) for c in _VALUE_COLUMNS)
    with connection.cursor() as cursor:
        if counts.updated:
            assignments = ", ".join(f"{c} = {_cast(c)}" for c in _VALUE_COLUMNS)
            differs = " OR ".join(f"b.{c} <> {_cast(c)}" for c in _VALUE_COLUMNS)
            # The time-range bound keeps SQLite, which drives this join from the target table, off the rest of it.
            in_range = f"b.timestamp BETWEEN (SELECT MIN(ts) FROM {STAGING}) AND (SELECT MAX(ts) FROM {STAGING})"
            cursor.execute(
                f"UPDATE {table} AS b SET {assignments} FROM {STAGING} s "
                f"WHERE {same_key} AND {in_range} AND ({differs})",
                [instrument_id, timeframe],
            )
        if counts.inserted:
            only_new = "" if not (counts.updated or counts.unchanged) else (
                f" WHERE NOT EXISTS (SELECT 1 FROM {table} b WHERE {same_key})"
            )
            params = [instrument_id, timeframe] + ([instrument_id, timeframe] if only_new else [])
            cursor.execute(
                f"INSERT INTO {table} (instrument_id, timeframe, timestamp, open, high, low, close, volume) "
                f"SELECT %s, %s, s.ts, {casts} FROM {STAGING} s{only_new}",
                params,
            )


def copy_create(objects: list, model) -> list:
    """PostgreSQL: insert model instances with COPY, as bulk_create would (ids set on the objects, auto_now_add and
    defaults applied), at a fraction of its cost: no SQL with tens of thousands of parameters to compile and plan.
    The ids are drawn from the table's sequence first (one statement), so they are known before the rows are sent.
    Values go to psycopg as the instances hold them (it adapts Decimal, datetime, int, float, str, bool and None as
    Django would); only JSON and automatic timestamps go through their field. The caller owns the transaction."""
    if not objects:
        return objects
    meta = model._meta
    database = connections[DEFAULT_DB_ALIAS]
    fields = list(meta.concrete_fields)
    through_field = [field.get_internal_type() == "JSONField" or getattr(field, "auto_now", False)
                     or getattr(field, "auto_now_add", False) for field in fields]
    quote = database.ops.quote_name
    with database.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [meta.db_table, meta.pk.column, len(objects)])
        for instance, (pk,) in zip(objects, cursor.fetchall()):
            instance.pk = pk
        columns = ", ".join(quote(field.column) for field in fields)
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for instance in objects:
                values = instance.__dict__
                copy.write_row([field.get_db_prep_save(field.pre_save(instance, True), database) if through
                                else values[field.attname] for field, through in zip(fields, through_field)])
    for instance in objects:
        instance._state.adding, instance._state.db = False, database.alias
    return objects
