"""Writes of accounts and their controls: configuration, auto-trading, circuit breaker, kill switch, trading state;
and the audit trail every control writes to (the model registry's promotions and roll-backs too).

Every change a person makes is audited (who, when, what, before and after, from which address) in the same
transaction as the change itself, so there is never a change without its record or a record without its change.
Every refused attempt (a missing permission, a value out of range, a control that cannot act now) is audited as
`refused` after the refused change's transaction has rolled back, so the record of the attempt survives it. (A caller
that wraps the call in a transaction of its own and rolls that back takes the record with it.)
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from minhos_site.database_outage import is_database_unreachable

from ..domain.config_ranges import CONFIG_RANGES
from ..models import Account, AuditEvent, Instrument, KillSwitch, TradingConfig, TradingState

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNT = "paper"
KILL_SWITCH_REASON_MAX = 1000
# A refused attempt's record keeps what was asked for, cut short: the audit trail is not a store for any body sent.
_REQUESTED_MAX_FIELDS, _REQUESTED_MAX_CHARS = 20, 80


class PermissionRefused(PermissionDenied):
    """The user lacks the permission this action needs (the message names it)."""


def _permission_check(user, permission: str, action: str) -> None:
    if user is None or not user.is_authenticated or not user.has_perm(permission):
        raise PermissionRefused(f"{action} needs the permission {permission}.")


def _require(user, permission: str, action: str, *, control: str = "", client_address: str | None = None,
             details: dict | None = None) -> None:
    """Refuse unless the user has the permission, and audit the refused attempt. Call it before any transaction."""
    with refusals_audited(control=control, user=user, client_address=client_address, details=details):
        _permission_check(user, permission, action)


def audit_record(*, action: str, user=None, account: Account | None = None, recommendation=None,
                 state_before: str = "", state_after: str = "", client_address: str | None = None,
                 details: dict | None = None) -> AuditEvent:
    attempt = _attempt.get()
    if attempt is not None and action == AuditEvent.Action.REFUSED:
        attempt.recorded = True  # the attempt's edge need not record it again
    return AuditEvent.objects.create(
        action=action, user=user if user is not None and user.is_authenticated else None, account=account,
        recommendation=recommendation, state_before=state_before, state_after=state_after,
        client_address=client_address or None, details=storable(details or {}),
    )


def storable(value):
    """`value` with every NUL character written out as the text "\\x00": PostgreSQL's text and jsonb cannot hold
    one, and a refused request's body (a setting named "\\x00K") is recorded as it came, not turned into a 500."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def audit_refusal_record(*, control: str, user, reason: str, account_id: int | None = None,
                         client_address: str | None = None, details: dict | None = None) -> AuditEvent:
    """Record a refused attempt at a control (`control`: the audit action it would have been, e.g. "kill_switch",
    or "" when the caller does not say). Write it outside the refused change's transaction."""
    # Linked to a live account only: a backtest's account is no one's to control, and its records go with its run.
    account = Account.objects.live().filter(pk=account_id).first() if account_id is not None else None
    if account_id is not None and account is None:
        details = {**(details or {}), "account": account_id}
    return audit_record(action=AuditEvent.Action.REFUSED, user=user, account=account, client_address=client_address,
                        details={"control": control, "reason": reason[:1000], **(details or {})})


# --- one attempt at a control, through an edge --------------------------------------------------------------------

@dataclass
class ControlAttempt:
    """A person's attempt at a control (an API write, a page's action), from its request to its answer."""

    control: str
    recorded: bool = False  # a refusal of it is in the audit trail (written by a service, or here)
    refused: str = ""  # why the edge refused it (its answer was a 4xx, or a page's error message)
    details: dict = field(default_factory=dict)

    def refuse(self, reason: str, **details) -> None:
        self.refused = reason or "refused"
        self.details.update(details)


_attempt: ContextVar[ControlAttempt | None] = ContextVar("minhos_control_attempt", default=None)


def control_refused(reason: str, **details) -> None:
    """The edge serving the current attempt refused it (e.g. a page that says why with a message and redirects)."""
    attempt = _attempt.get()
    if attempt is not None:
        attempt.refuse(reason, **details)


