"""A small asyncio HTTP/1.1 load generator (keep-alive connections on loopback; no third-party library).

``run_load(url, clients, requests, make_request)``: ``clients`` connections, each sending requests one after the
other until ``requests`` were sent in all; ``make_request(i)`` gives ``(method, path, headers, body)`` of the i-th.
Returns a ``LoadResult``: wall time, requests/s, latency percentiles, status counts, errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.common import percentile

RequestSpec = tuple[str, str, dict[str, str], bytes | None]


@dataclass
class LoadResult:
    seconds: float
    count: int
    latencies: list[float] = field(repr=False)
    statuses: Counter
    errors: int  # transport errors + statuses outside ``ok``
    samples: list[tuple[int, bytes]] = field(default_factory=list, repr=False)  # some non-ok answers

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000

    def summary(self) -> dict:
        return {"requests": self.count, "seconds": round(self.seconds, 3), "rps": round(self.rps, 1),
                "p50_ms": round(self.p(50), 1), "p95_ms": round(self.p(95), 1), "p99_ms": round(self.p(99), 1),
                "max_ms": round(max(self.latencies, default=0) * 1000, 1), "errors": self.errors,
                "statuses": dict(self.statuses)}


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.lower() == "close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return status, bytes(body), close
    if length is not None:
        return status, await reader.readexactly(length), close
    return status, await reader.read(), True


async def _client(host: str, port: int, next_index: Callable[[], int | None], make_request, ok: set[int],
                  result: LoadResult) -> None:
    reader = writer = None
    while (index := next_index()) is not None:
        method, path, headers, body = make_request(index)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            status, answer, close = await _read_response(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
            result.statuses["transport_error"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        result.latencies.append(time.perf_counter() - started)
        result.statuses[status] += 1
        if status not in ok:
            result.errors += 1
            if len(result.samples) < 5:
                result.samples.append((status, answer[:500]))
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(url: str, *, clients: int, requests: int, make_request: Callable[[int], RequestSpec],
             ok: set[int] | None = None) -> LoadResult:
    parts = urlsplit(url)
    counter = iter(range(requests))

    def next_index() -> int | None:
        return next(counter, None)

    result = LoadResult(seconds=0.0, count=0, latencies=[], statuses=Counter(), errors=0)

    async def main() -> None:
        await asyncio.gather(*(_client(parts.hostname, parts.port, next_index, make_request, ok or {200, 201},
                                       result) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - started
    result.count = len(result.latencies)
    return result


def json_body(data: dict) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
