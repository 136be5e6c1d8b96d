"""What every benchmark shares: a fresh PostgreSQL database, Redis db 7, the sandbox, gunicorn and Celery workers
as real subprocesses, a timer, RSS sampling from /proc, and one result line per figure.

Benchmarks are not tests: they print a figure and its ratio against a baseline measured in the same run (the
machine's noise hits both), and never fail a build. Environment:

- ``BENCH_PG_URL`` (``postgres://postgres@127.0.0.1:5432``): the PostgreSQL server; the database
  ``BENCH_DB`` (``payments_bench``) on it is dropped and created afresh, then migrated, by ``Stack.fresh_database``.
- ``BENCH_REDIS_URL`` (``redis://127.0.0.1:6379/7``): the broker; only that db's keys are deleted before a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
VAR = BASE_DIR / "var" / "bench"
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("BENCH_DB", "payments_bench")
DATABASE_URL = f"{PG_URL}/{DB_NAME}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
SETTINGS = "config.settings.local"
API_KEY = "psk_bench000_benchmark-service-key-not-secret"


# --- results --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One figure of a benchmark. ``higher_is_better`` decides how ``target`` reads (a floor or a ceiling)."""

    name: str
    figure: float
    unit: str
    baseline: float | None = None
    baseline_unit: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        parts = [f"{self.name}: {fmt(self.figure)} {self.unit}"]
        if self.baseline is not None:
            parts.append(f"baseline: {fmt(self.baseline)} {self.baseline_unit or self.unit}")
        if self.ratio is not None:
            parts.append(f"ratio: {self.ratio:.2f}x")
        if self.target:
            parts.append(f"target: {self.target}")
        if self.passed is not None:
            parts.append("PASS" if self.passed else "MISS")
        return "  ".join(parts)


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def report(bench: str, results: list[Result], *, scale: float, extra: dict | None = None) -> dict:
    """Print the result lines and write ``var/bench/<bench>.json``; returns what was written."""
    for result in results:
        print(result.line(), flush=True)
    payload = {"bench": bench, "scale": scale, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "results": [asdict(r) for r in results], **(extra or {})}
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / f"{bench}.json").write_text(json.dumps(payload, indent=2, default=str))
    return payload


def machine() -> dict:
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1), "python": sys.version.split()[0]}


def parse_args(description: str, *, default_scale: int, extra=None) -> argparse.Namespace:
    # SIGTERM unwinds like Ctrl-C: ``with Stack()`` stops every process the benchmark started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", type=int, default=default_scale,
                        help=f"the size of the run (default {default_scale:,}, the issue's full size)")
    parser.add_argument("--keep", action="store_true", help="leave the processes' logs in var/bench/logs")
    if extra:
        extra(parser)
    return parser.parse_args()


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- /proc ----------------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


class RssSampler:
    """Samples the RSS of every process of the given process groups every ``interval`` seconds (a thread).
    ``peak_process_mb``: the largest single process seen; ``peak_total_mb``: the largest sum at one instant."""

    def __init__(self, pgids: list[int], interval: float = 0.25):
        self.pgids = pgids
        self.interval = interval
        self.peak_process_mb = 0.0
        self.peak_total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [rss_mb(pid) for pgid in self.pgids for pid in group_pids(pgid)]
            if sizes:
                self.peak_process_mb = max(self.peak_process_mb, max(sizes))
                self.peak_total_mb = max(self.peak_total_mb, sum(sizes))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A subprocess leading its own process group, logging to ``var/bench/logs/<name>.log``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        self.name = name
        logs = VAR / "logs" / DB_NAME
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
            return response.status == 200
    except OSError:
        return False