@contextmanager
def control_attempt(*, control: str, user: Callable[[], object], client_address: str | None,
                    account_id: int | None = None, details: dict | None = None):
    """One attempt at a control, around the edge's whole handling of it (its permission checks included). If it is
    refused, by any step (the framework's authentication or permission, the body, the service, a crash), and no
    service recorded that refusal, it is recorded here once: who (`user()`, read at the end: the API authenticates
    inside), when, from where, what and why. Written after every transaction of the attempt has ended, so nothing
    the attempt rolled back takes its record along; a failure to write it is logged, never raised over the answer."""
    attempt = ControlAttempt(control=control, details=dict(details or {}))
    token = _attempt.set(attempt)
    try:
        yield attempt
    except Exception as exc:
        if not attempt.recorded:
            refused = isinstance(exc, (PermissionDenied, ObjectDoesNotExist))
            reason = ((str(exc) or type(exc).__name__) if refused
                      else f"the attempt failed: {type(exc).__name__}: {str(exc)[:200]}")
            _attempt_record(attempt, user=user, reason=reason, account_id=account_id, client_address=client_address)
        raise
    finally:
        _attempt.reset(token)
    if attempt.refused and not attempt.recorded:
        _attempt_record(attempt, user=user, reason=attempt.refused, account_id=account_id,
                        client_address=client_address)


def _attempt_record(attempt: ControlAttempt, *, user, reason: str, account_id, client_address) -> None:
    try:
        who = user()
    except Exception:  # credentials that do not authenticate: an attempt without a user
        who = None
    try:
        audit_refusal_record(control=attempt.control, user=who, reason=reason, account_id=account_id,
                             client_address=client_address, details=storable(attempt.details))
        attempt.recorded = True
    except Exception as exc:
        if is_database_unreachable(exc):  # one line: the outage is told once, its traceback says nothing more
            logger.error("could not audit a refused attempt at %s (%s): the database cannot be reached",
                         attempt.control, reason)
        else:
            logger.exception("could not audit a refused attempt at %s (%s)", attempt.control, reason)


def _refusal_reason(exc: Exception) -> tuple[str, dict]:
    if isinstance(exc, ValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        # A body of a thousand unknown settings gets a thousand errors back, but its record keeps the first few.
        errors = dict(list(errors.items())[:_REQUESTED_MAX_FIELDS])
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items()), {"errors": errors}
    return str(exc), {}


@contextmanager
def refusals_audited(*, control: str, user, client_address: str | None,
                     account_id: int | Callable[[], int | None] | None = None, details: dict | None = None,
                     refusals: tuple[type[BaseException], ...] = ()):
    """Audit a refused attempt (a missing permission, an invalid value, an unknown row, or one of the service's own
    `refusals`) once the refused change's transaction has rolled back: enter this outside `transaction.atomic()`,
    around the whole service. `account_id` may be a function, looked up only when there is a refusal to record."""
    try:
        yield
    except (PermissionDenied, ValidationError, ObjectDoesNotExist, *refusals) as exc:
        reason, more = _refusal_reason(exc)
        if callable(account_id):
            account_id = account_id()
        audit_refusal_record(control=control, user=user, reason=reason, account_id=account_id,
                             client_address=client_address, details={**(details or {}), **more})
        raise


def _live_account_locked(account_id: int) -> Account:
    """The live account, locked (FOR UPDATE). A backtest's own account is refused by name: its run controls it."""
    try:
        return Account.objects.live().select_for_update().get(pk=account_id)
    except Account.DoesNotExist:
        private = Account.objects.filter(pk=account_id, backtest=True).exists()
        raise Account.DoesNotExist(f"There is no live account #{account_id}"
                                   + (": it is a backtest's own account." if private else ".")) from None


def _requested(changes) -> dict:
    """What a refused configuration change asked for, cut short."""
    if not isinstance(changes, dict):
        return {"body": repr(changes)[:_REQUESTED_MAX_CHARS]}
    return {str(name)[:_REQUESTED_MAX_CHARS]: repr(value)[:_REQUESTED_MAX_CHARS]
            for name, value in list(changes.items())[:_REQUESTED_MAX_FIELDS]}


