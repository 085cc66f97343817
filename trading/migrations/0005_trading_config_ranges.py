"""Every trading setting gets a sane range, checked by the model, the API, the admin and (here) the database; model
promotions and roll-backs get audit actions of their own.

The ranges are those of `trading.domain.config_ranges` when this migration was written, copied here so that a later
change of the table needs a migration of its own. A stored setting outside its new range is first moved to the
nearest value inside it (a NaN to the field's default), and each such move is audited as a configuration change.
"""
import math
from decimal import Decimal

from django.db import migrations, models

import trading.models

# name: (low, high, low_open, high_open, default)
RANGES = {
    "kelly_fraction": (0.0, 1.0, True, False, 0.25),
    "min_confidence": (0.5, 1.0, False, True, 0.60),
    "max_contracts": (1, 100, False, False, 5),
    "max_position_contracts": (1, 100, False, False, 5),
    "max_total_contracts": (1, 1000, False, False, 10),
    "daily_loss_limit": (Decimal("0"), Decimal("10000000.00"), False, False, Decimal("2000.00")),
    "max_drawdown": (0.0, 1.0, True, False, 0.10),
    "max_trades_per_day": (1, 1000, False, False, 20),
    "stale_after_seconds": (0.0, 86400.0, True, False, 180.0),
    "health_floor": (0.0, 1.0, False, False, 0.40),
    "recommendation_ttl_bars": (1, 1440, False, False, 2),
    "slippage_ticks": (0, 100, False, False, 1),
    "commission_per_contract": (Decimal("0"), Decimal("1000.00"), False, False, Decimal("2.50")),
}


def _inside(value, low, high, low_open, high_open, default):
    if isinstance(value, float) and not math.isfinite(value):
        return high if value == math.inf else default
    if value < low or (low_open and value == low):
        # An open lower end (a fraction that must be > 0) has no nearest value inside: take the default.
        return default if low_open else low
    if value > high or (high_open and value == high):
        return default if high_open else high
    return value


def settings_into_range(apps, schema_editor):
    TradingConfig = apps.get_model("trading", "TradingConfig")
    AuditEvent = apps.get_model("trading", "AuditEvent")
    for config in TradingConfig.objects.select_related("instrument").order_by("pk"):
        before, after = {}, {}
        for name, bounds in RANGES.items():
            value = getattr(config, name)
            inside = _inside(value, *bounds)
            if inside != value:  # also a NaN, which equals nothing
                before[name], after[name] = _json(value), _json(inside)
                setattr(config, name, inside)
        if before:
            config.save(update_fields=[*before])
            AuditEvent.objects.create(
                action="config_change", account_id=config.account_id,
                details={"instrument": config.instrument.symbol, "before": before, "after": after,
                         "reason": "migration trading 0005: the setting was outside its new range"})


def _json(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (int, float)) else str(value)


