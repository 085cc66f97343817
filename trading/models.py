"""Instruments, bars and feed status; accounts, trading configuration, recommendations, audit, orders, fills,
positions and equity."""
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.deconstruct import deconstructible

from .domain.config_ranges import CONFIG_RANGES
from .domain.timeframes import TIMEFRAME_CHOICES


class InstrumentQuerySet(models.QuerySet):
    def live(self):
        """Every market but backtests' private ones: what every live read, page, control and command may reach."""
        return self.filter(backtest=False)


class Instrument(models.Model):
    symbol = models.CharField(
        max_length=20,
        unique=True,
        # Symbols name websocket groups and URLs, so keep them to a safe alphabet.
        validators=[RegexValidator(r"^[A-Z0-9][A-Z0-9._-]*$", "Use upper-case letters, digits, '.', '_' or '-'.")],
    )
    name = models.CharField(max_length=100)
    exchange = models.CharField(max_length=20, blank=True)
    tick_size = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(0.000001)])
    point_value = models.DecimalField(max_digits=12, decimal_places=4, validators=[MinValueValidator(0.0001)])
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True)
    # A backtest's private market: its bars are copies of a real market's, stored one by one as the simulated clock
    # reaches them, so the live workflow sees exactly what it would have seen live. Hidden from every live list.
    backtest = models.BooleanField(default=False, db_default=False)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = ["symbol"]

    def __str__(self):
        return self.symbol


