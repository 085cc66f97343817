"""Benchmarks of the trading app, run by `manage.py bench NAME`; each returns one dict of measured figures."""
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from django.db import connection

from . import services
from .domain.bars import read_bar_file
from .domain.synthetic import generate_bars, session_timestamps
from .models import Bar, Instrument


def bench_ingest(*, rows: int = 1_000_000, seed: int = 1) -> dict:
    """Generate a one-minute CSV of `rows` bars, import it into the configured database, import it again."""
    started = time.perf_counter()
    stamps = session_timestamps(datetime(2020, 1, 1, tzinfo=timezone.utc), rows, timeframe="1m")
    frame = generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25).drop(columns="row")
    generate_seconds = time.perf_counter() - started
    symbol = f"BENCH-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="minhos-bench-") as folder:
        path = Path(folder) / "bars_1m.csv"
        frame.to_csv(path, index=False)
        csv_mb = path.stat().st_size / 1e6
        instrument = Instrument.objects.create(symbol=symbol, name="benchmark", tick_size="0.25", point_value="20")
        try:
            t0 = time.perf_counter()
            parsed = read_bar_file(path)
            t1 = time.perf_counter()
            first = services.bars_ingest(instrument=instrument, timeframe="1m", frame=parsed)
            t2 = time.perf_counter()
            again = services.bars_import_file(path=path, symbol=symbol, timeframe="1m")
            t3 = time.perf_counter()
        finally:
            # One DELETE statement: the ORM's cascade collector would walk a million rows looking for dependants.
            # The benchmark instrument has none (a foreign key would refuse the delete if it had).
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Bar._meta.db_table} WHERE instrument_id = %s", [instrument.pk])
            instrument.delete()
    seconds = t2 - t0
    return {
        "bench": "ingest",
        "database": connection.vendor,
        "rows": rows,
        "csv_mb": round(csv_mb, 1),
        "inserted": first.inserted,
        "seconds": round(seconds, 4),
        "bars_per_s": round(rows / seconds),
        "phases_s": {"read_csv": round(t1 - t0, 3), "validate_and_write": round(t2 - t1, 3)},
        "reimport_unchanged": again.unchanged,
        "reimport_seconds": round(t3 - t2, 3),
        "reimport_bars_per_s": round(rows / (t3 - t2)),
        "generate_seconds": round(generate_seconds, 3),
    }
