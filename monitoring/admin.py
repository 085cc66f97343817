"""Monitoring in the admin: alert rules editable (threshold, severity, on/off, the retraining hook; a rule's code is
fixed once made, since monitoring evaluates each code), alerts listed with an Acknowledge action that goes through
the service (permission-checked and audited), and snapshots, webhook deliveries and retraining requests read-only."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from . import services
from .models import Alert, AlertRule, MetricSnapshot, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only monitoring writes: shown, never changed here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "severity", "threshold", "enabled", "queue_retraining")
    list_editable = ("severity", "threshold", "enabled", "queue_retraining")
    list_filter = ("severity", "enabled", "queue_retraining")
    search_fields = ("code", "name", "description")
    fields = ("code", "name", "description", "severity", "threshold", "enabled", "queue_retraining")

    def get_readonly_fields(self, request, obj=None):
        # Monitoring evaluates each code by name: renaming one would silently switch its alert off.
        return ("code",) if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # alerts keep their rule (PROTECT); switch a rule off instead


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "opened_at", "severity", "status", "rule", "market", "message_short", "times_seen",
                    "last_seen_at", "acknowledged_by", "resolved_at")
    list_filter = ("status", "severity", "rule")
    list_select_related = ("rule", "instrument", "acknowledged_by")
    search_fields = ("cause", "message", "acknowledgement_note")
    date_hierarchy = "opened_at"
    actions = ("acknowledge",)

    @admin.display(description="market")
    def market(self, obj: Alert) -> str:
        return f"{obj.instrument.symbol} {obj.timeframe}" if obj.instrument_id else "all markets"

    @admin.display(description="message")
    def message_short(self, obj: Alert) -> str:
        return obj.message if len(obj.message) <= 120 else obj.message[:117] + "..."

    def get_actions(self, request):
        # An action a user may not take is not offered (the service refuses it anyway).
        actions = super().get_actions(request)
        if not request.user.has_perm("monitoring.acknowledge_alert"):
            actions.pop("acknowledge", None)
        return actions

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset):
        done, already = [], []
        for alert in queryset.order_by("id"):
            try:
                result = services.alert_acknowledge(alert_id=alert.pk, user=request.user)
            except PermissionDenied as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
            except ValidationError as exc:
                self.message_user(request, f"#{alert.pk}: {' '.join(exc.messages)}", messages.WARNING)
                continue
            if result.acknowledged_by_id == request.user.pk and alert.status == Alert.Status.OPEN:
                done.append(f"#{alert.pk}")
            else:
                already.append(f"#{alert.pk} ({result.status})")
        if done:
            self.message_user(request, f"Acknowledged: {', '.join(done)}.", messages.SUCCESS)
        if already:
            self.message_user(request, f"Not open, left as they were: {', '.join(already)}.", messages.INFO)


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("taken_at", "instrument", "timeframe", "version", "health_score", "trigger", "seconds")
    list_filter = ("instrument", "timeframe", "trigger")
    list_select_related = ("instrument", "version")
    date_hierarchy = "taken_at"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "alert", "event", "status", "attempts", "response_status", "sent_at", "url")
    list_filter = ("status", "event")
    list_select_related = ("alert",)
    search_fields = ("url", "last_error")