class Migration(migrations.Migration):

    dependencies = [
        ('trading', '0004'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='tradingconfig',
            name='trading_config_kelly_fraction',
        ),
        migrations.RemoveConstraint(
            model_name='tradingconfig',
            name='trading_config_min_confidence',
        ),
        migrations.RemoveConstraint(
            model_name='tradingconfig',
            name='trading_config_max_drawdown',
        ),
        migrations.RemoveConstraint(
            model_name='tradingconfig',
            name='trading_config_limits_non_negative',
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='action',
            field=models.CharField(choices=[('approve', 'Approve'), ('auto_approve', 'Auto-approve'), ('reject', 'Reject'), ('refused', 'Refused'), ('auto_trading', 'Auto-trading'), ('breaker_trip', 'Circuit breaker tripped'), ('breaker_reset', 'Circuit breaker reset'), ('kill_switch', 'Kill switch'), ('trading_state', 'Trading state'), ('config_change', 'Configuration change'), ('model_promote', 'Model version promoted'), ('model_rollback', 'Model version rolled back')], max_length=16),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='commission_per_contract',
            field=models.DecimalField(decimal_places=2, default=Decimal('2.50'), help_text="Commission per contract and fill, in the account's currency, in [0, 1000.00].", max_digits=8, validators=[trading.models.RangeValidator(Decimal('0'), Decimal('1000.00'), high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='daily_loss_limit',
            field=models.DecimalField(decimal_places=2, default=Decimal('2000.00'), help_text="The day's loss that trips the circuit breaker (0: no loss allowed), in the account's currency, in [0, 10000000.00].", max_digits=16, validators=[trading.models.RangeValidator(Decimal('0'), Decimal('10000000.00'), high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='health_floor',
            field=models.FloatField(default=0.4, help_text='Model health (0..1) under which risk blocks, in [0.0, 1.0].', validators=[trading.models.RangeValidator(0.0, 1.0, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='kelly_fraction',
            field=models.FloatField(default=0.25, help_text='Share of full Kelly to bet, in (0.0, 1.0].', validators=[trading.models.RangeValidator(0.0, 1.0, high_open=False, low_open=True)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='max_contracts',
            field=models.PositiveIntegerField(default=5, help_text="Cap of one recommendation's size, in [1, 100] contracts.", validators=[trading.models.RangeValidator(1, 100, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='max_drawdown',
            field=models.FloatField(default=0.1, help_text='Drawdown from peak equity at which sizing reaches zero and risk blocks, in (0.0, 1.0].', validators=[trading.models.RangeValidator(0.0, 1.0, high_open=False, low_open=True)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='max_position_contracts',
            field=models.PositiveIntegerField(default=5, help_text='Cap of the net position in this instrument, in [1, 100] contracts.', validators=[trading.models.RangeValidator(1, 100, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='max_total_contracts',
            field=models.PositiveIntegerField(default=10, help_text="Cap of the account's contracts over every instrument, in [1, 1000] contracts.", validators=[trading.models.RangeValidator(1, 1000, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='max_trades_per_day',
            field=models.PositiveIntegerField(default=20, help_text='Entries per trading day, in [1, 1000].', validators=[trading.models.RangeValidator(1, 1000, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='min_confidence',
            field=models.FloatField(default=0.6, help_text='Confidence threshold for sizing and for risk, in [0.5, 1.0).', validators=[trading.models.RangeValidator(0.5, 1.0, high_open=True, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='recommendation_ttl_bars',
            field=models.PositiveIntegerField(default=2, help_text='A recommendation can be approved until this many later bars exist, in [1, 1440] bars.', validators=[trading.models.RangeValidator(1, 1440, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='slippage_ticks',
            field=models.PositiveIntegerField(default=1, help_text='Slippage of paper fills against the order, in [0, 100] ticks.', validators=[trading.models.RangeValidator(0, 100, high_open=False, low_open=False)]),
        ),
        migrations.AlterField(
            model_name='tradingconfig',
            name='stale_after_seconds',
            field=models.FloatField(default=180.0, help_text='Risk blocks when the last bar arrived longer ago than this, in (0.0, 86400.0] seconds.', validators=[trading.models.RangeValidator(0.0, 86400.0, high_open=False, low_open=True)]),
        ),
        migrations.RunPython(settings_into_range, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('kelly_fraction__gt', 0.0), ('kelly_fraction__lte', 1.0)), name='trading_config_kelly_fraction_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('min_confidence__gte', 0.5), ('min_confidence__lt', 1.0)), name='trading_config_min_confidence_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('max_contracts__gte', 1), ('max_contracts__lte', 100)), name='trading_config_max_contracts_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('max_position_contracts__gte', 1), ('max_position_contracts__lte', 100)), name='trading_config_max_position_contracts_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('max_total_contracts__gte', 1), ('max_total_contracts__lte', 1000)), name='trading_config_max_total_contracts_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('daily_loss_limit__gte', Decimal('0')), ('daily_loss_limit__lte', Decimal('10000000.00'))), name='trading_config_daily_loss_limit_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('max_drawdown__gt', 0.0), ('max_drawdown__lte', 1.0)), name='trading_config_max_drawdown_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('max_trades_per_day__gte', 1), ('max_trades_per_day__lte', 1000)), name='trading_config_max_trades_per_day_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('stale_after_seconds__gt', 0.0), ('stale_after_seconds__lte', 86400.0)), name='trading_config_stale_after_seconds_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('health_floor__gte', 0.0), ('health_floor__lte', 1.0)), name='trading_config_health_floor_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('recommendation_ttl_bars__gte', 1), ('recommendation_ttl_bars__lte', 1440)), name='trading_config_recommendation_ttl_bars_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('slippage_ticks__gte', 0), ('slippage_ticks__lte', 100)), name='trading_config_slippage_ticks_range'),
        ),
        migrations.AddConstraint(
            model_name='tradingconfig',
            constraint=models.CheckConstraint(condition=models.Q(('commission_per_contract__gte', Decimal('0')), ('commission_per_contract__lte', Decimal('1000.00'))), name='trading_config_commission_per_contract_range'),
        ),
    ]
