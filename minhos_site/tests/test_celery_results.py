"""The result backend of deployment mode: Redis for the training chords, and queueing a task never waits on it."""
import time

from celery.app.backends import by_url

from minhos_site.celery import app
from minhos_site.celery_results import ChordRedisBackend

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_the_settings_name_resolves_to_the_backend_and_its_redis_url():
    backend, url = by_url(f"minhos_site.celery_results.ChordRedisBackend+{UNREACHABLE}")
    assert (backend, url) == (ChordRedisBackend, UNREACHABLE)


def test_queueing_a_task_does_not_subscribe_to_its_result_even_with_redis_down():
    backend = ChordRedisBackend(app=app, url=UNREACHABLE)
    started = time.monotonic()
    assert backend.on_task_call(None, "some-task-id") is None
    assert time.monotonic() - started < 0.5
    assert backend.result_consumer._pubsub is None  # no connection made, no subscription kept
