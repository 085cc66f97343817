"""Writes of accounts and their controls: configuration, auto-trading, circuit breaker, kill switch, trading state.

Every change a person makes is audited (who, when, what, before and after, from which address) in the same
transaction as the change itself, so there is never a change without its record or a record without its change.
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from ..models import Account, AuditEvent, Instrument, KillSwitch, TradingConfig, TradingState

DEFAULT_ACCOUNT = "paper"


class PermissionRefused(PermissionDenied):
    """The user lacks the permission this action needs (the message names it)."""


def _require(user, permission: str, action: str) -> None:
    if user is None or not user.is_authenticated or not user.has_perm(permission):
        raise PermissionRefused(f"{action} needs the permission {permission}.")


def audit_record(*, action: str, user=None, account: Account | None = None, recommendation=None,
                 state_before: str = "", state_after: str = "", client_address: str | None = None,
                 details: dict | None = None) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action, user=user if user is not None and user.is_authenticated else None, account=account,
        recommendation=recommendation, state_before=state_before, state_after=state_after,
        client_address=client_address or None, details=details or {},
    )


def account_default_get() -> Account:
    """The paper account every instrument trades on unless configured otherwise (created on first use)."""
    account, _ = Account.objects.get_or_create(name=DEFAULT_ACCOUNT)
    return account


def trading_config_get(*, account: Account, instrument: Instrument) -> TradingConfig:
    """The account's settings for the instrument; created with the defaults on first use."""
    config, _ = TradingConfig.objects.get_or_create(account=account, instrument=instrument)
    return config


def trading_config_update(*, config_id: int, changes: dict, user, client_address: str | None = None) -> TradingConfig:
    """Validate and apply `changes` (field -> value) atomically; refused whole if any value is invalid."""
    _require(user, "trading.change_tradingconfig", "Changing the trading configuration")
    editable = {f.name for f in TradingConfig._meta.concrete_fields} - {"id", "account", "instrument", "updated_at"}
    unknown = sorted(set(changes) - editable)
    if unknown:
        raise ValidationError({name: "Not an editable setting." for name in unknown})
    with transaction.atomic():
        config = TradingConfig.objects.select_for_update().get(pk=config_id)
        before = {name: _json(getattr(config, name)) for name in changes}
        for name, value in changes.items():
            setattr(config, name, value)
        config.full_clean()
        config.save()
        config.refresh_from_db()
        after = {name: _json(getattr(config, name)) for name in changes}
        audit_record(action=AuditEvent.Action.CONFIG_CHANGE, user=user, account=config.account,
                     client_address=client_address,
                     details={"instrument": config.instrument.symbol, "before": before, "after": after})
    return config


def _json(value):
    return value if isinstance(value, (int, float, bool, str, type(None))) else str(value)


def auto_trading_set(*, account_id: int, enabled: bool, user, client_address: str | None = None) -> Account:
    _require(user, "trading.toggle_auto_trading", "Turning auto-trading on or off")
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        before = account.auto_trading
        account.auto_trading = bool(enabled)
        account.save(update_fields=["auto_trading"])
        audit_record(action=AuditEvent.Action.AUTO_TRADING, user=user, account=account,
                     state_before="on" if before else "off", state_after="on" if enabled else "off",
                     client_address=client_address)
    return account


def circuit_breaker_trip(*, account_id: int, reason: str) -> Account:
    """Trip the daily-loss circuit breaker (by the risk manager): the account halts until a person resets it."""
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        if account.circuit_breaker_tripped:
            return account
        before = account.trading_state
        account.circuit_breaker_tripped_at = timezone.now()
        account.circuit_breaker_reason = reason
        account.trading_state = TradingState.HALTED
        account.save(update_fields=["circuit_breaker_tripped_at", "circuit_breaker_reason", "trading_state"])
        audit_record(action=AuditEvent.Action.CIRCUIT_BREAKER_TRIP, account=account, state_before=before,
                     state_after=TradingState.HALTED, details={"reason": reason})
    return account


def circuit_breaker_reset(*, account_id: int, user, client_address: str | None = None) -> Account:
    _require(user, "trading.reset_circuit_breaker", "Resetting the circuit breaker")
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        if not account.circuit_breaker_tripped:
            raise ValidationError("The circuit breaker is not tripped.")
        before = account.trading_state
        reason = account.circuit_breaker_reason
        account.circuit_breaker_tripped_at = None
        account.circuit_breaker_reason = ""
        account.trading_state = TradingState.ACTIVE
        account.save(update_fields=["circuit_breaker_tripped_at", "circuit_breaker_reason", "trading_state"])
        audit_record(action=AuditEvent.Action.CIRCUIT_BREAKER_RESET, user=user, account=account,
                     state_before=before, state_after=TradingState.ACTIVE, client_address=client_address,
                     details={"tripped_for": reason})
    return account


def trading_state_set(*, account_id: int, state: str, user, client_address: str | None = None) -> Account:
    _require(user, "trading.set_trading_state", "Changing the trading state")
    if state not in TradingState.values:
        raise ValidationError({"trading_state": f"Unknown trading state {state!r}; use one of {TradingState.values}."})
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        if account.circuit_breaker_tripped and state != TradingState.HALTED:
            raise ValidationError("The circuit breaker is tripped: reset it first.")
        before = account.trading_state
        account.trading_state = state
        account.save(update_fields=["trading_state"])
        audit_record(action=AuditEvent.Action.TRADING_STATE, user=user, account=account, state_before=before,
                     state_after=state, client_address=client_address)
    return account


def kill_switch_set(*, engaged: bool, user, reason: str = "", client_address: str | None = None) -> KillSwitch:
    _require(user, "trading.engage_kill_switch", "Engaging or releasing the kill switch")
    with transaction.atomic():
        switch, _ = KillSwitch.objects.select_for_update().get_or_create(pk=1)
        before = switch.engaged
        switch.engaged = bool(engaged)
        switch.changed_at = timezone.now()
        switch.changed_by = user
        switch.reason = reason
        switch.save()
        audit_record(action=AuditEvent.Action.KILL_SWITCH, user=user,
                     state_before="engaged" if before else "released",
                     state_after="engaged" if engaged else "released", client_address=client_address,
                     details={"reason": reason})
    return switch
