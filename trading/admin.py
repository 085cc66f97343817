"""Admin for instruments, bars (kept fast on millions of rows), the read-only feed heartbeats, and decisions:
accounts and their controls, the kill switch, trading configuration, recommendations (approve/reject through the
services) and the read-only audit trail, orders, fills, positions and equity snapshots."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone

from minhos_site.client_address import client_address
from minhos_site.text import control_character_problem

from . import selectors, services
from .models import (
    Account,
    AuditEvent,
    Bar,
    BarWorkflow,
    EquitySnapshot,
    FeedStatus,
    Fill,
    Instrument,
    KillSwitch,
    Order,
    Position,
    Recommendation,
    TradingConfig,
    TradingState,
    WorkerHeartbeat,
)


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "exchange", "tick_size", "point_value", "currency", "active")
    list_filter = ("exchange", "currency", "active")
    search_fields = ("symbol", "name")  # also what BarAdmin's instrument autocomplete searches
    ordering = ("symbol",)

    def get_readonly_fields(self, request, obj=None):
        # Fills were booked and are replayed (`reconcile`) with these terms: changing them after the first order
        # would rewrite the P&L of every trade already made, as changing an account's starting equity would.
        if obj is not None and Order.objects.filter(instrument=obj).exists():
            return ("symbol", "tick_size", "point_value", "currency")
        return ()

    def has_change_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_delete_permission(request, obj)

    def get_search_results(self, request, queryset, search_term):
        # The other admins' instrument pickers (autocomplete) offer live markets only.
        if request.path.endswith("/autocomplete/"):
            queryset = queryset.live()
        return super().get_search_results(request, queryset, search_term)


def _not_a_backtests(obj) -> bool:
    """A backtest's private market and account, their bars and settings are its run's: shown, never edited here."""
    if obj is None:
        return True
    for row in (obj, getattr(obj, "instrument", None), getattr(obj, "account", None)):
        if row is not None and getattr(row, "backtest", False):
            return False
    return True


def _live_choices(db_field, kwargs: dict) -> dict:
    """A foreign key to an instrument or an account offers the live ones only."""
    if db_field.name in ("instrument", "account"):
        kwargs["queryset"] = db_field.related_model.objects.live()
    return kwargs


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

    def has_change_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **_live_choices(db_field, kwargs))


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


# --- decisions and execution ------------------------------------------------------------------------------------
# Every control a person uses here goes through the same service as the API, so it is permission-checked and audited
# the same way; the admin reports a refusal as a message instead of failing the page.


def _client_address(request) -> str | None:
    return client_address(request)


def _refusal_text(exc: Exception) -> str:
    if isinstance(exc, DjangoValidationError):
        return " ".join(exc.messages)
    return str(exc)


def _run_for_each(model_admin, request, objects, call, done: str, label=str) -> None:
    """Call the service for each selected row; report the successes once and each refusal by row.

    A missing permission is the same for every row, so it is reported once and the rest are not tried.
    """
    succeeded = []
    for obj in objects:
        try:
            call(obj)
        except services.PermissionRefused as exc:
            model_admin.message_user(request, str(exc), messages.ERROR)
            break
        except (services.RecommendationError, DjangoValidationError, ObjectDoesNotExist) as exc:
            model_admin.message_user(request, f"{label(obj)}: {_refusal_text(exc)}", messages.WARNING)
        else:
            succeeded.append(obj)
    if succeeded:
        model_admin.message_user(request, f"{done}: {', '.join(label(o) for o in succeeded)}.", messages.SUCCESS)


class ControlAdmin(admin.ModelAdmin):
    """The change page of a control (the kill switch, a trading configuration). A refused save, by the admin's own
    permission check or by the form (a value missing, unparseable or out of range), is a refused attempt at the
    control and is audited like the services' refusals; the record is written after the admin's transaction."""

    audit_control = ""

    def _refusal_record(self, request, reason: str, *, obj=None, details: dict | None = None) -> None:
        services.audit_refusal_record(control=self.audit_control, user=request.user, reason=reason,
                                      account_id=getattr(obj, "account_id", None),
                                      client_address=_client_address(request),
                                      details={"via": "admin", **(details or {})})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except PermissionDenied as exc:
            if request.method == "POST":
                obj = self.get_object(request, unquote(object_id)) if object_id else None
                self._refusal_record(request, str(exc) or "No permission to change this in the admin.", obj=obj,
                                     details={"object": object_id})
            raise

    def get_form(self, request, obj=None, **kwargs):
        form_class, model_admin = super().get_form(request, obj, **kwargs), self

        class AuditedForm(form_class):
            def is_valid(self):
                valid = super().is_valid()
                if self.is_bound and not valid:
                    errors = {name: list(messages) for name, messages in self.errors.items()}
                    model_admin._refusal_record(
                        request, "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items()),
                        obj=obj, details={"errors": errors})
                return valid

        return AuditedForm


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the services (fills change positions, the broker snapshots equity, decisions are
    audited): the admin shows them and changes nothing."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "currency", "equity", "daily_pnl", "drawdown", "auto_trading", "trading_state",
                    "circuit_breaker", "kill_switch")
    list_filter = ("auto_trading", "trading_state")
    search_fields = ("name",)
    actions = ("reset_circuit_breaker", "auto_trading_on", "auto_trading_off", "halt_trading", "resume_trading")
    # Switches, state and breaker change only through the actions (the services), never by editing the row.
    readonly_fields = ("peak_equity", "auto_trading", "trading_state", "circuit_breaker_tripped_at",
                       "circuit_breaker_reason", "settlement_fault", "settlement_fault_at", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        # Changing the starting equity or currency of an account that traded would rewrite its history.
        return ("currency", "starting_equity", *self.readonly_fields)

    def has_delete_permission(self, request, obj=None):
        return False  # its audit trail protects it

    def has_change_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            # A new account starts at its peak; the model's default peak assumes the default starting equity.
            obj.peak_equity = obj.starting_equity
        super().save_model(request, obj, form, change)

    @staticmethod
    def _summary(obj: Account) -> dict:
        if not hasattr(obj, "_summary"):
            obj._summary = selectors.account_summary(account=obj)
        return obj._summary

    @admin.display(description="equity")
    def equity(self, obj):
        return self._summary(obj)["equity"]

    @admin.display(description="day P&L")
    def daily_pnl(self, obj):
        return self._summary(obj)["daily_pnl"]

    @admin.display(description="drawdown")
    def drawdown(self, obj):
        return f"{self._summary(obj)['drawdown']:.2%}"

    @admin.display(boolean=True, description="breaker tripped")
    def circuit_breaker(self, obj):
        return obj.circuit_breaker_tripped

    @admin.display(boolean=True, description="kill switch")
    def kill_switch(self, obj):
        return self._summary(obj)["kill_switch"]

    def _each(self, request, queryset, service, done, **kwargs):
        _run_for_each(self, request, list(queryset), lambda account: service(
            account_id=account.pk, user=request.user, client_address=_client_address(request), **kwargs), done)

    @admin.action(description="Reset circuit breaker")
    def reset_circuit_breaker(self, request, queryset):
        self._each(request, queryset, services.circuit_breaker_reset, "Circuit breaker reset")

    @admin.action(description="Turn auto-trading on")
    def auto_trading_on(self, request, queryset):
        self._each(request, queryset, services.auto_trading_set, "Auto-trading on", enabled=True)

    @admin.action(description="Turn auto-trading off")
    def auto_trading_off(self, request, queryset):
        self._each(request, queryset, services.auto_trading_set, "Auto-trading off", enabled=False)

    @admin.action(description="Halt trading")
    def halt_trading(self, request, queryset):
        self._each(request, queryset, services.trading_state_set, "Halted", state=TradingState.HALTED)

    @admin.action(description="Resume trading (active)")
    def resume_trading(self, request, queryset):
        self._each(request, queryset, services.trading_state_set, "Active", state=TradingState.ACTIVE)


class KillSwitchForm(forms.ModelForm):
    """`engaged` is an explicit choice with nothing preselected, asked for on every save: a checkbox missing from a
    submitted form reads as "released", so a form saved for its reason alone, opened before someone engaged the
    switch, or crafted without the field, would release the switch without asking to."""

    engaged = forms.TypedChoiceField(
        choices=[("true", "Engaged: nothing trades on any account"), ("false", "Released")],
        coerce=lambda value: value == "true", widget=forms.RadioSelect, label="Set the switch to",
        help_text="Choose every time; the state now is shown above.")
    # The service's bound, so a long reason is a form error rather than a refusal inside the admin's save.
    reason = forms.CharField(required=False, max_length=services.KILL_SWITCH_REASON_MAX, widget=forms.Textarea)

    class Meta:
        model = KillSwitch
        fields = ("engaged", "reason")

    def clean_engaged(self):
        # A form reads the last of repeated values: engaged=true&engaged=false would release the switch.
        if hasattr(self.data, "getlist") and len(self.data.getlist("engaged")) > 1:
            raise forms.ValidationError("Sent more than once; choose one.")
        return self.cleaned_data["engaged"]

    def clean_reason(self):
        problem = control_character_problem(self.cleaned_data["reason"], text=True)
        if problem:
            raise forms.ValidationError(problem)
        return self.cleaned_data["reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("engaged", None)


@admin.register(KillSwitch)
class KillSwitchAdmin(ControlAdmin):
    """The one global switch; saving goes through `services.kill_switch_set` (permission-checked, audited)."""

    form = KillSwitchForm
    audit_control = AuditEvent.Action.KILL_SWITCH
    list_display = ("__str__", "engaged", "changed_at", "changed_by", "reason")
    fields = ("state_now", "engaged", "reason", "changed_at", "changed_by")
    readonly_fields = ("state_now", "changed_at", "changed_by")

    def has_add_permission(self, request):
        return request.user.has_perm("trading.engage_kill_switch") and not KillSwitch.objects.filter(pk=1).exists()

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("trading.engage_kill_switch")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="state now")
    def state_now(self, obj):
        return "ENGAGED" if obj is not None and obj.engaged else "released"

    def save_model(self, request, obj, form, change):
        try:
            switch = services.kill_switch_set(engaged=form.cleaned_data["engaged"], reason=obj.reason,
                                              user=request.user, client_address=_client_address(request))
        except services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None
        obj.pk = switch.pk  # the admin's own log and redirect need it


@admin.register(TradingConfig)
class TradingConfigAdmin(ControlAdmin):
    """Editable settings; saving goes through `services.trading_config_update`, so it is validated and audited."""

    list_display = ("account", "instrument", "kelly_fraction", "min_confidence", "max_contracts",
                    "max_position_contracts", "daily_loss_limit", "max_drawdown", "recommendation_ttl_bars",
                    "updated_at")
    list_filter = ("account", "instrument")
    list_select_related = ("account", "instrument")
    search_fields = ("account__name", "instrument__symbol")
    autocomplete_fields = ("instrument",)
    audit_control = AuditEvent.Action.CONFIG_CHANGE

    def get_readonly_fields(self, request, obj=None):
        return ("updated_at",) if obj is None else ("account", "instrument", "updated_at")

    def has_add_permission(self, request):
        # Adding saves through the change service: without its permission the refusal would come from inside the
        # admin's transaction, taking its own audit record with it.
        return super().has_add_permission(request) and request.user.has_perm("trading.change_tradingconfig")

    def has_delete_permission(self, request, obj=None):
        return False  # sizing would silently fall back to the defaults

    def has_change_permission(self, request, obj=None):
        return _not_a_backtests(obj) and super().has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **_live_choices(db_field, kwargs))

    def save_model(self, request, obj, form, change):
        if not change:
            # Created with the defaults, then changed like any other: the non-default values are audited.
            obj.pk = services.trading_config_get(account=obj.account, instrument=obj.instrument).pk
        changes = {name: form.cleaned_data[name] for name in form.changed_data
                   if name not in ("account", "instrument")}
        if not changes:
            return
        try:
            services.trading_config_update(config_id=obj.pk, changes=changes, user=request.user,
                                           client_address=_client_address(request))
        except services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None


@admin.register(Recommendation)
class RecommendationAdmin(ReadOnlyAdmin):
    """Read-only: a recommendation changes only by a decision, taken by the actions through the services."""

    list_display = ("id", "bar_timestamp", "instrument", "timeframe", "account", "side", "contracts", "probability",
                    "confidence", "risk_decision", "state", "decided_by", "decided_at")
    list_filter = ("state", "instrument", "account", "timeframe", "side", "risk_decision")
    list_select_related = ("instrument", "account", "decided_by")
    search_fields = ("instrument__symbol", "account__name", "decided_by__username")
    date_hierarchy = "bar_timestamp"
    actions = ("approve", "reject")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def _decide(self, request, queryset, service, done):
        _run_for_each(self, request, list(queryset.order_by("id")), lambda recommendation: service(
            recommendation_id=recommendation.pk, user=request.user, client_address=_client_address(request)), done,
            label=lambda recommendation: f"#{recommendation.pk}")

    @admin.action(description="Approve selected recommendations")
    def approve(self, request, queryset):
        self._decide(request, queryset, services.recommendation_approve, "Approved")

    @admin.action(description="Reject selected recommendations")
    def reject(self, request, queryset):
        self._decide(request, queryset, services.recommendation_reject, "Rejected")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "user", "account", "recommendation", "state_before", "state_after",
                    "client_address")
    list_filter = ("action", "account")
    list_select_related = ("user", "account", "recommendation")
    search_fields = ("user__username", "account__name", "state_before", "state_after")
    date_hierarchy = "at"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "placed_at", "account", "instrument", "timeframe", "kind", "side", "quantity", "status",
                    "recommendation", "take_profit", "stop_loss", "closed")
    list_filter = ("status", "kind", "side", "instrument", "account")
    list_select_related = ("account", "instrument", "recommendation")
    search_fields = ("instrument__symbol", "account__name", "idempotency_key")


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "account", "instrument", "side", "quantity", "price", "commission", "order")
    list_filter = ("side", "instrument", "account")
    list_select_related = ("account", "instrument", "order")
    search_fields = ("instrument__symbol", "account__name")
    date_hierarchy = "timestamp"


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("account", "instrument", "quantity", "average_price", "mark_price", "realized_pnl",
                    "unrealized_pnl", "commissions", "fills", "updated_at")
    list_filter = ("account", "instrument")
    list_select_related = ("account", "instrument")
    search_fields = ("instrument__symbol", "account__name")


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "account", "equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown")
    list_filter = ("account",)
    list_select_related = ("account",)
    date_hierarchy = "timestamp"


@admin.register(BarWorkflow)
class BarWorkflowAdmin(ReadOnlyAdmin):
    """Each live bar's way through the decision workflow: where it is, each hop's time, the last error."""

    list_display = ("timestamp", "instrument", "timeframe", "stage", "settle_ms", "decide_ms", "recommendations",
                    "attempts", "error")
    list_filter = ("stage", "instrument", "timeframe")
    list_select_related = ("instrument",)
    date_hierarchy = "timestamp"
    search_fields = ("error",)

    @admin.display(description="stored → settled (ms)")
    def settle_ms(self, obj):
        return _milliseconds(obj.stored_at, obj.settled_at)

    @admin.display(description="settled → decided (ms)")
    def decide_ms(self, obj):
        return _milliseconds(obj.settled_at, obj.decided_at)


def _milliseconds(start, end):
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("queue", "hostname", "seen_at")


from .models import BacktestRun  # noqa: E402  (appended: the import block above is shared with other work)


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin):
    """Backtests are started from the backtests page, the API or `manage.py backtest`; the admin only shows them."""

    list_display = ("id", "instrument", "timeframe", "start", "end", "status", "progress", "created_at")
    list_filter = ("status", "instrument", "timeframe", "lookahead")
    list_select_related = ("instrument",)
    date_hierarchy = "created_at"

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.bars_done}/{obj.bars_total} bars ({_percent(obj.bars_done, obj.bars_total)})"


def _percent(done: int, total: int) -> str:
    return f"{100 * done / total:.0f}%" if total else "—"