def _boolean(name: str, value) -> bool:
    # bool("false") is True: a control is only ever switched by a real boolean.
    if not isinstance(value, bool):
        raise ValidationError({name: f"Must be true or false, got {repr(value)[:_REQUESTED_MAX_CHARS]}."})
    return value


def account_default_get() -> Account:
    """The paper account every instrument trades on unless configured otherwise (created on first use)."""
    account, _ = Account.objects.get_or_create(name=DEFAULT_ACCOUNT)
    return account


def trading_config_get(*, account: Account, instrument: Instrument) -> TradingConfig:
    """The account's settings for the instrument; created with the defaults on first use."""
    config, _ = TradingConfig.objects.get_or_create(account=account, instrument=instrument)
    return config


def trading_config_update(*, config_id: int, changes: dict, user, client_address: str | None = None) -> TradingConfig:
    """Validate and apply `changes` (setting -> value) atomically; refused whole if any value is invalid.

    Each value is parsed strictly against its range in `CONFIG_RANGES` (numbers, or numeric strings as forms send
    them; booleans are not numbers, fractions are not whole numbers, NaN and infinities are refused), so what the
    API, the admin or a script sends is held to the same rules the database checks.
    """
    with refusals_audited(control=AuditEvent.Action.CONFIG_CHANGE, user=user, client_address=client_address,
                           account_id=lambda: TradingConfig.objects.live().filter(pk=config_id).values_list(
                               "account_id", flat=True).first(),
                           details={"config": config_id, "requested": _requested(changes)}):
        _permission_check(user, "trading.change_tradingconfig", "Changing the trading configuration")
        values = trading_config_changes_parse(changes=changes)
        with transaction.atomic():
            config = TradingConfig.objects.live().select_for_update().get(pk=config_id)
            before = {name: _json(getattr(config, name)) for name in values}
            for name, value in values.items():
                setattr(config, name, value)
            config.full_clean()
            config.save()
            config.refresh_from_db()
            after = {name: _json(getattr(config, name)) for name in values}
            audit_record(action=AuditEvent.Action.CONFIG_CHANGE, user=user, account=config.account,
                         client_address=client_address,
                         details={"instrument": config.instrument.symbol, "before": before, "after": after})
    return config


