#!/usr/bin/env bash
# Production: every role of the Procfile under supervisord (scripts/supervisord.conf), each restarted alone if it
# dies. Needs DATABASE_URL, REDIS_URL and SECRET_KEY in the environment (see the README's deployment recipe).
# MINHOS_ROLES chooses the roles of this machine (default: all), e.g. MINHOS_ROLES=worker_inference on a machine
# that only adds prediction capacity. `.venv/bin/supervisorctl -c scripts/supervisord.conf status` shows them.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL (deployment mode)}" "${REDIS_URL:?set REDIS_URL}" "${SECRET_KEY:?set SECRET_KEY}"
export PORT=${PORT:-8000}
export MINHOS_LOG_DIR=${MINHOS_LOG_DIR:-$PWD/var/log}
mkdir -p "$MINHOS_LOG_DIR"
roles=${MINHOS_ROLES:-web,worker_trading,worker_inference,worker_training,beat,feed}
for role in web worker_trading worker_inference worker_training beat feed; do
  case ",$roles," in *",$role,"*) run=true ;; *) run=false ;; esac
  export "MINHOS_RUN_${role^^}=$run"
done
exec .venv/bin/supervisord -c scripts/supervisord.conf
