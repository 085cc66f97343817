"""Pure trading cores: no Django, DRF, Channels or Celery here (the contracts in .importlinter, checked by
minhos_site/tests/test_architecture.py)."""
