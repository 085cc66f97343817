"""Fixtures for every test of the project."""
import uuid

import pytest
from django.conf import settings as django_settings


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`pytest -n N` (xdist's default --dist load, as make test runs both passes): load, with the units and the
    order of minhos_site/tests/xdist_scheduling.py. Any other --dist is xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    from minhos_site.tests.xdist_scheduling import SuiteScheduling

    return SuiteScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # called before pytest-django's own (also tryfirst, registered before this file)
def pytest_collection_modifyitems(items):
    from minhos_site.tests.xdist_scheduling import order_items

    order_items(items)


@pytest.fixture(autouse=True)
def private_cache(settings):
    """A cache key space of each test's own (the real backend: Redis in deployment mode), so throttle counts never
    carry over from one test to the next nor cross parallel workers; every test client is 127.0.0.1."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings.CACHES = {name: {**conf, "KEY_PREFIX": prefix} for name, conf in django_settings.CACHES.items()}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Passwords hashed with one PBKDF2 iteration (minhos_site/tests/hashers.py). At the production million, each
    user made by a test, each login and each failed attempt of the login-limiter tests cost ~0.2 s of CPU: a third of
    the embedded pass, a quarter of the deployment pass."""
    fast = "minhos_site.tests.hashers.OneIterationPBKDF2PasswordHasher"
    production = "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    settings.PASSWORD_HASHERS = [fast, *(h for h in django_settings.PASSWORD_HASHERS if h != production)]


@pytest.fixture(autouse=True)
def eager_celery(request):
    """Tasks run inline, as in embedded mode, also when REDIS_URL names a broker (the PostgreSQL pass): a step
    queued by a test must never wait in the shared Redis for a worker of another test. Tests marked `workers` run
    real Celery workers on queues of their own instead."""
    from minhos_site.celery import app

    if request.node.get_closest_marker("workers"):
        # Queued, never inline, whatever an earlier test in this process left behind: run inline in the test
        # process, a workers test sees no step in flight and no backlog (it failed that way in a fresh-clone run).
        previous = app.conf.task_always_eager
        app.conf.task_always_eager = False
        yield
        app.conf.task_always_eager = previous
        return
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
