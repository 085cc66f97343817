"""Model registry services: artifacts through Django's storage API with SHA-256, promote, roll back.

Promote and roll back are audited in the trading app's audit trail (who, when, the version before and after, the
market, the client's address when there is one) in the same transaction as the change; a refused attempt is audited
once its transaction has rolled back.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from trading import services as trading_services

from .events import model_version_promoted
from .models import ModelVersion, Retraining

logger = logging.getLogger(__name__)
PROMOTE_PERMISSION = "mlcore.promote_modelversion"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why."""


class ArtifactError(RegistryError):
    """An artifact is missing or its bytes do not match the recorded SHA-256."""


def _sha256(path_or_handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: path_or_handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def artifacts_store(*, version: ModelVersion, folder: Path) -> dict[str, str]:
    """Copy every file under `folder` into storage under a root unique to the version; record their hashes."""
    root = f"models/{version.instrument.symbol}/{version.timeframe}/v{version.pk}-{uuid.uuid4().hex[:8]}"
    hashes, saved_names = {}, []
    try:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            with path.open("rb") as handle:
                hashes[relative] = _sha256(handle)
                handle.seek(0)
                saved = default_storage.save(f"{root}/{relative}", File(handle))
            saved_names.append(saved)
            if saved != f"{root}/{relative}":  # the root is fresh, so storage must not have renamed anything
                raise ArtifactError(f"storage renamed {relative} to {saved}")
    except BaseException:
        # No partial version: the files already saved go too (the caller rolls back the row).
        for name in saved_names:
            default_storage.delete(name)
        raise
    version.artifact_root, version.artifacts = root, hashes
    version.save(update_fields=["artifact_root", "artifacts"])
    return hashes


def artifacts_fetch(*, version: ModelVersion, dest: Path) -> Path:
    """Copy the version's artifacts from storage into `dest`, checking each SHA-256; ArtifactError if any is off."""
    if not version.artifacts:
        raise ArtifactError(f"model version {version.pk} has no artifacts")
    for relative, expected in version.artifacts.items():
        name = f"{version.artifact_root}/{relative}"
        if not default_storage.exists(name):
            raise ArtifactError(f"model version {version.pk}: artifact {relative} is missing from storage")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(name, "rb") as source, target.open("wb") as copy:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                copy.write(chunk)
        with target.open("rb") as handle:
            actual = _sha256(handle)
        if actual != expected:
            raise ArtifactError(
                f"model version {version.pk}: artifact {relative} is corrupted (sha256 {actual[:12]}…, "
                f"expected {expected[:12]}…)"
            )
    return dest


def artifacts_verify(*, version: ModelVersion) -> None:
    """Raise ArtifactError unless every artifact is present with its recorded hash (and there is at least one)."""
    with tempfile.TemporaryDirectory(prefix="minhos-verify-") as folder:
        artifacts_fetch(version=version, dest=Path(folder))


def _permission_check(user, action: str) -> None:
    # No user is the system itself (training, the `models` command run by whoever has the shell): nothing to check.
    if user is not None and (not user.is_authenticated or not user.has_perm(PROMOTE_PERMISSION)):
        raise trading_services.PermissionRefused(f"{action} needs the permission {PROMOTE_PERMISSION}.")


def _audit(change: str, *, user, instrument, timeframe: str, before: int | None, after: int | None, via: str,
           client_address: str | None, refused: str = "") -> None:
    trading_services.model_version_audit_record(
        change=change, user=user, symbol=getattr(instrument, "symbol", str(instrument or "")), timeframe=timeframe,
        version_before=before, version_after=after, via=via, client_address=client_address, refused=refused)


def model_version_promote(*, version_id: int, user=None, client_address: str | None = None,
                          via: str = "system") -> ModelVersion:
    """Make a version the active one of its market; the previous active one is retired. Artifacts are checked first.

    `user` None is the system (training, the command); a person needs mlcore.promote_modelversion. Audited.
    """
    market = {"instrument": None, "timeframe": "", "before": None}
    try:
        _permission_check(user, "Promoting a model version")
        with transaction.atomic():
            version = ModelVersion.objects.select_for_update().select_related("instrument").get(pk=version_id)
            market.update(instrument=version.instrument, timeframe=version.timeframe)
            if version.status == ModelVersion.Status.ACTIVE:
                return version
            active = ModelVersion.objects.select_for_update().filter(
                instrument=version.instrument, timeframe=version.timeframe, status=ModelVersion.Status.ACTIVE)
            market["before"] = next(iter(active.values_list("pk", flat=True)), None)
            artifacts_verify(version=version)
            now = timezone.now()
            active.update(status=ModelVersion.Status.RETIRED, retired_at=now)
            version.status, version.promoted_at, version.retired_at = ModelVersion.Status.ACTIVE, now, None
            version.save(update_fields=["status", "promoted_at", "retired_at"])
            _audit("promote", user=user, instrument=version.instrument, timeframe=version.timeframe,
                   before=market["before"], after=version.pk, via=via, client_address=client_address)
    except (PermissionDenied, RegistryError, ModelVersion.DoesNotExist) as exc:
        reason = str(exc) if not isinstance(exc, ModelVersion.DoesNotExist) else f"no model version {version_id}"
        _audit("promote", user=user, instrument=market["instrument"], timeframe=market["timeframe"],
               before=market["before"], after=version_id, via=via, client_address=client_address, refused=reason)
        raise
    # On commit, as the announcement: a promotion inside a caller's transaction that rolls back did not happen.
    transaction.on_commit(lambda: logger.info("promoted %s (%s)", version, via))
    transaction.on_commit(lambda: _announce_promotion(version.pk))
    return version


def _announce_promotion(version_id: int) -> None:
    for receiver, error in model_version_promoted.send_robust(sender=ModelVersion, version_id=version_id):
        if isinstance(error, Exception):
            logger.error("promotion of v%s: receiver %s failed: %r", version_id, receiver, error,
                         exc_info=(type(error), error, error.__traceback__))


def model_version_rollback(*, instrument, timeframe: str, user=None, client_address: str | None = None,
                           via: str = "system") -> ModelVersion:
    """Retire the active version and re-activate the one that was active before it.

    "Before it" is the version its promotion retired (promote stamps both with the same instant), so a version
    rolled back from is never restored by a later rollback, and successive rollbacks walk back the promotions.
    `user` None is the system (the command); a person needs mlcore.promote_modelversion. Audited.
    """
    versions = {"current": None, "previous": None}
    try:
        _permission_check(user, "Rolling back a model version")
        with transaction.atomic():
            current = (
                ModelVersion.objects.select_for_update()
                .filter(instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.ACTIVE)
                .first()
            )
            if current is None:
                raise RegistryError(f"{instrument} {timeframe}: no active model version to roll back")
            versions["current"] = current.pk
            previous = (
                ModelVersion.objects.select_for_update()
                .filter(instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.RETIRED,
                        promoted_at__isnull=False, retired_at=current.promoted_at)
                .order_by("-promoted_at")
                .first()
            )
            if previous is None:
                raise RegistryError(f"{instrument} {timeframe}: no earlier active version to roll back to")
            versions["previous"] = previous.pk
            artifacts_verify(version=previous)
            now = timezone.now()
            current.status, current.retired_at = ModelVersion.Status.RETIRED, now
            current.save(update_fields=["status", "retired_at"])
            previous.status, previous.retired_at = ModelVersion.Status.ACTIVE, None
            previous.save(update_fields=["status", "retired_at"])
            _audit("rollback", user=user, instrument=instrument, timeframe=timeframe, before=current.pk,
                   after=previous.pk, via=via, client_address=client_address)
            # The retraining that promoted the version rolled back from keeps the fact on its record.
            who = getattr(user, "get_username", lambda: "the system")()
            Retraining.objects.filter(challenger_id=current.pk, status=Retraining.Status.PROMOTED).update(
                status=Retraining.Status.ROLLED_BACK,
                note=f"rolled back to v{previous.pk} by {who} via {via} at {now:%Y-%m-%d %H:%M:%S} UTC")
    except (PermissionDenied, RegistryError) as exc:
        _audit("rollback", user=user, instrument=instrument, timeframe=timeframe, before=versions["current"],
               after=versions["previous"], via=via, client_address=client_address, refused=str(exc))
        raise
    transaction.on_commit(lambda: logger.info("rolled back %s %s from v%s to v%s (%s)", instrument, timeframe,
                                              current.pk, previous.pk, via))
    transaction.on_commit(lambda: _announce_promotion(previous.pk))
    return previous