class Bar(models.Model):
    """One closed OHLCV bar; `timestamp` is its open time in UTC."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="bars")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    timestamp = models.DateTimeField()
    open = models.DecimalField(max_digits=18, decimal_places=6)
    high = models.DecimalField(max_digits=18, decimal_places=6)
    low = models.DecimalField(max_digits=18, decimal_places=6)
    close = models.DecimalField(max_digits=18, decimal_places=6)
    volume = models.DecimalField(max_digits=20, decimal_places=4)

    class Meta:
        # The unique index (instrument, timeframe, timestamp) also serves "the last N bars":
        # ORDER BY timestamp DESC LIMIT N is a backward scan of it, so no second index slows ingestion.
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe", "timestamp"], name="bar_unique_per_time"),
            models.CheckConstraint(
                condition=models.Q(low__gt=0)
                & models.Q(high__gte=models.F("open"))
                & models.Q(high__gte=models.F("close"))
                & models.Q(low__lte=models.F("open"))
                & models.Q(low__lte=models.F("close"))
                & models.Q(volume__gte=0),
                name="bar_ohlcv_consistent",
            ),
        ]
        ordering = ["instrument", "timeframe", "timestamp"]

    def __str__(self):
        return f"{self.instrument_id} {self.timeframe} {self.timestamp:%Y-%m-%d %H:%M} C={self.close}"


class FeedStatus(models.Model):
    """Heartbeat of a feed process, so any process (web, worker) can tell whether the feed runs."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="feed_statuses")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    source = models.CharField(max_length=40)
    running = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_bar_received_at = models.DateTimeField(null=True, blank=True)
    last_bar_timestamp = models.DateTimeField(null=True, blank=True)
    bars_emitted = models.BigIntegerField(default=0)
    pace_seconds = models.FloatField(default=1.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instrument", "timeframe"], name="feed_status_unique")]
        verbose_name_plural = "feed statuses"

    def __str__(self):
        return f"{self.instrument_id} {self.timeframe} feed ({'running' if self.running else 'stopped'})"


class BarWorkflow(models.Model):
    """A live bar's progress through the per-bar decision workflow (`trading.workflow`): stored, settled, decided.

    Written in the transaction that stores the bar (an outbox), so a lost message, a dead worker or a Redis outage
    delays a bar but never skips it: the sweeper re-drives every bar not done. The times are the hops of the bar's
    way from the feed to the dashboards (`bench e2e` reads them).
    """

    class Stage(models.TextChoices):
        STORED = "stored"  # waiting for settlement
        SETTLED = "settled"  # fills, brackets, expiries, marks and equity applied; waiting for the decision
        DONE = "done"  # predicted, sized and published (or nothing to predict with)

    bar = models.OneToOneField(Bar, primary_key=True, on_delete=models.CASCADE, related_name="workflow")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    timestamp = models.DateTimeField(help_text="The bar's open time (UTC), copied so the queue is read in bar order")
    stage = models.CharField(max_length=8, choices=Stage.choices, default=Stage.STORED)
    stored_at = models.DateTimeField(help_text="When the bar's row was written")
    touched_at = models.DateTimeField(help_text="Last progress or dispatch; the sweeper re-drives idle bars")
    settle_started_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    decide_started_at = models.DateTimeField(null=True, blank=True)
    predicted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    prediction = models.ForeignKey("mlcore.Prediction", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    recommendations = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Steps started, retries and re-drives included")
    decide_failures = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="The last failure of a step of this bar (empty once it passes)")

    class Meta:
        indexes = [models.Index(fields=["instrument", "timeframe", "stage", "timestamp"], name="bar_workflow_queue",
                                condition=~models.Q(stage="done"))]

    def __str__(self):
        return f"{self.instrument_id} {self.timeframe} {self.timestamp:%Y-%m-%d %H:%M} {self.stage}"


class WorkerHeartbeat(models.Model):
    """The last time a worker took a task from a queue: whether anyone serves it (beat sends one per queue)."""

    queue = models.CharField(max_length=40, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.queue} seen {self.seen_at:%H:%M:%S} ({self.hostname})"


# ---------------------------------------------------------------------------------------------------------------
# Decisions and execution: accounts, configuration, recommendations, audit, orders, fills, positions, equity.
# Money and prices are Decimal; positions change only through fills (services.execution applies them).

MONEY = {"max_digits": 16, "decimal_places": 2}
PRICE = {"max_digits": 18, "decimal_places": 6}
# Position P&L is stored as the ledger computes it (6-decimal prices x contracts x 4-decimal point values), unrounded,
# so replaying the fills (`reconcile`) reproduces it to the last digit.
LEDGER = {"max_digits": 30, "decimal_places": 10}


class TradingState(models.TextChoices):
    """NautilusTrader's trading states: REDUCING lets only exposure-reducing trades through, HALTED none."""

    ACTIVE = "ACTIVE", "Active"
    REDUCING = "REDUCING", "Reducing"
    HALTED = "HALTED", "Halted"


class AccountQuerySet(models.QuerySet):
    def live(self):
        """Every account but backtests' own: what every live read and control may reach."""
        return self.filter(backtest=False)


class Account(models.Model):
    """A paper trading account: its equity, its trading state, its circuit breaker and its auto-trading switch."""

    name = models.CharField(max_length=50, unique=True)
    currency = models.CharField(max_length=3, default="USD")
    starting_equity = models.DecimalField(**MONEY, default=Decimal("100000.00"), validators=[MinValueValidator(0)])
    peak_equity = models.DecimalField(**MONEY, default=Decimal("100000.00"))
    auto_trading = models.BooleanField(default=False, help_text="Off by default: every recommendation waits for a person.")
    trading_state = models.CharField(max_length=8, choices=TradingState.choices, default=TradingState.ACTIVE)
    circuit_breaker_tripped_at = models.DateTimeField(null=True, blank=True)
    circuit_breaker_reason = models.TextField(blank=True)
    settlement_fault = models.TextField(
        blank=True, help_text="Why settling the last bar (fills, brackets, marks) failed; while set, no new entries. "
                              "Cleared when a later bar settles.")
    settlement_fault_at = models.DateTimeField(null=True, blank=True)
    # A backtest's own account (trades only its backtest market; no money, so the live kill switch does not stop it
    # and it is left out of every live list).
    backtest = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("toggle_auto_trading", "Can turn auto-trading on or off"),
            ("reset_circuit_breaker", "Can reset a tripped circuit breaker"),
            ("set_trading_state", "Can change an account's trading state"),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        # A new account has seen no other equity than its start: no drawdown from a default peak.
        if self._state.adding:
            self.peak_equity = self.starting_equity
        super().save(*args, **kwargs)

    @property
    def circuit_breaker_tripped(self) -> bool:
        return self.circuit_breaker_tripped_at is not None


class KillSwitch(models.Model):
    """The one global kill switch (row pk=1): engaged, nothing trades on any account."""

    engaged = models.BooleanField(default=False)
    changed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    reason = models.TextField(blank=True)

    class Meta:
        permissions = [("engage_kill_switch", "Can engage or release the global kill switch")]
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="kill_switch_singleton")]

    def __str__(self):
        return "kill switch: " + ("ENGAGED" if self.engaged else "released")


