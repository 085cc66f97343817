#!/usr/bin/env bash
# The whole test suite: PostgreSQL + Redis (deployment mode), then the embedded-mode pass on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The peer backtester (AGPL backtesting.py) for the backtest benchmark's tests: tests only, never `make run`.
.venv/bin/python -m pip install --quiet -r requirements-bench.txt -c constraints.txt
scripts/services.sh

export SECRET_KEY=${SECRET_KEY:-minhos-test-secret-key-for-the-suite-only-0123456789abcdefghij}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/minhos}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/1}
export MINHOS_VAR_DIR=${MINHOS_VAR_DIR:-$(mktemp -d /tmp/minhos-test-var.XXXXXX)}

# Both passes on two xdist workers; how the tests are shared between them: minhos_site/tests/xdist_scheduling.py.
XDIST=(-p xdist -n 2)

echo "== deployment mode: PostgreSQL + Redis =="
# pytest exits 5 when no test ran: with -e that fails the run, as it should (with xdist too).
.venv/bin/python -m pytest "${XDIST[@]}" "$@"

echo "== embedded mode: SQLite, in-memory channel layer, eager Celery =="
# Each worker's test database is its own in-memory SQLite (pytest-django); what the workers share in MINHOS_VAR_DIR
# is the generated secret key, written by the controlling process before the workers start, and the model cache,
# which loads each model into a fresh temporary folder.
env -u DATABASE_URL -u REDIS_URL -u SECRET_KEY .venv/bin/python -m pytest "${XDIST[@]}" -m embedded "$@"
