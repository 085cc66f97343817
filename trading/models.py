"""Instruments, bars and feed status."""
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from .domain.timeframes import TIMEFRAME_CHOICES


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
