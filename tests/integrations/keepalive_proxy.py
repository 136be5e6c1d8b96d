"""For the kept-alive connection tests: the real sandbox served with keep-alive (``keepalive_sandbox``; as fixture
``keepalive_url``), and a TCP forwarder in front of it (``ClosingProxy``; as fixture ``proxy``, the Usio client
pointed through it) that counts the connections it accepted and can close them, as a server or a load balancer
closes an idle kept-alive connection. ``sent`` counts the token payments the sandbox received for a reference."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent.parent
#: The sandbox's keep-alive: it closes a connection idle this long (gunicorn checks about once a second).
SERVER_KEEP_ALIVE = 1


class ClosingProxy:
    def __init__(self, target_url: str):
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.accepted += 1
                self._open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close_connections(self) -> None:
        """Close every connection accepted so far (the client gets a FIN, as from a server's idle timeout)."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        time.sleep(0.1)  # let the FIN reach the client's socket (loopback: at once in practice)

    def stop(self) -> None:
        self.listener.close()
        self.close_connections()


@contextlib.contextmanager
def keepalive_sandbox(base: Path, *, keep_alive: int):
    """The real sandbox served as with ``--keep-alive`` (gunicorn: idle connections kept ``keep_alive`` seconds,
    then closed by the server), a process of its own; yields its URL. (The session's sandbox closes every
    connection after its answer, so it cannot show connection reuse.)"""
    from tests.sandbox_fixtures import HANG_SECONDS, _wait_for_ready

    log_path = base / "sandbox-keepalive.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", "--keys-dir", str(base / "keys"),
             "--hang-seconds", str(HANG_SECONDS), "--keep-alive", str(keep_alive)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield _wait_for_ready(proc, log_path)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def keepalive_url(tmp_path_factory):
    with keepalive_sandbox(tmp_path_factory.mktemp("keepalive"), keep_alive=SERVER_KEEP_ALIVE) as url:
        yield url


@pytest.fixture
def proxy(keepalive_url, settings):
    """The Usio client pointed at the keep-alive sandbox through a ``ClosingProxy``; our own idle limit out of the
    way (30 s), so that only the case under test decides when a connection goes."""
    forwarder = ClosingProxy(keepalive_url)
    settings.USIO_BASE_URL = forwarder.url("/usio")
    settings.PROCESSOR_KEEPALIVE_SECONDS = 30
    yield forwarder
    forwarder.stop()


def sent(keepalive_url: str, reference: str) -> int:
    """How many SubmitTokenPayment requests carrying ``reference`` the sandbox received."""
    log = requests.get(f"{keepalive_url}/_control/requests", params={"operation": "usio.SubmitTokenPayment"},
                       timeout=10).json()["requests"]
    return sum(1 for entry in log if (entry["body"] or {}).get("AdditionalSearch") == reference)
