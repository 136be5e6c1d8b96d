"""Fake Slack incoming webhook and Transaction Service: they record what the service sends."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from sandbox.core import SandboxService, json_response, request_json


class _Recorder(SandboxService):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.received: list[dict] = []

    def reset(self) -> None:
        with self.lock:
            self.received.clear()

    def control(self, request: Request, subpath: str) -> Response | None:
        if request.method == "GET" and subpath.rstrip("/") == "received":
            return json_response({"received": list(self.received)})
        return None


class SlackSandbox(_Recorder):
    """``POST /slack/webhook`` with ``{"text", "blocks"?}`` → 200 ``ok`` (Slack's incoming-webhook answer)."""

    name = "slack"

    def handle(self, request: Request, subpath: str) -> Response:
        body = request_json(request)
        if request.method != "POST" or subpath.rstrip("/") != "webhook":
            return Response("no_service", status=404, mimetype="text/plain")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return Response("invalid_payload", status=400, mimetype="text/plain")
        with self.lock:
            self.received.append(body)
        return Response("ok", status=200, mimetype="text/plain")


class TransactionServiceSandbox(_Recorder):
    """``POST /transactions/payments/status`` (processors.md, assumed shape), idempotent on ``event_id``."""

    name = "transactions"
    REQUIRED = ("event_id", "confirmation_id", "user_id", "payment_status", "previous_status", "amount",
                "occurred_at")

    def handle(self, request: Request, subpath: str) -> Response:
        if request.method != "POST" or subpath.rstrip("/") != "payments/status":
            return json_response({"error": "not_found"}, status=404)
        body = request_json(request)
        if not isinstance(body, dict):
            return json_response({"error": "invalid_json"}, status=400)
        missing = [name for name in self.REQUIRED if name not in body]
        if missing:
            return json_response({"error": "missing_fields", "fields": missing}, status=422)
        with self.lock:
            duplicate = any(item["event_id"] == body["event_id"] for item in self.received)
            if not duplicate:
                self.received.append(body)
        return json_response({"accepted": True, "duplicate": duplicate}, status=200)
