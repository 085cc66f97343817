"""Admin for the model registry (with promote / roll back) and predictions."""
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html

from minhos_site.client_address import client_address

from . import registry, retraining
from .models import ModelVersion, Prediction, Retraining, RetrainingHeartbeat, RetrainingPolicy, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "instrument", "timeframe", "status", "preset", "n_bars", "has_edge", "payoff_ratio",
                    "created_at", "promoted_at")
    list_filter = ("status", "instrument", "timeframe", "has_edge", "preset")
    search_fields = ("instrument__symbol", "edge_statement")
    list_select_related = ("instrument",)
    actions = ("promote", "roll_back")
    # The metrics JSON is shown once, formatted, as the report.
    readonly_fields = [f.name for f in ModelVersion._meta.fields if f.name != "metrics"] + ["report"]
    exclude = ("metrics",)

    def has_add_permission(self, request):
        return False  # versions come from training only

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="out-of-sample report")
    def report(self, obj):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.metrics, indent=2))

    @admin.action(description="Promote the selected version (one)", permissions=["promote"])
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return
        try:
            version = registry.model_version_promote(version_id=queryset.get().pk, user=request.user,
                                                     client_address=client_address(request), via="admin")
        except (registry.RegistryError, PermissionDenied) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"v{version.pk} is now active for {version.instrument} {version.timeframe}.")

    @admin.action(description="Roll back the selected version's market", permissions=["promote"])
    def roll_back(self, request, queryset):
        for market in queryset.values("instrument", "timeframe").distinct():
            version = queryset.filter(**market).first()
            try:
                restored = registry.model_version_rollback(instrument=version.instrument, timeframe=version.timeframe,
                                                           user=request.user, client_address=client_address(request),
                                                           via="admin")
            except (registry.RegistryError, PermissionDenied) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"v{restored.pk} is active again for {restored.instrument} {restored.timeframe}.")

    def has_promote_permission(self, request):
        return request.user.has_perm(registry.PROMOTE_PERMISSION)


class TrainingRunHeartbeatInline(admin.TabularInline):
    """Each process working on the run (the run, a member fit, the assembly): its worker, pid and last beat."""

    model = RetrainingHeartbeat
    fk_name = "training_run"
    fields = ("part", "worker", "pid", "started_at", "beat_at", "ended_at", "progress")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "instrument", "timeframe", "status", "preset", "started_at", "heartbeat_at", "progress",
                    "finished_at", "version", "error")
    list_filter = ("status", "instrument")
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    inlines = [TrainingRunHeartbeatInline]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("id", "instrument", "bar", "version", "side", "confidence", "agreement", "p_long", "p_short",
                    "latency_ms", "created_at")
    list_filter = ("instrument", "side", "version")
    list_select_related = ("instrument", "bar", "version")
    raw_id_fields = ("bar", "version")
    show_full_result_count = False
    readonly_fields = [f.name for f in Prediction._meta.fields]


@admin.register(RetrainingPolicy)
class RetrainingPolicyAdmin(admin.ModelAdmin):
    list_display = ("instrument", "timeframe", "promotion", "scheduled", "window_bars", "holdout_bars", "min_new_bars",
                    "shadow_bars", "cooldown_minutes", "updated_at")
    list_filter = ("promotion", "scheduled", "instrument")
    list_select_related = ("instrument",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "instrument":  # a backtest's private market is retrained by no one
            kwargs["queryset"] = db_field.related_model.objects.live()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Retraining)
class RetrainingAdmin(admin.ModelAdmin):
    """Every retraining and its decision (read only); a proposed promotion is approved or rejected here too."""

    list_display = ("id", "instrument", "timeframe", "trigger", "requested_by", "requested_at", "status", "champion",
                    "challenger", "decision", "decided_by")
    list_filter = ("status", "trigger", "instrument", "timeframe")
    list_select_related = ("instrument",)
    date_hierarchy = "requested_at"
    actions = ("approve", "reject")
    readonly_fields = [f.name for f in Retraining._meta.fields if f.name not in ("scores", "window", "shadow")] + [
        "figures"]
    exclude = ("scores", "window", "shadow")

    def has_add_permission(self, request):
        return False  # started by the schedule, monitoring, the page, the API or the command

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="scores, window and shadow record")
    def figures(self, obj):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(
            {"window": obj.window, "scores": obj.scores, "shadow": obj.shadow}, indent=2))

    @admin.action(description="Approve the proposed promotion (one)", permissions=["promote"])
    def approve(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one retraining to approve.", messages.ERROR)
            return
        try:
            record = retraining.retraining_approve(retraining_id=queryset.get().pk, user=request.user,
                                                   client_address=client_address(request), via="admin")
        except (retraining.RetrainingRefused, PermissionDenied) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        level = messages.SUCCESS if record.status == Retraining.Status.PROMOTED else messages.ERROR
        self.message_user(request, f"Retraining #{record.pk}: {record.status} {record.error}".strip(), level)

    @admin.action(description="Reject the proposed promotion", permissions=["promote"])
    def reject(self, request, queryset):
        for record in queryset:
            try:
                retraining.retraining_reject(retraining_id=record.pk, user=request.user,
                                             client_address=client_address(request), note="rejected in the admin")
            except (retraining.RetrainingRefused, PermissionDenied) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"Retraining #{record.pk} rejected.")

    def has_promote_permission(self, request):
        return request.user.has_perm(registry.PROMOTE_PERMISSION)
