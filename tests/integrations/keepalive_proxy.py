"""For the kept-alive connection tests: the real sandbox served with keep-alive (``keepalive_sandbox``), and a TCP
forwarder in front of it (``ClosingProxy``) that counts the connections it accepted and can close them, as a server
or a load balancer closes an idle kept-alive connection."""

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

ROOT = Path(__file__).resolve().parent.parent.parent


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
