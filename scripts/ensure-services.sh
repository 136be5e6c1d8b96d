#!/usr/bin/env bash
# Start the local PostgreSQL / Redis if they are down, using this machine's own service commands.
# Usage: scripts/ensure-services.sh [postgres] [redis]   (no argument: both)
set -euo pipefail
want=("$@"); [ ${#want[@]} -eq 0 ] && want=(postgres redis)

wait_for() {  # name, check command...
  local name=$1; shift
  for _ in $(seq 1 30); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "ensure-services: $name did not come up" >&2; return 1
}

for svc in "${want[@]}"; do
  case "$svc" in
    postgres)
      if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        echo "ensure-services: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        wait_for postgres pg_isready -q -h 127.0.0.1 -p 5432
      fi ;;
    redis)
      if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "ensure-services: starting Redis"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
          --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
        wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping
      fi ;;
    *) echo "ensure-services: unknown service $svc" >&2; exit 2 ;;
  esac
done