class Stack:
    """The processes of one benchmark run; ``close()`` stops every one it started (in reverse order)."""

    def __init__(self):
        self.processes: list[Process] = []
        self.sandbox_url = ""

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        while self.processes:
            self.processes.pop().stop()

    # -- environment --
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": DATABASE_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "ENVIRONMENT": "local",
            "DEBUG": "false",
            # One service key serves all 32 clients: lift the per-client throttle (6000/min) out of the way.
            "API_THROTTLE_RATE": "100000000/min",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": os.environ.get("BENCH_SERVICE_LOG_LEVEL", "INFO"),  # as production logs
        }
        if self.sandbox_url:
            env["SANDBOX_URL"] = self.sandbox_url
        env.update(extra)
        return env

    # -- database and broker --
    def fresh_database(self) -> None:
        """Drop and create ``payments_bench``, migrate it, and point this process's Django at it."""
        import psycopg

        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=self.env(),
                       check=True)
        django_setup()

    @staticmethod
    def clear_broker() -> None:
        """Delete every key of the bench's Redis db (db 7 by default; nothing else on that server is touched)."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(count=1000))
        for index in range(0, len(keys), 1000):
            client.delete(*keys[index:index + 1000])

    # -- processes --
    def start_sandbox(self) -> str:
        """``bench.sandbox_server``: the project's sandbox app plus bulk-seeding routes for large ledgers."""
        port = free_port()
        proc = Process("sandbox", [PYTHON, "-m", "bench.sandbox_server", "--port", str(port)], self.env())
        self.processes.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.check_alive() or _http_ok(f"{url}/_control/clock"), timeout=60, what="the sandbox")
        self.sandbox_url = url
        return url

    def start_api(self, *, workers: int = 2, threads: int = 8) -> str:
        port = free_port()
        cmd = [str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--worker-class", "gthread", "--threads", str(threads), "--timeout", "60", "--keep-alive", "30",
               "--backlog", "2048"]
        proc = Process("gunicorn", cmd, self.env())
        self.processes.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.check_alive() or _http_ok(f"{url}/healthz"), timeout=60, what="gunicorn")
        return url

    def start_worker(self, name: str, queues: list[str], *, concurrency: int = 2, **env: str) -> Process:
        cmd = [str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", ",".join(queues), "--pool", "prefork",
               "--concurrency", str(concurrency), "--without-mingle", "--without-gossip", "--without-heartbeat",
               "-n", f"{name}@%h", "--loglevel", "INFO", "--prefetch-multiplier", "4"]
        proc = Process(f"worker-{name}", cmd, self.env(**env))
        self.processes.append(proc)
        wait_for(lambda: proc.check_alive() or " ready." in proc.log(), timeout=90, what=f"worker {name}")
        return proc

    def control(self, method: str, path: str, payload=None, timeout: float = 600):
        import requests

        response = requests.request(method, f"{self.sandbox_url}/{path.lstrip('/')}", json=payload, timeout=timeout)
        response.raise_for_status()
        return response.json()


_DJANGO_READY = False


def django_setup() -> None:
    """Configure Django in this process for the bench database and broker (idempotent)."""
    global _DJANGO_READY
    if _DJANGO_READY:
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["CELERY_BROKER_URL"] = REDIS_URL
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    _DJANGO_READY = True


def point_at_sandbox(url: str) -> None:
    """Point this process's processor clients at the sandbox ``url`` (the services read settings at call time)."""
    from django.conf import settings

    settings.SANDBOX_URL = url
    settings.USIO_BASE_URL = f"{url}/usio"
    settings.JPM_BASE_URL = f"{url}/jpm"
    settings.JPM_TOKEN_URL = f"{url}/jpm/oauth2/token"
    settings.SLACK_WEBHOOK_URL = f"{url}/slack/webhook"
    settings.TRANSACTION_SERVICE_URL = f"{url}/transactions"


def create_api_key() -> str:
    from core.auth.api_keys import api_key_create

    api_key_create(name="bench", role="service", raw_key=API_KEY)
    return API_KEY


def pg_exec(sql: str, params=None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def pg_scalar(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def copy_rows(table: str, columns: list[str], rows: Iterator[tuple]) -> int:
    """COPY ``rows`` into ``table`` over this process's Django connection (psycopg 3). Returns the count."""
    from django.db import connection

    count = 0
    connection.ensure_connection()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


class _Rollback(Exception):
    pass


def timed_rolled_back(work, *, vacuum: tuple[str, ...]) -> tuple[float, object]:
    """A same-run baseline: ``work(cursor)`` timed inside one transaction that is then rolled back (the data stays
    as seeded for the measured run), then ``VACUUM ANALYZE`` of ``vacuum`` (the rolled-back rows leave dead
    tuples). Returns (seconds, what ``work`` returned)."""
    from django.db import connection, transaction

    result = None
    with Timer() as t:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                result = work(cursor)
                raise _Rollback
        except _Rollback:
            pass
    for table in vacuum:
        pg_exec(f"VACUUM ANALYZE {table}")
    return t.seconds, result


def analyze() -> None:
    pg_exec("ANALYZE")


def server_versions() -> dict:
    import redis

    versions = {"postgresql": pg_scalar("SHOW server_version")}
    with contextlib.suppress(Exception):
        versions["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return versions


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0
