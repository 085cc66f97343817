"""What crosses from the ML core to trading: the facts of one stored prediction, as a frozen value.

Trading sizes and checks a prediction from these facts alone; it never reads mlcore's rows or their JSON (a model
version's label settings are unpacked here, once). Pure: no Django.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PredictionFacts:
    prediction_id: int
    version_id: int
    bar_id: int
    instrument_id: int
    timeframe: str
    bar_timestamp: datetime
    p_long: float
    p_short: float
    side: str  # "long" or "short": the side with the higher calibrated probability
    confidence: float
    agreement: float
    members: int  # member models that voted on the chosen side
    latency_ms: float
    atr: float | None  # of the predicted bar, in price points; None when it cannot be computed
    atr_reference: float | None  # median ATR over the window the model read
    payoff_ratio: float  # Kelly's b: take-profit / stop-loss, as the labels were made
    take_profit_atr: float  # the bracket, in ATRs from the entry, as the labels were made
    stop_loss_atr: float
    horizon_bars: int
    model_health: float | None  # the version's health score, 0-100 (None: not scored yet)
    version_has_edge: bool  # the version's out-of-sample verdict: an edge on at least one side
    health_reason: str  # why the health score is what it is (monitoring's one line)
    created: bool  # False when the bar had been predicted by this version before (a retry or a re-drive)

    @property
    def probability(self) -> float:
        """The calibrated probability of the chosen side."""
        return self.p_long if self.side == "long" else self.p_short

    def message(self) -> dict:
        """The dashboards' `prediction.created` payload."""
        return {
            "bar_timestamp": self.bar_timestamp.isoformat().replace("+00:00", "Z"),
            "version": self.version_id,
            "p_long": self.p_long,
            "p_short": self.p_short,
            "side": self.side,
            "confidence": self.confidence,
            "agreement": self.agreement,
            "latency_ms": self.latency_ms,
            "members": self.members,
        }


@dataclass(frozen=True)
class ActiveVersion:
    """The active model version of one market, for readiness checks and metrics (no row, no JSON)."""

    version_id: int
    instrument_id: int
    symbol: str
    timeframe: str
    artifacts: int  # how many artifact files are registered with their SHA-256 (0: it cannot be loaded)


@dataclass(frozen=True)
class PredictionTally:
    """How many predictions one version made, for one combination of outcome status and per-side outcomes."""

    version_id: int
    symbol: str
    timeframe: str
    outcome_status: str  # pending, resolved or unresolvable
    outcome_long: str  # take_profit, stop, timeout, or "" while pending
    outcome_short: str
    count: int