@deconstructible
class RangeValidator:
    """Value within an interval whose ends may be open: (0, 1] for a Kelly fraction, [0.5, 1) for a threshold."""

    def __init__(self, low: float, high: float, *, low_open: bool = False, high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def __call__(self, value):
        below = value <= self.low if self.low_open else value < self.low
        above = value >= self.high if self.high_open else value > self.high
        if value is None or value != value or below or above:
            interval = f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
            raise ValidationError(f"Must be in {interval}, got {value}.", code="out_of_range")

    def __eq__(self, other):
        return isinstance(other, RangeValidator) and vars(self) == vars(other)


def _setting(name: str, help_text: str) -> dict:
    """Validators and help text of one setting, from the one table of ranges (`trading.domain.config_ranges`)."""
    setting = CONFIG_RANGES[name]
    return {"validators": [RangeValidator(setting.low, setting.high, low_open=setting.low_open,
                                          high_open=setting.high_open)],
            "help_text": f"{help_text}, {setting.describe()}."}


def _range_constraint(name: str) -> models.CheckConstraint:
    setting = CONFIG_RANGES[name]
    return models.CheckConstraint(
        condition=models.Q(**{f"{name}__{'gt' if setting.low_open else 'gte'}": setting.low,
                              f"{name}__{'lt' if setting.high_open else 'lte'}": setting.high}),
        name=f"trading_config_{name}_range")


class TradingConfigQuerySet(models.QuerySet):
    def live(self):
        """Live accounts' settings for live markets (a backtest's copy is its own, fixed when the run starts)."""
        return self.filter(account__backtest=False, instrument__backtest=False)


class TradingConfig(models.Model):
    """Sizing and risk settings of one account for one instrument (defaults as the issue states them).

    Every setting's type and range come from `CONFIG_RANGES`, which the validators, the check constraints, the API
    and the service all read; the help texts say the ranges.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="configs")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="trading_configs")
    kelly_fraction = models.FloatField(default=0.25, **_setting("kelly_fraction", "Share of full Kelly to bet"))
    min_confidence = models.FloatField(
        default=0.60, **_setting("min_confidence", "Confidence threshold for sizing and for risk"))
    max_contracts = models.PositiveIntegerField(
        default=5, **_setting("max_contracts", "Cap of one recommendation's size"))
    max_position_contracts = models.PositiveIntegerField(
        default=5, **_setting("max_position_contracts", "Cap of the net position in this instrument"))
    max_total_contracts = models.PositiveIntegerField(
        default=10, **_setting("max_total_contracts", "Cap of the account's contracts over every instrument"))
    daily_loss_limit = models.DecimalField(
        **MONEY, default=Decimal("2000.00"),
        **_setting("daily_loss_limit", "The day's loss that trips the circuit breaker (0: no loss allowed), "
                                       "in the account's currency"))
    max_drawdown = models.FloatField(
        default=0.10,
        **_setting("max_drawdown", "Drawdown from peak equity at which sizing reaches zero and risk blocks"))
    max_trades_per_day = models.PositiveIntegerField(
        default=20, **_setting("max_trades_per_day", "Entries per trading day"))
    stale_after_seconds = models.FloatField(
        default=180.0, **_setting("stale_after_seconds", "Risk blocks when the last bar arrived longer ago than this"))
    health_floor = models.FloatField(
        default=0.40, **_setting("health_floor", "Model health (0..1) under which risk blocks"))
    health_full_size_floor = models.FloatField(
        default=0.70, **_setting("health_full_size_floor",
                                 "Model health (0..1) from which Kelly sizes in full; under it the size is scaled "
                                 "down linearly to zero at the blocking floor"))
    recommendation_ttl_bars = models.PositiveIntegerField(
        default=2, **_setting("recommendation_ttl_bars",
                              "A recommendation can be approved until this many later bars exist"))
    slippage_ticks = models.PositiveIntegerField(
        default=1, **_setting("slippage_ticks", "Slippage of paper fills against the order"))
    commission_per_contract = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("2.50"),
        **_setting("commission_per_contract", "Commission per contract and fill, in the account's currency"))
    updated_at = models.DateTimeField(auto_now=True)

    objects = TradingConfigQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "instrument"], name="trading_config_unique"),
            *(_range_constraint(name) for name in CONFIG_RANGES),
            models.CheckConstraint(condition=Q(health_full_size_floor__gte=F("health_floor")),
                                   name="trading_config_health_floors_ordered"),
        ]

    def __str__(self):
        return f"{self.account} {self.instrument_id}"

    def clean(self):
        super().clean()
        if self.health_full_size_floor is not None and self.health_floor is not None \
                and self.health_full_size_floor < self.health_floor:
            raise ValidationError({"health_full_size_floor": (
                f"The full-size floor {self.health_full_size_floor} must be at or above the blocking floor "
                f"health_floor {self.health_floor}: sizes shrink between the two.")})


class Recommendation(models.Model):
    """A prediction turned into a sized trade proposal, with every Kelly factor and risk reason kept."""

    class State(models.TextChoices):
        # Proposed is the state while Kelly and risk run; both run in the transaction that stores the row, which
        # commits it as pending or blocked, so no committed row stays proposed.
        PROPOSED = "proposed", "Proposed"
        PENDING = "pending", "Pending approval"
        APPROVED = "approved", "Approved"
        EXECUTED = "executed", "Executed"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        BLOCKED = "blocked", "Blocked by risk"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="recommendations")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="recommendations")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    prediction = models.ForeignKey("mlcore.Prediction", on_delete=models.CASCADE, related_name="recommendations")
    model_version = models.ForeignKey("mlcore.ModelVersion", on_delete=models.PROTECT, related_name="+")
    bar = models.ForeignKey(Bar, on_delete=models.CASCADE, related_name="recommendations")
    bar_timestamp = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    side = models.CharField(max_length=5, choices=[("long", "long"), ("short", "short")])
    probability = models.FloatField()
    payoff_ratio = models.FloatField()
    confidence = models.FloatField()
    agreement = models.FloatField()
    reference_price = models.DecimalField(**PRICE)
    atr = models.DecimalField(**PRICE)
    stop_distance = models.DecimalField(**PRICE)
    take_profit_distance = models.DecimalField(**PRICE)
    horizon_bars = models.PositiveIntegerField()

    kelly = models.JSONField()
    kelly_contracts = models.PositiveIntegerField()
    risk = models.JSONField()
    risk_decision = models.CharField(max_length=7)
    contracts = models.PositiveIntegerField()
    reasons = models.JSONField(default=list)

    state = models.CharField(max_length=9, choices=State.choices, default=State.PROPOSED, db_index=True)
    # Approval is refused once a bar later than this has arrived (time to live in bars).
    expires_after = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    executed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-bar_timestamp", "-id"]
        constraints = [models.UniqueConstraint(fields=["account", "prediction"], name="recommendation_once")]
        indexes = [models.Index(fields=["account", "instrument", "state"], name="recommendation_open"),
                   # Expiry runs on every bar: only the few pending rows, whatever the market's history.
                   models.Index(fields=["instrument", "timeframe", "expires_after"], name="recommendation_expiry",
                                condition=Q(state="pending"))]
        permissions = [("approve_recommendation", "Can approve or reject trade recommendations")]

    def __str__(self):
        return f"#{self.pk} {self.side} {self.contracts} {self.instrument_id} @ {self.bar_timestamp:%Y-%m-%d %H:%M} ({self.state})"


class AuditEvent(models.Model):
    """Every decision a person (or auto-trading) makes: who, when, what, the state before and after, from where."""

    class Action(models.TextChoices):
        APPROVE = "approve", "Approve"
        AUTO_APPROVE = "auto_approve", "Auto-approve"
        REJECT = "reject", "Reject"
        REFUSED = "refused", "Refused"
        AUTO_TRADING = "auto_trading", "Auto-trading"
        CIRCUIT_BREAKER_TRIP = "breaker_trip", "Circuit breaker tripped"
        CIRCUIT_BREAKER_RESET = "breaker_reset", "Circuit breaker reset"
        KILL_SWITCH = "kill_switch", "Kill switch"
        TRADING_STATE = "trading_state", "Trading state"
        CONFIG_CHANGE = "config_change", "Configuration change"
        MODEL_PROMOTE = "model_promote", "Model version promoted"
        MODEL_ROLLBACK = "model_rollback", "Model version rolled back"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events")
    recommendation = models.ForeignKey(Recommendation, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="audit_events")
    state_before = models.CharField(max_length=32, blank=True)
    state_after = models.CharField(max_length=32, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.state_before}->{self.state_after}"


class Order(models.Model):
    """A paper order. Entries fill at the open of the first bar after they were placed; exits are the bracket's."""

    class Kind(models.TextChoices):
        ENTRY = "entry", "Entry"
        TAKE_PROFIT = "take_profit", "Take-profit"
        STOP_LOSS = "stop_loss", "Stop-loss"
        TIME_EXIT = "time", "Time exit"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="orders")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    recommendation = models.ForeignKey(Recommendation, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="orders")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="exits")
    kind = models.CharField(max_length=11, choices=Kind.choices)
    side = models.CharField(max_length=4, choices=[("buy", "buy"), ("sell", "sell")])
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING, db_index=True)
    # A retried task finds the order by this key instead of placing (and filling) a second one.
    idempotency_key = models.CharField(max_length=80, unique=True)
    placed_at = models.DateTimeField(auto_now_add=True)
    # The last bar stored when the order was placed: the entry fills at the open of the first later bar.
    after_bar_timestamp = models.DateTimeField()
    # The bracket of an entry (set when it fills).
    take_profit = models.DecimalField(**PRICE, null=True, blank=True)
    stop_loss = models.DecimalField(**PRICE, null=True, blank=True)
    horizon_bars = models.PositiveIntegerField(null=True, blank=True)
    bars_held = models.PositiveIntegerField(default=0)
    last_bar_timestamp = models.DateTimeField(null=True, blank=True)
    closed = models.BooleanField(default=False, help_text="Entry only: its bracket has exited.")

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_positive")]

    def __str__(self):
        return f"#{self.pk} {self.kind} {self.side} {self.quantity} {self.instrument_id} ({self.status})"


