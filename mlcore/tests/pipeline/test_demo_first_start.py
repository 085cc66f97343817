"""The demo's first start finds the planted edge: `manage.py start` on an empty market generates DEMO_HISTORY_DAYS of
planted history (`generate_bars --demo-signal`, seed 42, ending now) and trains a --fast version on it (seed 42); that
version must say "Edge" on at least one side by the unchanged verdict rule (EDGE_MARGIN), or the demo shows no
confident recommendations. Here for one history end time, pure (no database); `trading.domain.synthetic`'s
DEMO_SIGNAL comment lists the 30 first starts measured (seeds 0-9, three end times) and their margins."""
from datetime import UTC, datetime, timedelta

import pytest

from mlcore.domain.evaluation import EDGE_MARGIN
from mlcore.training import TrainConfig, train_model
from trading.domain.synthetic import (
    DEMO_HISTORY_DAYS,
    DEMO_SIGNAL,
    SyntheticParams,
    generate_bars,
    session_timestamps_between,
)
from trading.management.commands.generate_bars import DEFAULT_START_PRICE

SEED = 42  # run_feed's and start's default --seed: the history's and the training's
# A Monday morning, the weekend inside the history. With the earlier demo (five days, 20 bars at 0.45 sigma) this
# first start said "No edge" on both sides (long: 0.0015 better than momentum, short: worse).
END = datetime(2026, 11, 30, 9, 45, tzinfo=UTC)


@pytest.fixture(scope="module")
def first_start():
    stamps = session_timestamps_between(END - timedelta(days=DEMO_HISTORY_DAYS), END, timeframe="1m")
    bars = generate_bars(stamps, seed=SEED, start_price=DEFAULT_START_PRICE, tick_size=0.25, timeframe="1m",
                         params=SyntheticParams(**DEMO_SIGNAL))
    return bars, train_model(bars, TrainConfig(preset="fast", seed=SEED))


def test_the_first_start_configuration_is_the_start_commands():
    from trading.management.commands.start import Command

    options = Command().create_parser("manage.py", "start").parse_args([])
    assert (options.history_days, options.seed, options.demo_signal) == (DEMO_HISTORY_DAYS, SEED, True)


def test_the_first_start_model_finds_the_planted_edge(first_start):
    bars, trained = first_start
    assert len(bars) > 13_000  # twenty days: about fourteen sessions of 1,380 bars
    margins = {side: trained.report[side]["verdict"]["log_loss_improvement"] for side in ("long", "short")}
    assert trained.has_edge, (trained.statement, margins)
    edged = [side for side in ("long", "short") if trained.report[side]["verdict"]["has_edge"]]
    assert all(margins[side] >= EDGE_MARGIN for side in edged)
    assert "Edge: the" in trained.statement
