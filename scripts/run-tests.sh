#!/usr/bin/env bash
# The test suite (called by `make test`). Arguments go to pytest.
#
# tests/chaos needs PostgreSQL + Redis (real row locks, many connections, the production broker). When the suite
# runs on them (DATABASE_URL=postgres://…) it is collected with everything else. On the embedded stack the rest
# runs first, then tests/chaos on the local PostgreSQL (database payments_chaos) and Redis (db 13) — unless
# CHAOS=0 (.ci/run's SQLite pass sets it: its PostgreSQL pass runs the chaos suite) or pytest arguments were given.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=.venv/bin/pytest

if [[ "${DATABASE_URL:-}" == postgres* ]]; then
  exec "$PYTEST" "$@"
fi

if [ $# -gt 0 ]; then
  exec "$PYTEST" "$@"
fi

"$PYTEST" --ignore=tests/chaos
if [ "${CHAOS:-1}" = "0" ]; then
  echo "run-tests: CHAOS=0, tests/chaos not run (it runs on PostgreSQL + Redis)"
  exit 0
fi
echo "== tests/chaos (PostgreSQL, Redis, real workers)"
scripts/ensure-services.sh postgres redis
DATABASE_URL=postgres://postgres@127.0.0.1:5432/payments_chaos \
CELERY_BROKER_URL=redis://127.0.0.1:6379/13 \
  "$PYTEST" tests/chaos
