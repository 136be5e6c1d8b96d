"""The sandbox WSGI application: ``/<service>/...`` to the fakes, ``/_control/...`` to the control API.

Fault modes (``POST /_control/faults``) apply to the next N calls of an operation:
- ``500``: answered with HTTP 500; the request is **not** processed;
- ``400``: answered with HTTP 400 (the peer refuses the request); **not** processed;
- ``timeout``: the request **is** processed, then the answer waits ``hang_seconds`` (past the client's
  read timeout) — the "outcome unknown" case the reconciler must resolve;
- ``malformed``: the request **is** processed; the answer is truncated JSON;
- ``slow``: the answer waits ``delay`` seconds, then is processed normally.
"""

from __future__ import annotations

import copy
import time
from dataclasses import fields
from decimal import Decimal

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from sandbox.core import Context, SandboxConfig, json_response, request_json, sleep_for_hang

MALFORMED_BODY = b'{"Status": "success", "Confirmation": "'


def _service_classes():
    from sandbox.jpm import JpmSandbox
    from sandbox.outbound import SlackSandbox, TransactionServiceSandbox
    from sandbox.usio import UsioSandbox

    return (UsioSandbox, JpmSandbox, SlackSandbox, TransactionServiceSandbox)


class SandboxApp:
    def __init__(self, config: SandboxConfig | None = None):
        self.ctx = Context(config=config or SandboxConfig())
        self._initial_config = copy.deepcopy(self.ctx.config)
        for cls in _service_classes():
            service = cls(self.ctx)
            self.ctx.services[service.name] = service

    # --- WSGI -----------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except HTTPException as exc:
            response = json_response({"error": exc.name, "message": exc.description}, status=exc.code)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        head, _, subpath = request.path.strip("/").partition("/")
        if head == "_control":
            return self.control(request, subpath)
        service = self.ctx.services.get(head)
        if service is None:
            return json_response({"error": "not_found", "message": f"no service at /{head}/"}, status=404)
        operation = service.operation(request, subpath)
        fault = self.ctx.faults.take(operation)
        mode = fault.mode if fault else None
        if mode == "500":
            response = json_response({"error": "internal_error", "message": "sandbox fault"}, status=500)
        elif mode == "400":
            response = json_response({"error": "bad_request", "message": "sandbox fault"}, status=400)
        else:
            if mode == "slow":
                time.sleep(fault.delay)
            response = service.handle(request, subpath)
        self.ctx.log.add(service=service.name, operation=operation, method=request.method, path=request.path,
                         body=service.log_body(request), status=response.status_code, fault=mode)
        if mode == "timeout" or getattr(response, "hang_after", False):
            sleep_for_hang(self.ctx)
        elif mode == "malformed":
            response = Response(MALFORMED_BODY, status=200, mimetype="application/json")
        return response

    # --- control API ----------------------------------------------------------------------------
    def control(self, request: Request, subpath: str) -> Response:
        ctx = self.ctx
        body = request_json(request) or {}
        route = (request.method, subpath.rstrip("/"))
        if route == ("POST", "reset"):
            for item in fields(ctx.config):  # settings PATCHed at run time go back to the start-up values
                setattr(ctx.config, item.name, copy.deepcopy(getattr(self._initial_config, item.name)))
            ctx.clock.reset()
            ctx.faults.reset()
            ctx.log.reset()
            for service in ctx.services.values():
                service.reset()
            return json_response({"reset": True})
        if route == ("GET", "clock"):
            return json_response(
                {"now": ctx.clock.now().isoformat(), "offset_seconds": ctx.clock.offset.total_seconds()}
            )
        if route == ("POST", "clock/advance"):
            try:
                days, seconds = float(body.get("days", 0)), float(body.get("seconds", 0))
            except (TypeError, ValueError):
                return json_response({"error": "bad_request", "message": "days/seconds must be numbers"}, 400)
            if days < 0 or seconds < 0:
                return json_response({"error": "bad_request", "message": "time only moves forward"}, 400)
            now = ctx.clock.advance(days=days, seconds=seconds)
            for service in ctx.services.values():
                service.on_clock_advanced()
            return json_response({"now": now.isoformat()})
        if route == ("POST", "faults"):
            try:
                ctx.faults.add(str(body["operation"]), str(body["mode"]), int(body.get("count", 1)),
                               float(body.get("delay", 0)))
            except (KeyError, TypeError, ValueError) as exc:
                return json_response({"error": "bad_request", "message": str(exc)}, 400)
            return json_response({"faults": ctx.faults.pending()}, 201)
        if route == ("GET", "faults"):
            return json_response({"faults": ctx.faults.pending()})
        if route == ("DELETE", "faults"):
            ctx.faults.reset()
            return json_response({"faults": {}})
        if route == ("GET", "requests"):
            return json_response({"requests": ctx.log.list(service=request.args.get("service"),
                                                           operation=request.args.get("operation"))})
        if route == ("PATCH", "config"):
            return self._patch_config(body)
        service_name, _, rest = subpath.partition("/")
        service = ctx.services.get(service_name)
        if service is not None:
            with service.lock:
                response = service.control(request, rest)
            if response is not None:
                return response
        return json_response({"error": "not_found", "message": f"no control route {request.method} /{subpath}"}, 404)

    def _patch_config(self, body: dict) -> Response:
        config = self.ctx.config
        allowed = {"hang_seconds": float, "rtp_routing_numbers": tuple, "jpm_webhook_url": str,
                   "jpm_webhook_secret": str, "jpm_require_signed_bodies": bool, "usio_initial_balance": Decimal}
        unknown = set(body) - set(allowed)
        if unknown:
            return json_response({"error": "bad_request", "message": f"unknown settings {sorted(unknown)}"}, 400)
        for key, cast in allowed.items():
            if key in body:
                setattr(config, key, cast(body[key]) if cast is not bool else bool(body[key]))
        return json_response({key: getattr(config, key) for key in allowed})
