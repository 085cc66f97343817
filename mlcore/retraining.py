"""Retraining: a challenger trained on the latest bars, scored against the champion on the same unseen bars, run in
shadow when the market's policy says so, and promoted, proposed or kept by the rule in `mlcore.domain.promotion`.

Every retraining is one `Retraining` row from its trigger (the nightly schedule, monitoring's degradation hook, a
person) to its decision, with both models' figures and the reason. At most one is in flight per market (queued,
training or in shadow: a unique constraint, so two triggers at once start one); the degradation hook also waits
out the market's cooldown; none starts before `min_new_bars` bars have come in since the newest version's last
training bar.

The bars (n stored, oldest first; H the label horizon):
    stretch   the newest L = min(holdout_bars + H, half the bars after the champion's last training bar) bars, of
              which the first L - H have labels: both models are scored there, and neither trained on any of it
              (at most half of the new bars: the challenger learns from the rest);
    window    the `window_bars` bars before the stretch: the challenger's training bars. Its last H bars have
              no label inside the window (their barriers would reach into the stretch), so nothing it learns
              from looks at the stretch (the purge).
The challenger that ships is the one that was scored (trained on the window, not refitted on the stretch).
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from minhos_site.text import control_character_problem
from trading import selectors as trading_selectors
from trading import services as trading_services

from . import registry, services
from .domain.heartbeat import Part, silent_part, stopped_reason
from .domain.labels import SIDES, LabelConfig
from .domain.promotion import RULE_TEXT, RULE_VERSION, paired_log_loss_test, promotion_decision
from .errors import TrainingError
from .events import retraining_decided
from .heartbeats import retraining_heartbeat, retraining_where
from .models import ModelVersion, Prediction, Retraining, RetrainingHeartbeat, RetrainingPolicy

if TYPE_CHECKING:
    from .training import TrainedModel

logger = logging.getLogger(__name__)
# A retraining still "training" this long after it was asked for was killed without an end (longer than a training's
# hard time limit, 3 h 5 min, plus its wait in the queue): it is failed, with an alert, and no longer blocks the market.
# A killed worker is found much sooner by its silent heartbeat (retrainings_silent_fail); this is the backstop for a
# retraining no process ever took up.
STALE_HOURS = 6
MIN_SCORED_BARS = 100


class RetrainingRefused(Exception):
    """An approval or rejection that cannot be done; the message says why."""


def policy_get(*, instrument, timeframe: str) -> RetrainingPolicy:
    policy, _ = RetrainingPolicy.objects.get_or_create(instrument=instrument, timeframe=timeframe)
    return policy


def _policy_dict(policy: RetrainingPolicy) -> dict:
    return {field: getattr(policy, field) for field in ("promotion", "scheduled", "window_bars", "holdout_bars",
                                                         "min_new_bars", "shadow_bars", "cooldown_minutes")}


# --------------------------------------------------------------------------------------------------- requests

def retraining_request(*, symbol: str, timeframe: str, trigger: str, requested_by: str, reason: str = "",
                       now: datetime | None = None, run: str = "queue") -> Retraining:
    """Record a retraining and start it, or record why it was skipped (one in flight, the cooldown after an
    automatic one, too few new bars). `run`: "queue" (a task on the training queue in deployment; a background
    thread in embedded mode), "inline" (here, now: the command), or "none" (recorded as queued only)."""
    instrument = trading_selectors.instrument_get(symbol=symbol)
    if trigger not in Retraining.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}; use one of {', '.join(Retraining.Trigger.values)}")
    now = now or timezone.now()
    policy = policy_get(instrument=instrument, timeframe=timeframe)
    champion = ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe,
                                           status=ModelVersion.Status.ACTIVE).first()
    _abandoned_clear(instrument=instrument, timeframe=timeframe, now=now)
    retrainings_silent_fail(now=now, instrument=instrument, timeframe=timeframe)
    record = Retraining(instrument=instrument, timeframe=timeframe, trigger=trigger, requested_by=requested_by[:150],
                        requested_at=now, reason=reason[:2000], champion=champion, policy=_policy_dict(policy))
    skip = _skip_reason(record, policy=policy, now=now)
    if skip:
        record.status, record.note = Retraining.Status.SKIPPED, skip
        record.save()
    else:
        try:
            with transaction.atomic():
                record.save()
        except IntegrityError:  # another trigger got there first: one runs
            running = Retraining.objects.filter(instrument=instrument, timeframe=timeframe,
                                                status__in=Retraining.IN_FLIGHT).first()
            record.pk = None
            record.status = Retraining.Status.SKIPPED
            record.note = (f"retraining #{running.pk} is {running.status}" if running
                           else "another retraining of the market started at the same moment")
            record.save()
    logger.log(logging.INFO if record.status == Retraining.Status.QUEUED else logging.WARNING,
               "retraining of %s %s (%s, by %s): %s%s", symbol, timeframe, trigger, requested_by, record.status,
               f" ({record.note})" if record.note else "")
    if record.status == Retraining.Status.QUEUED:
        _start(record.pk, run)
    else:
        transaction.on_commit(lambda: _announce(record.pk))
    return record


def _abandoned_clear(*, instrument=None, timeframe: str | None = None, now: datetime) -> list[int]:
    """Fail the retrainings queued or training for longer than STALE_HOURS (a killed worker, a lost task); each is
    announced (monitoring raises its alert). Returns their ids."""
    stale = Retraining.objects.filter(status__in=[Retraining.Status.QUEUED, Retraining.Status.TRAINING],
                                      requested_at__lt=now - timedelta(hours=STALE_HOURS))
    if instrument is not None:
        stale = stale.filter(instrument=instrument, timeframe=timeframe)
    ids = list(stale.values_list("pk", flat=True))
    for pk in ids:
        _fail(pk, f"abandoned: no end was recorded within {STALE_HOURS} h of the request (a killed worker or a lost task); "
                  "nothing was promoted")
    return ids


def retrainings_silent_fail(*, now: datetime | None = None, timeout_seconds: float | None = None, instrument=None,
                            timeframe: str | None = None) -> list[int]:
    """The watchdog: fail each retraining still training one of whose running parts (the run, a member fit, the
    assembly) has not beaten for `timeout_seconds` (MINHOS_TRAINING_HEARTBEAT_TIMEOUT): its worker was killed or
    hangs. Each is announced (monitoring opens its alert, with a webhook notice); the market may retrain at once.
    Returns their ids."""
    now = now or timezone.now()
    timeout = settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT if timeout_seconds is None else timeout_seconds
    rows = RetrainingHeartbeat.objects.filter(retraining__status=Retraining.Status.TRAINING, ended_at__isnull=True,
                                              beat_at__lt=now - timedelta(seconds=timeout))
    if instrument is not None:
        rows = rows.filter(retraining__instrument=instrument, retraining__timeframe=timeframe)
    parts: dict[int, list[Part]] = {}
    for row in rows:
        parts.setdefault(row.retraining_id, []).append(
            Part(part=row.part, worker=row.worker, pid=row.pid, beat_at=row.beat_at, ended_at=row.ended_at,
                 progress=row.progress))
    failed = []
    for pk, running in sorted(parts.items()):
        part = silent_part(running, now=now, timeout_seconds=timeout)
        if part is not None:
            _fail(pk, stopped_reason(part, now=now))
            failed.append(pk)
    return failed


def retrainings_advance(*, now: datetime | None = None) -> dict:
    """The periodic job: fail the retrainings and training runs whose training process went silent and the abandoned
    retrainings, decide the shadow runs whose record is complete."""
    now = now or timezone.now()
    abandoned = retrainings_silent_fail(now=now) + _abandoned_clear(now=now)
    # The training runs (`manage.py train`, `train_version`) have the same heartbeat and the same watchdog rule.
    training_runs = services.training_runs_silent_fail(now=now)
    return {"abandoned": abandoned, "decided": [record.pk for record in shadow_advance()],
            "training_runs_failed": training_runs}


def _skip_reason(record: Retraining, *, policy: RetrainingPolicy, now: datetime) -> str:
    market = dict(instrument=record.instrument, timeframe=record.timeframe)
    running = Retraining.objects.filter(**market, status__in=Retraining.IN_FLIGHT).first()
    if running is not None:
        beat = (f" (last heartbeat {running.heartbeat_at:%H:%M:%S} UTC: {running.progress})"
                if running.status == Retraining.Status.TRAINING and running.heartbeat_at else "")
        return f"retraining #{running.pk} is still {running.status}{beat}"
    if record.trigger == Retraining.Trigger.DEGRADATION:
        since = now - timedelta(minutes=policy.cooldown_minutes)
        last = Retraining.objects.filter(**market, trigger=Retraining.Trigger.DEGRADATION,
                                         requested_at__gte=since).exclude(status=Retraining.Status.SKIPPED).first()
        if last is not None:
            return (f"within the cooldown of {policy.cooldown_minutes} min after retraining #{last.pk} "
                    f"({last.requested_at:%Y-%m-%d %H:%M} UTC)")
    newest = ModelVersion.objects.filter(**market).order_by("-data_end").values_list("data_end", flat=True).first()
    new_bars = trading_selectors.bar_count(**market, after=newest)
    if new_bars < policy.min_new_bars:
        since = f" since the last training's last bar ({newest:%Y-%m-%d %H:%M} UTC)" if newest else ""
        return f"too few new bars: {new_bars}{since}, {policy.min_new_bars} needed"
    return ""


def _start(retraining_id: int, run: str) -> None:
    if run == "none":
        return
    if run == "inline":
        transaction.on_commit(lambda: retraining_run(retraining_id=retraining_id))
        return
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Embedded mode: no training worker. A thread of its own, so the web process and its periodic jobs go on.
        transaction.on_commit(lambda: threading.Thread(target=_run_in_thread, args=(retraining_id,),
                                                       name=f"retraining-{retraining_id}", daemon=True).start())
        return

    def queue():
        from celery import current_app

        try:
            current_app.send_task("mlcore.tasks.retrain", args=(retraining_id,), queue="training")
        except Exception as exc:
            _fail(retraining_id, f"could not be queued: {type(exc).__name__}: {exc}")

    transaction.on_commit(queue)


def _run_in_thread(retraining_id: int) -> None:
    try:
        retraining_run(retraining_id=retraining_id)
    except Exception:
        logger.exception("retraining #%s failed", retraining_id)  # recorded on the row by retraining_run
    finally:
        close_old_connections()


# --------------------------------------------------------------------------------------------------- the run

def retraining_run(*, retraining_id: int, progress: Callable[[str], None] | None = None,
                   distributed: bool | None = None) -> Retraining:
    """Train the challenger, score both models, decide. Runs once per retraining: only a queued one is started, so
    a redelivered task (Redis's visibility timeout, a lost worker) finds it training elsewhere, dispatched, decided
    or failed, says so in the log and does nothing. A failure is recorded (status failed, the error) and re-raised;
    the champion keeps serving, and nothing half-saved is left (the version is registered whole or not at all).
    While it runs, this process's heartbeat says so (a killed one is failed by `retrainings_silent_fail`).

    `distributed` (default: MINHOS_TRAINING_DISTRIBUTED, on in deployment mode) spreads the member fits over the
    training workers as a chord and returns at once, still "training": `retraining_collect`, the chord's body,
    assembles and decides. Otherwise everything runs here."""
    started = Retraining.objects.filter(pk=retraining_id, status=Retraining.Status.QUEUED,
                                        trained_at__isnull=True).update(status=Retraining.Status.TRAINING,
                                                                        started_at=timezone.now())
    if not started:
        record = Retraining.objects.get(pk=retraining_id)
        logger.warning("retraining #%s: not started again (a redelivered task): %s", retraining_id,
                       retraining_where(record))
        return record
    record = Retraining.objects.select_related("instrument", "champion").get(pk=retraining_id)
    if distributed is None:
        distributed = settings.MINHOS_TRAINING_DISTRIBUTED
    try:
        with retraining_heartbeat(retraining_id=record.pk, part="run", progress="reading the bars") as beat:
            def report(message: str) -> None:
                beat.progress(message)
                if progress:
                    progress(message)

            frame, window, stretch_start, config = _prepare(record)
            report(f"training the challenger on {len(window)} bars")
            if distributed:
                from celery import signature

                from .distributed import training_dispatch
                from .training import training_plan

                # By name: the tasks module imports this one.
                then = signature("mlcore.tasks.retrain_collect", args=(record.pk,))
                then.link_error(signature("mlcore.tasks.retrain_abandon", args=(record.pk,)))
                plan = training_plan(window, config)
                key = training_dispatch(plan, then=then, retraining_id=record.pk)
                Retraining.objects.filter(pk=record.pk).update(plan_key=key)
                beat.progress(f"{len(plan.units)} member fits queued for the training workers (plan {key})")
                logger.info("retraining #%s: member fits dispatched (plan %s)", record.pk, key)
                return Retraining.objects.get(pk=record.pk)
            from .training import train_model

            trained = train_model(window, config, progress=report, unit_progress=beat.progress)
            return retraining_finish(retraining_id=record.pk, trained=trained, frame=frame,
                                     stretch_start=stretch_start, config=config, progress=report)
    except BaseException as exc:
        _fail(record.pk, f"{type(exc).__name__}: {exc}")
        raise


def _late_result(record: Retraining, what: str) -> None:
    """A training's result that came after its retraining ended (failed as silent while the worker was only slow,
    or a task delivered again): not used; a failure says so on the record, never silently."""
    if record.status == Retraining.Status.FAILED:
        text = (f" | later, at {timezone.now():%H:%M:%S} UTC, {what} arrived after all: discarded (nothing "
                "registered or promoted by it)")
        if "arrived after all" not in record.error:
            Retraining.objects.filter(pk=record.pk).update(error=(record.error + text)[-4000:])
        logger.error("retraining #%s was failed (%s); %s arrived later: discarded", record.pk, record.error[:200], what)
    else:
        logger.warning("retraining #%s: %s arrived again (a redelivered task): discarded, %s", record.pk, what,
                       retraining_where(record))


def retraining_collect(*, retraining_id: int, results: list, plan_key: str) -> Retraining:
    """The body of a distributed retraining: assemble the challenger from its member fits, then score and decide on
    the same bars `_prepare` chose (read again up to the stretch's end, whatever came in since)."""
    from .distributed import training_collect, training_plan_remove

    record = Retraining.objects.select_related("instrument", "champion").get(pk=retraining_id)
    if record.status != Retraining.Status.TRAINING or record.trained_at is not None:
        training_plan_remove(plan_key)  # ended meanwhile (failed as silent or abandoned), or a redelivered body
        _late_result(record, f"the member fits of plan {plan_key}")
        return record
    try:
        with retraining_heartbeat(retraining_id=record.pk, part="collect",
                                  progress=f"assembling the challenger from {len(results)} member fits") as beat:
            trained = training_collect(plan_key, results)
            beat.progress("scoring the challenger against the champion")
            frame, stretch_start, config = _bars_again(record)
            return retraining_finish(retraining_id=record.pk, trained=trained, frame=frame,
                                     stretch_start=stretch_start, config=config, progress=beat.progress)
    except BaseException as exc:
        _fail(record.pk, f"{type(exc).__name__}: {exc}")
        raise


def retraining_abandon(*, retraining_id: int, error: str) -> None:
    """A member fit of a distributed retraining failed: the body never runs; the retraining fails (and alerts)."""
    _fail(retraining_id, f"a member fit failed: {error}")


def _config_for(record: Retraining):
    from .training import TrainConfig

    champion = record.champion
    label = LabelConfig.from_dict(champion.label_settings) if champion else LabelConfig()
    preset = champion.preset if champion else settings.MINHOS_RETRAIN_PRESET
    return TrainConfig(preset=preset, seed=champion.seed if champion else 0, label=label)


def _bars_again(record: Retraining):
    window = record.window
    frame = trading_selectors.bars_frame(instrument=record.instrument, timeframe=record.timeframe,
                                         end_at=pd.Timestamp(window["stretch_end"]).to_pydatetime())
    stretch_start = int((frame["timestamp"] < pd.Timestamp(window["stretch_start"])).sum())
    if len(frame) - stretch_start != int(window["stretch_bars"]):
        raise TrainingError(f"the bars of the comparison stretch changed while the challenger trained "
                            f"({len(frame) - stretch_start} now, {window['stretch_bars']} then)")
    return frame, stretch_start, _config_for(record)


def _prepare(record: Retraining):
    """The stored bars, the challenger's window, where the stretch starts, and the training settings (the
    champion's unless there is none). Writes the window to the record."""
    policy = record.policy
    champion = record.champion
    config = _config_for(record)
    label = config.label
    frame = trading_selectors.bars_frame(instrument=record.instrument, timeframe=record.timeframe)
    n = len(frame)
    horizon = label.horizon
    unseen = n if champion is None else int((frame["timestamp"] > pd.Timestamp(champion.data_end)).sum())
    # At most half of the new bars are held out: the challenger must learn from the other half, or it would be
    # the champion retrained on the champion's own bars.
    length = min(int(policy["holdout_bars"]) + horizon, (unseen + 1) // 2)
    if length - horizon < MIN_SCORED_BARS:
        raise TrainingError(f"too few bars unseen by the champion to score the two models: {unseen} bars after its "
                            f"last training bar, half of them held out, leave {max(length - horizon, 0)} labelled "
                            f"ones (need {MIN_SCORED_BARS} plus the {horizon}-bar label horizon)")
    stretch_start = n - length
    window = frame.iloc[max(0, stretch_start - int(policy["window_bars"])):stretch_start].reset_index(drop=True)
    record.window = {
        "train_start": _iso(window["timestamp"].iloc[0]) if len(window) else None,
        "train_end": _iso(window["timestamp"].iloc[-1]) if len(window) else None,
        "train_bars": len(window),
        "stretch_start": _iso(frame["timestamp"].iloc[stretch_start]),
        "stretch_end": _iso(frame["timestamp"].iloc[-1]),
        "stretch_bars": length,
        "label_horizon": horizon,
        "champion_data_end": _iso(champion.data_end) if champion else None,
    }
    Retraining.objects.filter(pk=record.pk).update(window=record.window)
    return frame, window, stretch_start, config


def retraining_finish(*, retraining_id: int, trained: TrainedModel, frame: pd.DataFrame, stretch_start: int,
                      config, progress: Callable[[str], None] | None = None) -> Retraining:
    """Register the challenger, score both models on the stretch, apply the rule and the market's policy."""
    from .domain.evaluation import baseline_probabilities, binary_metrics, edge_verdict
    from .training import build_dataset

    # One challenger per retraining, whatever delivers the end twice.
    claimed = Retraining.objects.filter(pk=retraining_id, status=Retraining.Status.TRAINING,
                                        trained_at__isnull=True).update(trained_at=timezone.now())
    record = Retraining.objects.select_related("instrument", "champion").get(pk=retraining_id)
    if not claimed:
        _late_result(record, "the trained challenger")
        return record
    challenger = services._version_register(instrument=record.instrument, timeframe=record.timeframe, config=config,
                                            trained=trained)
    Retraining.objects.filter(pk=record.pk).update(challenger=challenger)
    record.challenger = challenger
    if progress:
        progress(f"registered the challenger v{challenger.pk}; scoring it against the champion")
    models = {"challenger": (trained.sides, trained.seq_len)}
    if record.champion is not None:
        champion = services._load(record.champion)
        models["champion"] = (champion.sides, champion.seq_len)
    stretch = stretch_scores(frame, stretch_start=stretch_start, models=models, label=config.label)
    window = frame.iloc[:stretch_start]
    window = window.iloc[max(0, len(window) - int(record.policy["window_bars"])):].reset_index(drop=True)
    train_rows = build_dataset(window, config)
    scores = {}
    for side in SIDES:
        y = stretch["labels"][side]
        baselines = baseline_probabilities(train_rows.rows, train_rows.labels[side], stretch["rows"],
                                           momentum_col=_momentum_column(), seed=config.seed)
        baseline_metrics = {name: binary_metrics(y, p) for name, p in baselines.items()}
        entry = {"bars": int(len(y)), "baselines": baseline_metrics,
                 "walk_forward": trained.report[side]["verdict"]["statement"]}
        for role, p in stretch["p"].items():
            entry[role] = binary_metrics(y, p[side])
            entry[f"{role}_verdict"] = edge_verdict(entry[role], baseline_metrics, model_name=f"{role}'s {side} side")
        if "champion" in stretch["p"]:
            entry["paired"] = paired_log_loss_test(y, stretch["p"]["champion"][side],
                                                   stretch["p"]["challenger"][side])
        scores[side] = entry
    decision = promotion_decision(_rule_inputs(scores), has_champion=record.champion is not None)
    Retraining.objects.filter(pk=record.pk).update(scores=services._json_safe(scores), rule=RULE_TEXT,
                                                   rule_version=RULE_VERSION)
    return _apply(record.pk, decision)


def _rule_inputs(scores: dict) -> dict:
    return {side: {"challenger_edge": bool(entry["challenger_verdict"]["has_edge"]),
                   "champion_edge": bool(entry.get("champion_verdict", {}).get("has_edge")),
                   **({"paired": entry["paired"]} if "paired" in entry else {})}
            for side, entry in scores.items()}


def stretch_scores(frame: pd.DataFrame, *, stretch_start: int, models: dict, label: LabelConfig) -> dict:
    """Each model's calibrated probabilities per side on the labelled bars of the stretch (the same bars for all):
    {"labels": {side: y}, "rows": feature rows, "p": {model: {side: p}}, "index": positions in `frame`}."""
    from .domain.features import average_true_range, compute_features
    from .domain.labels import triple_barrier_labels
    from .predictors.ensemble import make_sequences

    features = compute_features(frame).to_numpy(dtype=np.float64)
    labels = triple_barrier_labels(frame, average_true_range(frame), label)
    finite = np.isfinite(features).all(axis=1)
    longest = max(seq_len for _, seq_len in models.values())
    window_ok = np.convolve(finite.astype(int), np.ones(longest, dtype=int), mode="full")[: len(finite)] == longest
    labelled = labels[list(SIDES)].notna().all(axis=1).to_numpy()
    index = np.flatnonzero(window_ok & labelled)
    index = index[index >= stretch_start]
    if len(index) < MIN_SCORED_BARS:
        raise TrainingError(f"only {len(index)} bars of the comparison stretch have features and labels "
                            f"(need {MIN_SCORED_BARS})")
    safe = np.nan_to_num(features).astype(np.float32)
    rows = features[index]
    out = {"labels": {side: labels[side].to_numpy()[index].astype(np.float64) for side in SIDES},
           "rows": rows, "p": {}, "index": index}
    for name, (sides, seq_len) in models.items():
        seqs = np.ascontiguousarray(make_sequences(safe, seq_len)[index - seq_len + 1])
        out["p"][name] = {side: sides[side].predict_proba(rows, seqs)["calibrated"] for side in SIDES}
    return out


def _momentum_column() -> int:
    from .domain.features import FEATURE_NAMES, MOMENTUM_FEATURE

    return FEATURE_NAMES.index(MOMENTUM_FEATURE)


# --------------------------------------------------------------------------------------------------- decisions

def _apply(retraining_id: int, decision, *, shadow_scores: dict | None = None) -> Retraining:
    """Record what the rule said and act on it under the market's policy: keep, run in shadow, propose or promote."""
    with transaction.atomic():
        # Locked: the watchdog failing it meanwhile (a slow worker taken for dead) waits, then finds it decided; a
        # failure that came first stands, and this result is recorded as late rather than promoted over it.
        status = Retraining.objects.select_for_update().filter(pk=retraining_id).values_list("status", flat=True)
        if status.first() not in (Retraining.Status.TRAINING, Retraining.Status.SHADOW):
            record = Retraining.objects.get(pk=retraining_id)
            _late_result(record, f"the decision on challenger v{record.challenger_id} ({decision.code})")
            return record
        return _apply_locked(retraining_id, decision, shadow_scores=shadow_scores)


def _apply_locked(retraining_id: int, decision, *, shadow_scores: dict | None) -> Retraining:
    now = timezone.now()
    record = Retraining.objects.select_related("instrument", "challenger", "champion").get(pk=retraining_id)
    update = {"decision": decision.code, "decision_reason": decision.reason}
    if shadow_scores is not None:
        update["shadow"] = services._json_safe({**record.shadow, "scores": shadow_scores, "ended_at": _iso(now)})
    if not decision.promote:
        ModelVersion.objects.filter(pk=record.challenger_id, status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.CANDIDATE)
        Retraining.objects.filter(pk=record.pk).update(status=Retraining.Status.KEPT, decided_at=now,
                                                       decided_by="automatic", **update)
    elif (shadow_scores is None and int(record.policy.get("shadow_bars") or 0) > 0
          and record.champion_id is not None):
        ModelVersion.objects.filter(pk=record.challenger_id).update(status=ModelVersion.Status.SHADOW)
        update["decision"] = ""  # not decided yet: the shadow record comes first
        Retraining.objects.filter(pk=record.pk).update(
            status=Retraining.Status.SHADOW, shadow={"bars_needed": int(record.policy["shadow_bars"]),
                                                     "started_at": _iso(now), "offline": decision.reason},
            note=f"offline: {decision.reason}", decision_reason="")
        logger.info("retraining #%s: v%s runs in shadow for %s bars", record.pk, record.challenger_id,
                    record.policy["shadow_bars"])
        return Retraining.objects.get(pk=record.pk)
    elif record.policy.get("promotion") == RetrainingPolicy.Promotion.AUTOMATIC:
        Retraining.objects.filter(pk=record.pk).update(**update)
        return _promote(record.pk, user=None, via=f"retraining #{record.pk} (automatic)", decided_by="automatic")
    else:
        ModelVersion.objects.filter(pk=record.challenger_id, status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.CANDIDATE)
        Retraining.objects.filter(pk=record.pk).update(status=Retraining.Status.PROPOSED, **update)
    transaction.on_commit(lambda: _announce(record.pk))
    logger.info("retraining #%s: %s (%s)", record.pk, decision.code, decision.reason)
    return Retraining.objects.get(pk=record.pk)


def _promote(retraining_id: int, *, user, via: str, decided_by: str, client_address: str | None = None
             ) -> Retraining:
    now = timezone.now()
    record = Retraining.objects.get(pk=retraining_id)
    try:
        registry.model_version_promote(version_id=record.challenger_id, user=user, via=via,
                                       client_address=client_address)
    except registry.RegistryError as exc:
        # E.g. an artifact that fails its hash check: refused, recorded, and monitoring raises an alert.
        ModelVersion.objects.filter(pk=record.challenger_id, status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.CANDIDATE)
        Retraining.objects.filter(pk=record.pk).update(status=Retraining.Status.REJECTED, decided_at=now,
                                                       decided_by=decided_by, error=f"promotion refused: {exc}")
        transaction.on_commit(lambda: _announce(record.pk))
        logger.error("retraining #%s: the promotion of v%s was refused: %s", record.pk, record.challenger_id, exc)
        return Retraining.objects.get(pk=record.pk)
    Retraining.objects.filter(pk=record.pk).update(status=Retraining.Status.PROMOTED, decided_at=now,
                                                   decided_by=decided_by)
    transaction.on_commit(lambda: _announce(record.pk))
    return Retraining.objects.get(pk=record.pk)


def _refusals_audited(control: str):
    """A person's refused approval or rejection (no permission, no such retraining, nothing to decide) is audited,
    whichever door it came through (page, API, admin), after its transaction has rolled back."""
    def decorate(service):
        @functools.wraps(service)
        def audited(*, retraining_id: int, user, client_address: str | None = None, **kwargs):
            with trading_services.refusals_audited(
                    control=control, user=user, client_address=client_address,
                    details={"retraining": retraining_id, **({"via": kwargs["via"]} if "via" in kwargs else {})},
                    refusals=(RetrainingRefused,)):
                return service(retraining_id=retraining_id, user=user, client_address=client_address, **kwargs)
        return audited
    return decorate


@_refusals_audited("retraining_approve")
def retraining_approve(*, retraining_id: int, user, client_address: str | None = None, via: str = "page"
                       ) -> Retraining:
    """A person with mlcore.promote_modelversion promotes a proposed challenger (audited by the registry). Refused
    when the proposal is not open, or when the champion it was compared with is no longer the active version."""
    registry._permission_check(user, "Approving a promotion")
    with transaction.atomic():
        record = Retraining.objects.select_for_update().get(pk=retraining_id)
        if record.status != Retraining.Status.PROPOSED:
            raise RetrainingRefused(f"retraining #{record.pk} is {record.status}, not proposed: nothing to approve")
        active = ModelVersion.objects.filter(instrument_id=record.instrument_id, timeframe=record.timeframe,
                                             status=ModelVersion.Status.ACTIVE).values_list("pk", flat=True).first()
        if active != record.champion_id:
            raise RetrainingRefused(
                f"retraining #{record.pk} compared v{record.challenger_id} with v{record.champion_id}, but the active "
                f"version is now {f'v{active}' if active else 'none'}: the comparison is stale; retrain again")
        name = getattr(user, "get_username", lambda: "system")()
        return _promote(record.pk, user=user, via=f"retraining #{record.pk} ({via})", decided_by=name,
                        client_address=client_address)


@_refusals_audited("retraining_reject")
def retraining_reject(*, retraining_id: int, user, client_address: str | None = None, note: str = "") -> Retraining:
    registry._permission_check(user, "Rejecting a promotion")
    problem = control_character_problem(note or "", text=True)
    if problem:  # a NUL in the page's note was a 500 from PostgreSQL
        raise RetrainingRefused(f"the note is refused: {problem}")
    with transaction.atomic():
        record = Retraining.objects.select_for_update().get(pk=retraining_id)
        if record.status not in (Retraining.Status.PROPOSED, Retraining.Status.SHADOW):
            raise RetrainingRefused(f"retraining #{record.pk} is {record.status}: nothing to reject")
        ModelVersion.objects.filter(pk=record.challenger_id, status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.CANDIDATE)
        Retraining.objects.filter(pk=record.pk).update(
            status=Retraining.Status.REJECTED, decided_at=timezone.now(),
            decided_by=getattr(user, "get_username", lambda: "system")(), note=note[:2000])
    transaction.on_commit(lambda: _announce(record.pk))
    return Retraining.objects.get(pk=record.pk)


def _fail(retraining_id: int, error: str) -> None:
    now = timezone.now()
    record = Retraining.objects.filter(pk=retraining_id).values_list("challenger_id", flat=True).first()
    if record:
        ModelVersion.objects.filter(pk=record, status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.CANDIDATE)
    # A retraining that already reached a decision keeps it (a late error of a redelivered task changes nothing); one
    # already failed keeps its first reason (the watchdog's, say), a later error is added to it.
    if not Retraining.objects.filter(pk=retraining_id, status__in=Retraining.IN_FLIGHT).update(
            status=Retraining.Status.FAILED, error=error[:4000], decided_at=now):
        first = Retraining.objects.filter(pk=retraining_id, status=Retraining.Status.FAILED).values_list(
            "error", flat=True).first()
        if first is not None and error.removeprefix("a member fit failed: ") not in first:
            Retraining.objects.filter(pk=retraining_id).update(error=f"{first} | then: {error}"[:4000])
    logger.error("retraining #%s failed: %s", retraining_id, error)
    transaction.on_commit(lambda: _announce(retraining_id))


def _announce(retraining_id: int) -> None:
    for receiver, error in retraining_decided.send_robust(sender=Retraining, retraining_id=retraining_id):
        if isinstance(error, Exception):
            logger.error("retraining #%s: receiver %s failed: %r", retraining_id, receiver, error,
                         exc_info=(type(error), error, error.__traceback__))


# --------------------------------------------------------------------------------------------------- shadow

def shadow_advance(*, retraining_id: int | None = None) -> list[Retraining]:
    """Decide every shadow run whose record is long enough: the live bars both the champion and the challenger
    predicted, outcomes resolved, compared with the paired test; the offline conditions must still hold."""
    decided = []
    runs = Retraining.objects.filter(status=Retraining.Status.SHADOW)
    if retraining_id is not None:
        runs = runs.filter(pk=retraining_id)
    for record in runs.select_related("instrument"):
        active = ModelVersion.objects.filter(instrument_id=record.instrument_id, timeframe=record.timeframe,
                                             status=ModelVersion.Status.ACTIVE).values_list("pk", flat=True).first()
        if active != record.champion_id:
            ModelVersion.objects.filter(pk=record.challenger_id, status=ModelVersion.Status.SHADOW).update(
                status=ModelVersion.Status.CANDIDATE)
            Retraining.objects.filter(pk=record.pk).update(
                status=Retraining.Status.REJECTED, decided_at=timezone.now(), decided_by="automatic",
                decision="stale", decision_reason=f"the active version changed to v{active} during the shadow run: "
                                                  f"the comparison with v{record.champion_id} no longer applies")
            transaction.on_commit(lambda pk=record.pk: _announce(pk))
            decided.append(record)
            continue
        pairs = shadow_pairs(champion_id=record.champion_id, challenger_id=record.challenger_id)
        needed = int(record.shadow.get("bars_needed") or 0)
        Retraining.objects.filter(pk=record.pk).update(shadow={**record.shadow, "resolved": len(pairs["y_long"])})
        if len(pairs["y_long"]) < needed:
            continue
        shadow_scores = {side: paired_log_loss_test(pairs[f"y_{side}"], pairs[f"champion_{side}"],
                                                    pairs[f"challenger_{side}"]) for side in SIDES}
        decision = promotion_decision(_rule_inputs(record.scores), has_champion=True, shadow=shadow_scores)
        decided.append(_apply(record.pk, decision, shadow_scores=shadow_scores))
    return decided


def shadow_pairs(*, champion_id: int, challenger_id: int) -> dict[str, np.ndarray]:
    """The bars both versions predicted, with resolved outcomes: labels and each version's p per side."""
    def resolved(version_id):
        rows = (Prediction.objects.filter(backtest=False, version_id=version_id, outcome_status=Prediction.OutcomeStatus.RESOLVED)
                .values_list("bar_id", "p_long", "p_short", "outcome_long", "outcome_short"))
        return {row[0]: row[1:] for row in rows}

    champion, challenger = resolved(champion_id), resolved(challenger_id)
    common = sorted(set(champion) & set(challenger))
    take_profit = Prediction.Outcome.TAKE_PROFIT
    return {
        "bar_ids": np.array(common, dtype=np.int64),
        "y_long": np.array([champion[b][2] == take_profit for b in common], dtype=np.float64),
        "y_short": np.array([champion[b][3] == take_profit for b in common], dtype=np.float64),
        "champion_long": np.array([champion[b][0] for b in common], dtype=np.float64),
        "champion_short": np.array([champion[b][1] for b in common], dtype=np.float64),
        "challenger_long": np.array([challenger[b][0] for b in common], dtype=np.float64),
        "challenger_short": np.array([challenger[b][1] for b in common], dtype=np.float64),
    }


# --------------------------------------------------------------------------------------------------- schedule

def scheduled_retrainings(*, now: datetime | None = None) -> list[Retraining]:
    """The nightly trigger: one retraining request per market that has a model and a policy with the schedule on
    (each is recorded, started or skipped with its reason)."""
    markets = set(ModelVersion.objects.values_list("instrument__symbol", "timeframe").distinct())
    off = set(RetrainingPolicy.objects.filter(scheduled=False).values_list("instrument__symbol", "timeframe"))
    return [retraining_request(symbol=symbol, timeframe=timeframe, trigger=Retraining.Trigger.SCHEDULE,
                               requested_by="schedule", reason="nightly schedule", now=now)
            for symbol, timeframe in sorted(markets - off)]


# --------------------------------------------------------------------------------------------------- helpers

def _iso(value) -> str | None:
    if value is None:
        return None
    return pd.Timestamp(value).isoformat()


def retraining_payload(record: Retraining) -> dict:
    """What the page, the API and the command show of a retraining."""
    sides = {}
    for side, entry in (record.scores or {}).items():
        sides[side] = {
            "bars": entry.get("bars"),
            "challenger": _figures(entry.get("challenger")),
            "champion": _figures(entry.get("champion")),
            "challenger_verdict": (entry.get("challenger_verdict") or {}).get("statement"),
            "champion_verdict": (entry.get("champion_verdict") or {}).get("statement"),
            "paired": entry.get("paired"),
        }
    return {
        "id": record.pk, "symbol": record.instrument.symbol, "timeframe": record.timeframe,
        "trigger": record.trigger, "requested_by": record.requested_by, "requested_at": _iso(record.requested_at),
        "status": record.status, "champion": record.champion_id, "challenger": record.challenger_id,
        "decision": record.decision, "reason": record.decision_reason or record.note or record.error,
        "decided_by": record.decided_by, "decided_at": _iso(record.decided_at), "window": record.window,
        "sides": sides, "shadow": record.shadow, "rule": record.rule, "rule_version": record.rule_version,
        "policy": record.policy, "error": record.error, "note": record.note,
        "heartbeat_at": _iso(record.heartbeat_at), "progress": record.progress,
        "parts": _parts(record) if record.status == Retraining.Status.TRAINING else [],
    }


def _parts(record: Retraining) -> list[dict]:
    """The processes working on a retraining in training, each with its last beat and progress."""
    return [{"part": p.part, "worker": p.worker, "pid": p.pid, "started_at": _iso(p.started_at),
             "beat_at": _iso(p.beat_at), "ended_at": _iso(p.ended_at), "progress": p.progress}
            for p in record.heartbeats.all()]


def _figures(metrics: dict | None) -> dict | None:
    if not metrics:
        return None
    return {key: metrics.get(key) for key in ("log_loss", "brier", "ece", "roc_auc", "accuracy", "n")}
