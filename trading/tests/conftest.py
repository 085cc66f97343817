"""Fixtures shared by the trading tests."""
import uuid

import pytest
from django.conf import settings as django_settings


@pytest.fixture
def channel_prefix(settings) -> str:
    """A channel layer of our own: parallel test workers (and server subprocesses, given this prefix as
    CHANNELS_PREFIX) share Redis and the same group names. Returns the prefix."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    layers = {name: dict(conf) for name, conf in django_settings.CHANNEL_LAYERS.items()}
    if "CONFIG" in layers["default"]:
        layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": prefix}
    settings.CHANNEL_LAYERS = layers  # also makes channels drop its cached layer
    return prefix
