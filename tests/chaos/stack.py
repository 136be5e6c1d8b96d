"""The running system for the chaos tests: a private Redis, gunicorn serving the API, Celery workers, a TCP
proxy in front of PostgreSQL that a test can cut, all pointed at the sandbox and the test database.

Every process here is real and started the way production starts it (``Procfile``); the tests break them from
outside (SIGKILL, a restart, a cut connection) and never reach into the project's code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from django.db import connection

from tests.integration.stack import BASE_DIR, READY_TIMEOUT, read_log, wait_for, worker_database_url, worker_env

GUNICORN = Path(sys.executable).with_name("gunicorn")
REDIS_SERVER = "redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal the process group of ``proc`` (SIGKILL if it does not exit in ``timeout``) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


class RedisServer:
    """A private ``redis-server`` (nothing on disk, like the machine's) on its own port, so that killing and
    restarting it touches no other test run."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        wait_for(self.ping, timeout=READY_TIMEOUT, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: every message on it is gone (it keeps nothing on disk)."""
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGKILL)
            self.proc = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None


class TcpProxy:
    """A TCP relay from a local port to ``upstream``; ``cut()`` drops every connection and refuses new ones
    (what a database outage looks like to the service), ``restore()`` lets connections through again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = True
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, target)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def cut(self) -> None:
        self._open = False
        with self._lock:
            sockets = list(self._sockets)
        self._drop(*sockets)

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def database_url(*, port: int | None = None) -> str:
    """The test database's URL (as workers get it), optionally through a local port (the ``TcpProxy``)."""
    url = worker_database_url()
    if port is None:
        return url
    db = connection.settings_dict
    return url.replace(f"@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/", f"@127.0.0.1:{port}/", 1)


def service_env(*, broker_url: str, sandbox, database: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a worker or the API server: the test database (or ``database``), ``broker_url``, the
    sandbox's addresses, fast broker redelivery (``tests.integration.stack.worker_env``)."""
    env = {**worker_env(broker_url=broker_url), **sandbox.env(), **extra}
    if database:
        env["DATABASE_URL"] = database
    return env


class ApiServer:
    """gunicorn serving ``config.wsgi`` as the ``Procfile`` does (2 workers), with threads so that a burst of
    concurrent clients is served concurrently while PostgreSQL connections stay bounded (workers x threads)."""

    def __init__(self, *, env: dict[str, str], log_path: Path, workers: int = 2, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [
            str(GUNICORN), "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
            "--timeout", "60", "--graceful-timeout", "5",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=BASE_DIR, env={**env, "DB_CONN_MAX_AGE": "60"}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._healthy, timeout=READY_TIMEOUT, what="gunicorn to answer /healthz")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return read_log(self.log_path)

    def stop(self) -> None:
        _stop_group(self.proc)