def trading_config_changes_parse(*, changes) -> dict:
    """`changes` as setting -> value of the setting's type; ValidationError naming every unknown or bad setting."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationError('Give an object of settings to change, e.g. {"kelly_fraction": 0.5}.')
    errors, values = {}, {}
    for name, value in changes.items():
        setting = CONFIG_RANGES.get(name) if isinstance(name, str) else None
        if setting is None:
            errors[str(name)[:_REQUESTED_MAX_CHARS]] = "Not an editable setting."
            continue
        try:
            values[name] = setting.parse(value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ValidationError(errors)
    return values


def _json(value):
    return value if isinstance(value, (int, float, bool, str, type(None))) else str(value)


def auto_trading_set(*, account_id: int, enabled: bool, user, client_address: str | None = None) -> Account:
    control = AuditEvent.Action.AUTO_TRADING
    with refusals_audited(control=control, user=user, client_address=client_address, account_id=account_id,
                           details={"requested": _requested({"enabled": enabled})}):
        _permission_check(user, "trading.toggle_auto_trading", "Turning auto-trading on or off")
        enabled = _boolean("enabled", enabled)
        with transaction.atomic():
            account = _live_account_locked(account_id)
            before = account.auto_trading
            account.auto_trading = enabled
            account.save(update_fields=["auto_trading"])
            audit_record(action=control, user=user, account=account,
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
    control = AuditEvent.Action.CIRCUIT_BREAKER_RESET
    with refusals_audited(control=control, user=user, client_address=client_address, account_id=account_id):
        _permission_check(user, "trading.reset_circuit_breaker", "Resetting the circuit breaker")
        with transaction.atomic():
            account = _live_account_locked(account_id)
            if not account.circuit_breaker_tripped:
                raise ValidationError("The circuit breaker is not tripped.")
            before = account.trading_state
            reason = account.circuit_breaker_reason
            account.circuit_breaker_tripped_at = None
            account.circuit_breaker_reason = ""
            account.trading_state = TradingState.ACTIVE
            account.save(update_fields=["circuit_breaker_tripped_at", "circuit_breaker_reason", "trading_state"])
            audit_record(action=control, user=user, account=account, state_before=before,
                         state_after=TradingState.ACTIVE, client_address=client_address,
                         details={"tripped_for": reason})
    return account


def trading_state_set(*, account_id: int, state: str, user, client_address: str | None = None) -> Account:
    control = AuditEvent.Action.TRADING_STATE
    with refusals_audited(control=control, user=user, client_address=client_address, account_id=account_id,
                           details={"requested": _requested({"trading_state": state})}):
        _permission_check(user, "trading.set_trading_state", "Changing the trading state")
        if not isinstance(state, str) or state not in TradingState.values:
            raise ValidationError({"trading_state": f"Unknown trading state {repr(state)[:_REQUESTED_MAX_CHARS]}; "
                                                    f"use one of {TradingState.values}."})
        with transaction.atomic():
            account = _live_account_locked(account_id)
            if account.circuit_breaker_tripped and state != TradingState.HALTED:
                raise ValidationError("The circuit breaker is tripped: reset it first.")
            before = account.trading_state
            account.trading_state = state
            account.save(update_fields=["trading_state"])
            audit_record(action=control, user=user, account=account, state_before=before, state_after=state,
                         client_address=client_address)
    return account


def kill_switch_set(*, engaged: bool, user, reason: str = "", client_address: str | None = None) -> KillSwitch:
    control = AuditEvent.Action.KILL_SWITCH
    with refusals_audited(control=control, user=user, client_address=client_address,
                           details={"requested": _requested({"engaged": engaged})}):
        _permission_check(user, "trading.engage_kill_switch", "Engaging or releasing the kill switch")
        engaged = _boolean("engaged", engaged)
        if not isinstance(reason, str) or len(reason) > KILL_SWITCH_REASON_MAX or "\x00" in reason:
            raise ValidationError({"reason": f"Must be text of at most {KILL_SWITCH_REASON_MAX} characters, "
                                             "without NUL characters."})
        with transaction.atomic():
            switch, _ = KillSwitch.objects.select_for_update().get_or_create(pk=1)
            before = switch.engaged
            switch.engaged = engaged
            switch.changed_at = timezone.now()
            switch.changed_by = user
            switch.reason = reason
            switch.save()
            audit_record(action=control, user=user, state_before="engaged" if before else "released",
                         state_after="engaged" if engaged else "released", client_address=client_address,
                         details={"reason": reason})
    return switch


_MODEL_VERSION_CHANGES = {"promote": AuditEvent.Action.MODEL_PROMOTE, "rollback": AuditEvent.Action.MODEL_ROLLBACK}


def model_version_audit_record(*, change: str, user, symbol: str, timeframe: str, version_before: int | None,
                               version_after: int | None, via: str, client_address: str | None = None,
                               refused: str = "") -> AuditEvent:
    """A model version promoted or rolled back (`change`: "promote" or "rollback") by the registry, recorded in the
    registry's transaction; or, with `refused` saying why, the refused attempt, recorded after its rollback.
    `via` says which door it came through (api, admin, command, training) and, for a command, who ran it."""
    action = _MODEL_VERSION_CHANGES[change]
    details = {"symbol": symbol, "timeframe": timeframe, "version_before": version_before,
               "version_after": version_after, "via": via}
    if refused:
        return audit_refusal_record(control=action, user=user, reason=refused, client_address=client_address,
                                    details=details)
    return audit_record(action=action, user=user, client_address=client_address, details=details,
                        state_before=f"v{version_before}" if version_before else "",
                        state_after=f"v{version_after}" if version_after else "")
