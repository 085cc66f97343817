"""Celery's result backend in deployment mode: Redis, for the chords of distributed training (mlcore.distributed).

Every other task ignores its result (CELERY_TASK_IGNORE_RESULT); only the member fits store one, for their chord.
"""
from celery.backends.redis import RedisBackend


class ChordRedisBackend(RedisBackend):
    """Celery's Redis backend without the subscription it makes when a task is queued.

    With a result backend set, Celery's `send_task` subscribes (Redis pub/sub) to the result of every task it queues
    whose result is not explicitly ignored, in case the caller waits on it: a subscription never released for a
    task that stores no result, and, with Redis down, a queueing call held up while it reconnects (the feed and the
    workers must never wait on Redis when they queue). Nothing here waits on a result that way: a chord is joined
    in Redis by the workers, and `AsyncResult.get()` still subscribes when it is called.
    """

    def on_task_call(self, producer, task_id):
        return None