class Fill(models.Model):
    """One execution: each order fills once, completely (the one-to-one key makes a second fill impossible)."""

    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="fill")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="fills")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="fills")
    side = models.CharField(max_length=4, choices=[("buy", "buy"), ("sell", "sell")])
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE)
    commission = models.DecimalField(**MONEY)
    bar = models.ForeignKey(Bar, on_delete=models.PROTECT, related_name="fills")
    timestamp = models.DateTimeField(help_text="Market time of the fill (within its bar).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["timestamp", "id"]
        indexes = [models.Index(fields=["account", "instrument", "timestamp"], name="fill_replay")]

    def __str__(self):
        return f"{self.side} {self.quantity} {self.instrument_id} @ {self.price}"


class Position(models.Model):
    """Net position of an account in an instrument, derived only from its fills (see `reconcile`)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="positions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions")
    quantity = models.IntegerField(default=0, help_text="Signed: long > 0, short < 0.")
    average_price = models.DecimalField(**PRICE, default=Decimal("0"))
    # Exact sum of price x contracts still open (points): P&L is computed from it, the average is for display.
    cost_basis = models.DecimalField(**LEDGER, default=Decimal("0"))
    realized_pnl = models.DecimalField(**LEDGER, default=Decimal("0"), help_text="Gross, before commissions.")
    commissions = models.DecimalField(**LEDGER, default=Decimal("0"))
    fills = models.PositiveIntegerField(default=0)
    mark_price = models.DecimalField(**PRICE, null=True, blank=True)
    unrealized_pnl = models.DecimalField(**LEDGER, default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "instrument"], name="position_unique")]

    def __str__(self):
        return f"{self.account} {self.instrument_id} {self.quantity:+d} @ {self.average_price}"


class EquitySnapshot(models.Model):
    """Account equity marked at a bar's close: the equity curve, the drawdown and the day's P&L come from here."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="equity_snapshots")
    timestamp = models.DateTimeField(help_text="Market time (the marking bar's close).")
    equity = models.DecimalField(**MONEY)
    realized_pnl = models.DecimalField(**MONEY, help_text="Net of commissions.")
    unrealized_pnl = models.DecimalField(**MONEY)
    peak_equity = models.DecimalField(**MONEY)
    drawdown = models.FloatField()

    class Meta:
        ordering = ["timestamp"]
        constraints = [models.UniqueConstraint(fields=["account", "timestamp"], name="equity_snapshot_once")]

    def __str__(self):
        return f"{self.account} {self.timestamp:%Y-%m-%d %H:%M} {self.equity}"


class BacktestRun(models.Model):
    """A replay of stored history through the live per-bar workflow (trading.backtest), with its report."""

    class Approval(models.TextChoices):
        APPROVE = "approve", "Approve what risk approves"
        RECORD = "record", "Approve nothing, record only"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="backtests",
                                   help_text="The real market whose stored bars are replayed.")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    start = models.DateTimeField(help_text="First bar replayed (its open time, UTC).")
    end = models.DateTimeField(help_text="Bars up to and including this open time are replayed.")
    model_version = models.ForeignKey("mlcore.ModelVersion", on_delete=models.PROTECT, related_name="+")
    approval = models.CharField(max_length=7, choices=Approval.choices, default=Approval.APPROVE)
    # The version saw bars inside the window: its out-of-sample claim is false, and every page of the report says so.
    lookahead = models.BooleanField(default=False)
    source_account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                       help_text="Whose trading configuration and starting equity the run copies.")
    market = models.OneToOneField(Instrument, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    account = models.OneToOneField(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    config = models.JSONField(default=dict, help_text="The trading configuration the run used.")
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.QUEUED, db_index=True)
    bars_total = models.PositiveIntegerField(default=0)
    bars_done = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    via = models.CharField(max_length=20, blank=True, help_text="command, page or api")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the running replay last committed a page of bars: a run that stops moving was abandoned (its worker or
    # process died) and is failed by the periodic job.
    progress_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_backtest", "Can start a backtest")]
        constraints = [models.CheckConstraint(condition=Q(end__gte=F("start")), name="backtest_window_ordered")]

    def __str__(self):
        return f"backtest #{self.pk} {self.instrument_id} {self.timeframe} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"
