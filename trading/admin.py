"""Admin for instruments, bars (kept fast on millions of rows) and the read-only feed heartbeats."""
from django.contrib import admin
from django.utils import timezone

from . import selectors
from .models import Bar, FeedStatus, Instrument


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "exchange", "tick_size", "point_value", "currency", "active")
    list_filter = ("exchange", "currency", "active")
    search_fields = ("symbol", "name")  # also what BarAdmin's instrument autocomplete searches
    ordering = ("symbol",)


@admin.register(Bar)
class BarAdmin(admin.ModelAdmin):
    list_display = ("instrument", "timeframe", "timestamp", "open", "high", "low", "close", "volume")
    list_filter = ("instrument", "timeframe")
    date_hierarchy = "timestamp"
    # Whole-symbol match: "ES" should not also find every symbol that merely contains an E and an S.
    search_fields = ("=instrument__symbol",)
    list_select_related = ("instrument",)
    autocomplete_fields = ("instrument",)
    # Newest first, all three keys descending: a backward scan of the (instrument, timeframe, timestamp)
    # unique index, which also makes the order total so the admin adds no "-pk" that would force a sort.
    ordering = ("-instrument_id", "-timeframe", "-timestamp")
    # Counting the whole table on every filtered page costs a full scan; the filtered count is enough.
    show_full_result_count = False
    list_per_page = 100


@admin.register(FeedStatus)
class FeedStatusAdmin(admin.ModelAdmin):
    """Feed processes write these rows; the admin shows them and may delete a stale one, nothing else."""

    list_display = (
        "instrument",
        "timeframe",
        "source",
        "alive",
        "running",
        "heartbeat_at",
        "last_bar_timestamp",
        "last_bar_received_at",
        "bars_emitted",
        "pace_seconds",
    )
    list_filter = ("instrument", "timeframe", "running", "source")
    list_select_related = ("instrument",)
    search_fields = ("instrument__symbol", "source")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Users with view permission still see every row and its detail page, read-only.
        return False

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: FeedStatus) -> bool:
        # The running flag alone lies when a feed process was killed; this is the heartbeat-aware answer.
        return selectors.feed_is_alive(obj, now=timezone.now())
