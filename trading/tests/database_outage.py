"""A PostgreSQL outage of the test database alone (never the shared server): new connections to it are refused and
the sessions of the test's processes on it are ended, while the test process's own connections stay open (to watch
and to end it: the sessions of its other threads, e.g. Channels' database thread, are kept too, or a later test of
the same worker would find its connection killed)."""
from __future__ import annotations

import contextlib

import psycopg
from django.db import connection

from trading.tests.processes import STACK_APPLICATION_NAME


def _admin_connection() -> psycopg.Connection:
    # ALTER DATABASE ... ALLOW_CONNECTIONS false is refused for the database one is connected to: from `postgres`.
    settings = connection.settings_dict
    return psycopg.connect(host=settings.get("HOST") or "127.0.0.1", port=settings.get("PORT") or 5432,
                           user=settings.get("USER") or None, password=settings.get("PASSWORD") or None,
                           dbname="postgres", autocommit=True)


@contextlib.contextmanager
def database_outage():
    """Inside, the test database refuses new connections and the other sessions on it are gone; always ended."""
    if connection.vendor != "postgresql":
        raise RuntimeError("a database outage needs PostgreSQL")
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = cursor.fetchone()[0]
    admin = _admin_connection()
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
                      "AND application_name = %s", (name, own, STACK_APPLICATION_NAME))
        yield
    finally:
        try:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        finally:
            admin.close()
