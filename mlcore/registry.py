"""Model registry services: artifacts through Django's storage API with SHA-256, promote, roll back."""
from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from .models import ModelVersion

logger = logging.getLogger(__name__)


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


def model_version_promote(*, version_id: int) -> ModelVersion:
    """Make a version the active one of its market; the previous active one is retired. Artifacts are checked first."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("instrument").get(pk=version_id)
        if version.status == ModelVersion.Status.ACTIVE:
            return version
        artifacts_verify(version=version)
        now = timezone.now()
        (
            ModelVersion.objects.select_for_update()
            .filter(instrument=version.instrument, timeframe=version.timeframe, status=ModelVersion.Status.ACTIVE)
            .update(status=ModelVersion.Status.RETIRED, retired_at=now)
        )
        version.status, version.promoted_at, version.retired_at = ModelVersion.Status.ACTIVE, now, None
        version.save(update_fields=["status", "promoted_at", "retired_at"])
    logger.info("promoted %s", version)
    return version


def model_version_rollback(*, instrument, timeframe: str) -> ModelVersion:
    """Retire the active version and re-activate the one that was active before it.

    "Before it" is the version its promotion retired (promote stamps both with the same instant), so a version
    rolled back from is never restored by a later rollback, and successive rollbacks walk back the promotions.
    """
    with transaction.atomic():
        current = (
            ModelVersion.objects.select_for_update()
            .filter(instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.ACTIVE)
            .first()
        )
        if current is None:
            raise RegistryError(f"{instrument} {timeframe}: no active model version to roll back")
        previous = (
            ModelVersion.objects.select_for_update()
            .filter(instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.RETIRED,
                    promoted_at__isnull=False, retired_at=current.promoted_at)
            .order_by("-promoted_at")
            .first()
        )
        if previous is None:
            raise RegistryError(f"{instrument} {timeframe}: no earlier active version to roll back to")
        artifacts_verify(version=previous)
        now = timezone.now()
        current.status, current.retired_at = ModelVersion.Status.RETIRED, now
        current.save(update_fields=["status", "retired_at"])
        previous.status, previous.retired_at = ModelVersion.Status.ACTIVE, None
        previous.save(update_fields=["status", "retired_at"])
    logger.info("rolled back %s %s from v%s to v%s", instrument, timeframe, current.pk, previous.pk)
    return previous
