"""A worker that finishes a task while Redis is down cannot acknowledge it: kombu says so at CRITICAL, and with the
filter the line stays but the connection error's chained traceback (some forty lines) goes: the outage is told in a
few lines (test_beat_outage.py's worker check failed on it in a fresh-clone run). Real kombu, a private redis-server
stopped between the message's delivery and its acknowledgement."""
import logging

import pytest
from kombu import Connection, Queue

import minhos_site.celery  # noqa: F401 - installs the filter, as every worker does
from trading.tests.redis_server import PrivateRedis


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_an_acknowledgement_lost_to_a_redis_outage_is_one_line_without_a_traceback(redis_server, caplog):
    with Connection(redis_server.url(2), transport_options={"max_retries": 0}) as connection:
        queue = Queue("ack-outage", channel=connection.default_channel)
        queue.declare()
        connection.default_channel.basic_publish(connection.default_channel.prepare_message(b"{}"),
                                                 exchange="", routing_key="ack-outage")
        message = queue.get(no_ack=False)
        assert message is not None
        redis_server.stop()
        with caplog.at_level(logging.CRITICAL, logger="celery.worker.request"):
            message.ack_log_error(logging.getLogger("celery.worker.request"), connection.connection_errors)
    [record] = [r for r in caplog.records if r.getMessage().startswith("Couldn't ack")]
    assert record.levelno == logging.CRITICAL and record.exc_info is None
