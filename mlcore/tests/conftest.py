"""Fixtures of the ML core's Django tests: one small version trained once per session, registered per test.

Training is the slow part (tens of seconds), so `trained` fits the fast preset once, on synthetic NQ bars,
with no database; each test then stores that model as a fresh ModelVersion through the registry, with its
artifacts in a temporary MEDIA_ROOT (never var/) and an empty inference cache.
"""
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.storage import default_storage

from mlcore import services
from mlcore.models import ModelVersion
from mlcore.training import TrainConfig, TrainedModel, train_model
from trading import services as trading_services
from trading.domain.bars import BarData
from trading.domain.synthetic import generate_bars, session_timestamps
from trading.models import Instrument
from trading.tests.factories import InstrumentFactory

TRAIN_CONFIG = TrainConfig(preset="fast", seed=0)
# Enough for the three walk-forward folds (600 usable bars at least) and still quick to fit.
TRAIN_BARS = 1500
BARS_SEED = 11
SERIES_START = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="session")
def synthetic_bars() -> pd.DataFrame:
    """TRAIN_BARS + 1 one-minute NQ bars on the session grid: training sees all but the last, which arrives live."""
    return generate_bars(session_timestamps(SERIES_START, TRAIN_BARS + 1), seed=BARS_SEED, start_price=18000.0,
                         tick_size=0.25)


@pytest.fixture(scope="session")
def training_bars(synthetic_bars) -> pd.DataFrame:
    return synthetic_bars.iloc[:TRAIN_BARS].reset_index(drop=True)


@pytest.fixture(scope="session")
def trained(training_bars) -> TrainedModel:
    """The one fitted model of the session (pure training: bars in, side models out)."""
    return train_model(training_bars, TRAIN_CONFIG)


@pytest.fixture
def storage(settings, tmp_path) -> Path:
    """Artifacts and the model cache's scratch folders go to this test's temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    return settings.MEDIA_ROOT


@pytest.fixture
def model_cache():
    """An empty inference cache before and after the test: a model loaded by one test must not serve the next."""
    services.model_cache_clear()
    yield
    services.model_cache_clear()


@pytest.fixture
def nq(db) -> Instrument:
    return InstrumentFactory(symbol="NQ")  # the row seeded by a migration


@pytest.fixture
def stored_bars(nq, training_bars) -> pd.DataFrame:
    """The training bars stored for NQ 1m (the bars a prediction reads its window from)."""
    trading_services.bars_ingest(instrument=nq, timeframe="1m", frame=training_bars)
    return training_bars


@pytest.fixture
def register(storage, nq, trained):
    """register(instrument=nq) -> a new candidate ModelVersion of the session's model, artifacts in storage."""

    def make(*, instrument: Instrument | None = None, timeframe: str = "1m") -> ModelVersion:
        return services._version_register(instrument=instrument or nq, timeframe=timeframe, config=TRAIN_CONFIG,
                                          trained=trained)

    return make


@pytest.fixture
def corrupt_artifact(storage):
    """corrupt_artifact(version, relative) flips one byte in the middle of a stored artifact: same size, new SHA-256."""

    def corrupt(version: ModelVersion, relative: str = "long/xgboost/model.ubj") -> None:
        path = Path(default_storage.path(f"{version.artifact_root}/{relative}"))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return corrupt


@pytest.fixture
def live_bar(synthetic_bars) -> BarData:
    """The bar after the training bars, as a feed would deliver it."""
    row = synthetic_bars.iloc[TRAIN_BARS]
    return BarData(timestamp=row["timestamp"].to_pydatetime(), open=float(row["open"]), high=float(row["high"]),
                   low=float(row["low"]), close=float(row["close"]), volume=float(row["volume"]))
