"""The processor clients' transport (``integrations.http.HttpClient`` on urllib3) against a real HTTP server on
loopback that records what reaches it: the bytes on the wire are what requests sent (JSON and form bodies, query
parameters, content types), answers are read as requests read them (gzip, a UTF-8 byte-order mark, a charset), a
client's own connections are reused until it is closed, and a request the transport refuses never leaves."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations.errors import ProcessorProtocolError, ProcessorUnavailable
from integrations.http import HttpClient


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released once per connection the client closed

    def get_request(self):
        self.connections += 1
        return super().get_request()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a processor's front end

    def log_message(self, *args) -> None:
        pass

    def finish(self) -> None:
        super().finish()
        self.server.closed.release()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
        content_type, payload = "application/json", b'{"ok": true}'
        extra, name = {}, self.path.partition("?")[0].rsplit("/", 1)[-1]
        if name == "gzip":
            payload, extra = gzip.compress(b'{"zipped": "yes"}'), {"Content-Encoding": "gzip"}
        elif name == "bom":
            payload = b'\xef\xbb\xbf{"bom": "yes"}'
        elif name == "latin1":
            content_type, payload = "text/plain; charset=ISO-8859-1", "caf\u00e9".encode("latin-1")
        elif name == "not-json":
            content_type, payload = "text/html", b"<html>proxy error</html>"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture
def server():
    recorder = _Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()


def _client(server, *, keepalive_seconds: float | None = 1.0) -> HttpClient:
    return HttpClient(base_url=f"http://127.0.0.1:{server.server_port}/api", connect_timeout=2, read_timeout=5,
                      keepalive_seconds=keepalive_seconds)


def test_a_json_body_goes_as_requests_encoded_it(server):
    body = {"Amount": "12.34", "Name": "Zo\u00eb", "Items": [1, 2.5, None, True]}
    response, exchange = _client(server)._send("POST", "pay", operation="pay", json_body=body,
                                               headers={"X-Trace": "t-1"})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    [seen] = server.requests
    assert (seen["method"], seen["path"]) == ("POST", "/api/pay")
    assert seen["body"] == json.dumps(body).encode()  # requests' json=: json.dumps defaults, UTF-8
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Content-Length"] == str(len(seen["body"]))
    assert seen["headers"]["X-Trace"] == "t-1"
    assert seen["headers"]["Accept-Encoding"] == "gzip, deflate"
    assert "Authorization" not in seen["headers"]
    assert exchange.request_body == body and exchange.status == 200


def test_a_form_body_and_query_parameters(server):
    client = _client(server)
    client._send("POST", "token", operation="token", data={"grant_type": "client_credentials", "scope": "a b&c"})
    client._send("GET", "list?fixed=1", operation="list", params={"page": 2, "ids": ["x", "y"], "skip": None})
    form, listing = server.requests
    assert form["body"] == b"grant_type=client_credentials&scope=a+b%26c"
    assert form["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert listing["path"] == "/api/list?fixed=1&page=2&ids=x&ids=y"  # None dropped, lists repeated
    assert listing["body"] == b"" and "Content-Type" not in listing["headers"]


def test_a_content_type_the_caller_sets_wins(server):
    _client(server)._send("POST", "signed", operation="signed", data=b"eyJhbGciOi.e30.sig",
                          headers={"content-type": "application/jose"})
    [seen] = server.requests
    assert seen["body"] == b"eyJhbGciOi.e30.sig"
    assert seen["headers"]["content-type"] == "application/jose"
    assert list(seen["headers"]).count("Content-Type") == 0


def test_answers_are_decoded_as_requests_decoded_them(server):
    client = _client(server)
    zipped, _ = client._send("GET", "gzip", operation="gzip")
    bom, _ = client._send("GET", "bom", operation="bom")
    latin1, _ = client._send("GET", "latin1", operation="latin1")
    assert zipped.json() == {"zipped": "yes"}
    assert bom.json() == {"bom": "yes"}
    assert latin1.text == "caf\u00e9"


def test_an_answer_that_is_not_json_is_a_protocol_error(server):
    client = _client(server)
    response, exchange = client._send("GET", "not-json", operation="status")
    with pytest.raises(ProcessorProtocolError):
        client.json_body(response, exchange, operation="status")
    assert exchange.response_body == "<html>proxy error</html>"


def test_a_client_of_its_own_reuses_its_connection_until_closed(server):
    client = _client(server, keepalive_seconds=0)
    client._send("GET", "a", operation="a")
    client._send("GET", "b", operation="b")
    assert server.connections == 1
    client.close()
    assert server.closed.acquire(timeout=10)  # the server saw the connection end
    client._send("GET", "c", operation="c")
    assert server.connections == 2
    assert [seen["path"] for seen in server.requests] == ["/api/a", "/api/b", "/api/c"]


@pytest.mark.parametrize("kwargs", [
    {"headers": {"X-Injected": "a\r\nX-Evil: 1"}},  # http.client refuses a header value with a line break
    {"json_body": {"amount": float("nan")}},  # not JSON: requests refused it too
], ids=["header-line-break", "nan"])
def test_a_request_the_transport_refuses_is_unavailable_and_never_leaves(server, kwargs):
    with pytest.raises(ProcessorUnavailable) as exc:
        _client(server)._send("POST", "pay", operation="pay", **kwargs)
    assert exc.value.message.startswith("request failed: ")
    assert server.requests == [] and server.connections == 0
