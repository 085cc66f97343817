#!/usr/bin/env bash
# The whole test suite: PostgreSQL + Redis (deployment mode), then the embedded-mode pass on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh

export SECRET_KEY=${SECRET_KEY:-minhos-test-secret-key-for-the-suite-only-0123456789abcdefghij}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/minhos}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/1}
export MINHOS_VAR_DIR=${MINHOS_VAR_DIR:-$(mktemp -d /tmp/minhos-test-var.XXXXXX)}

echo "== deployment mode: PostgreSQL + Redis =="
# pytest exits 5 when no test ran: with -e that fails the run, as it should.
.venv/bin/python -m pytest -p xdist -n 2 "$@"

echo "== embedded mode: SQLite, in-memory channel layer, eager Celery =="
env -u DATABASE_URL -u REDIS_URL -u SECRET_KEY .venv/bin/python -m pytest -m embedded "$@"
