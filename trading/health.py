"""What /healthz reports: the database, Redis (deployment), the Celery queues' workers (from their heartbeats), and
this process's view of the live stream. Each check is bounded in time and reports rather than raises."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from mlcore import selectors as ml_selectors

from . import realtime
from .models import WorkerHeartbeat

REDIS_TIMEOUT_SECONDS = 1.0
# Beat sends each queue a heartbeat task every 5 s (settings.CELERY_BEAT_SCHEDULE): six missed ones mean nobody
# serves the queue (settings.MINHOS_WORKER_STALE_SECONDS).
WORKER_STALE_SECONDS = 30.0
TRAINING_QUEUE = "training"

_redis_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


@dataclass(frozen=True)
class HealthReport:
    components: dict[str, dict] = field(default_factory=dict)
    stream: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(component["status"] != "down" for component in self.components.values())

    def as_dict(self) -> dict:
        return {"status": "ok" if self.ok else "down", "components": self.components, "stream": self.stream}


def health_report() -> HealthReport:
    components = {"database": _database()}
    if settings.REDIS_URL:
        components["redis"] = _redis(settings.REDIS_URL)
    if not settings.CELERY_TASK_ALWAYS_EAGER:  # with eager tasks there are no workers to watch
        components["workers"] = _workers(database_up=components["database"]["status"] == "ok")
    return HealthReport(components=components, stream=realtime.stream_state().as_dict())


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return {"status": "down", "error": type(error).__name__}
    return {"status": "ok"}


def _redis(url: str) -> dict:
    try:
        _redis_client(url).ping()
    except (redis.RedisError, OSError) as error:
        return {"status": "down", "error": type(error).__name__}
    return {"status": "ok"}


def _redis_client(url: str) -> redis.Redis:
    # One client (and connection pool: redis-py makes it again in a forked child) per URL, so a probe every few
    # seconds does not open a connection each time.
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            client = _redis_clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)
        return client


def _workers(*, database_up: bool) -> dict:
    """Per queue served: ok when a worker took its heartbeat task lately, down when not for WORKER_STALE_SECONDS,
    unknown when none ever did (a fresh deployment, or beat not running yet)."""
    if not database_up:
        return {"status": "unknown", "error": "the database is down"}
    now = timezone.now()
    stale_after = float(getattr(settings, "MINHOS_WORKER_STALE_SECONDS", WORKER_STALE_SECONDS))
    served = getattr(settings, "CELERY_QUEUES_SERVED", None)  # without the list: every queue that has a heartbeat
    beats = WorkerHeartbeat.objects.all() if served is None else WorkerHeartbeat.objects.filter(queue__in=served)
    seen = {beat.queue: beat for beat in beats}
    queues = {}
    for queue in served if served is not None else sorted(seen):
        beat = seen.get(queue)
        if beat is None:
            queues[queue] = {"status": "unknown"}
            continue
        age = (now - beat.seen_at).total_seconds()
        queues[queue] = {"status": "ok" if age <= stale_after else "down", "hostname": beat.hostname,
                         "seen_at": beat.seen_at.isoformat().replace("+00:00", "Z"), "age_seconds": round(age, 1)}
        if queue == TRAINING_QUEUE and age > stale_after:
            # A training worker of concurrency 1 takes its heartbeat task only after the training in hand; the
            # training's own heartbeat (every MINHOS_TRAINING_HEARTBEAT_SECONDS) says it is alive meanwhile.
            training = ml_selectors.training_heartbeat_latest()
            if training is not None and (now - training).total_seconds() <= stale_after:
                queues[queue] |= {"status": "ok", "busy": "training",
                                  "training_beat_at": training.isoformat().replace("+00:00", "Z")}
    statuses = {q["status"] for q in queues.values()}
    status = "down" if "down" in statuses else ("ok" if statuses == {"ok"} else "unknown")
    return {"status": status, "queues": queues}


def workers_brief() -> dict | None:
    """What the dashboard's status strip shows of the workers: None with eager tasks (embedded mode: no workers),
    else the overall status and the queues nobody serves."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    workers = _workers(database_up=True)
    return {"status": workers["status"],
            "down": sorted(q for q, state in workers["queues"].items() if state["status"] == "down")}
