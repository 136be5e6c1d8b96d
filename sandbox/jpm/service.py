"""Fake J.P. Morgan Treasury Services (processors.md; docs/sandbox-jpm.md is the tester's guide).

Routes under ``/jpm/`` (operation names for faults and the request log in brackets):
- ``POST oauth2/token`` [``jpm.token``]: client credentials with a ``private_key_jwt`` assertion, verified with
  the public key at ``config.jpm_public_key_path``;
- ``POST tsapi/v1/payments`` [``jpm.payments``]: ACH payment, idempotent on ``endToEndId``;
- ``GET tsapi/v3/payment/{endToEndId}`` [``jpm.payment_status``];
- ``GET tsapi/v3/transactions`` [``jpm.transactions``]: paginated over the ledger.

Every API route needs ``Authorization: Bearer <token>``. A body sent as ``application/jose`` is a compact JWS
(RS256) verified with the same public key; ``config.jpm_require_signed_bodies`` refuses plain JSON bodies.

Outcomes follow ``sandbox.conventions.account_outcome`` on the counterparty's account number, on the sandbox
clock: settle → PENDING, ACCEPTED (+1 min), CLEARED (+1 h), COMPLETED (+1 day); ``…99NN`` → the same, then
RETURNED (+2 days); ``…98NN`` → REJECTED at once. Every status change queues a callback, delivered by the
control route ``POST /_control/jpm/deliver-callbacks``.

Access tokens and assertions live on real time (the service's clock), not the sandbox clock, so advancing
the clock by days never invalidates the service's cached token.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import random
import secrets
import threading
import time
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import jwt
import requests
from jwt.api_jws import PyJWS
from werkzeug.wrappers import Request, Response

from sandbox.core import SandboxService, json_response, request_json
from sandbox.jpm.wire import (
    ASSERTION_TYPE,
    CALLBACK_TIMEOUT_SECONDS,
    DEFAULT_PAGE_SIZE,
    E_BODY,
    E_DUPLICATE,
    E_NOT_FOUND,
    E_QUERY,
    E_SIGNATURE,
    E_TOKEN,
    E_UNSIGNED,
    FINAL,
    JOSE,
    MAX_CALLBACKS_PER_MESSAGE,
    MAX_PAGE_SIZE,
    TOKEN_PATH,
    TUNABLE_CONFIG,
    BadBody,
    PaymentRecord,
    errors_response,
    iso_time,
    ledger_entry,
    masked_body,
    oauth_error,
    transaction_record,
    validate_payment,
)


class JpmSandbox(SandboxService):
    name = "jpm"

    def __init__(self, ctx):
        super().__init__(ctx)
        # ``self.lock`` is held by the app around control routes (and so serialises callback deliveries);
        # ``_mutex`` guards the state, and is never held during an outgoing HTTP call.
        self._mutex = threading.RLock()
        self._defaults = {name: getattr(ctx.config, name) for name in TUNABLE_CONFIG}
        self._key_cache: tuple[tuple, Any] | None = None
        self._clear()

    def _clear(self) -> None:
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.used_jti: dict[str, float] = {}  # assertion jti -> its exp, kept until then
        self.payments: dict[str, PaymentRecord] = {}
        self.callbacks: list[dict] = []
        self.page_size = DEFAULT_PAGE_SIZE
        self._seq = itertools.count(1)
        self._callback_seq = itertools.count(1)

    # --- framework hooks -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._mutex:
            self._clear()
            for name, value in self._defaults.items():
                setattr(self.ctx.config, name, value)

    def on_clock_advanced(self) -> None:
        with self._mutex:
            self._progress()

    def operation(self, request: Request, subpath: str) -> str:
        path = subpath.strip("/")
        if path == "oauth2/token":
            return "jpm.token"
        if path == "tsapi/v1/payments":
            return "jpm.payments"
        if path.startswith("tsapi/v3/payment/"):
            return "jpm.payment_status"
        if path == "tsapi/v3/transactions":
            return "jpm.transactions"
        return "jpm.other"

    def log_body(self, request: Request) -> Any:
        """Never the assertion; a JWS body is recorded as ``{"jws": <its unverified JSON payload>}``; account
        numbers reduced to their last 4 digits (4-7 digit ones escape the log's digit-run redaction)."""
        if request.path.rstrip("/") == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(request.get_data(cache=True, as_text=True)).items()}
            return {**form, **({"client_assertion": "[REDACTED]"} if "client_assertion" in form else {})}
        if request.mimetype == JOSE:
            try:
                token = request.get_data(cache=True, as_text=True).strip()
                payload = PyJWS().decode_complete(token, options={"verify_signature": False})["payload"]
                return {"jws": masked_body(json.loads(payload))}
            except (jwt.InvalidTokenError, ValueError):
                return {"jws": "[unreadable]"}
        return masked_body(super().log_body(request))

    def handle(self, request: Request, subpath: str) -> Response:
        path = subpath.strip("/")
        if path == "oauth2/token":
            if request.method != "POST":
                return oauth_error("invalid_request", "use POST", 405)
            return self._token(request)
        route = self.operation(request, subpath)
        if route == "jpm.other":
            return json_response({"error": "not_found", "message": f"no JPM route /{path}"}, 404)
        expected = "POST" if route == "jpm.payments" else "GET"
        if request.method != expected:
            return json_response({"error": "method_not_allowed"}, 405, {"Allow": expected})
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        if route == "jpm.payments":
            return self._submit(request)
        if route == "jpm.payment_status":
            return self._status(unquote(path[len("tsapi/v3/payment/"):]))
        return self._transactions(request)

    # --- auth ----------------------------------------------------------------------------------------------------
    def _public_key(self):
        path = self.ctx.config.jpm_public_key_path
        if not path:
            return None
        try:
            stat = Path(path).stat()
            marker = (path, stat.st_mtime_ns, stat.st_size)
            if self._key_cache is None or self._key_cache[0] != marker:
                from cryptography.hazmat.primitives import serialization

                self._key_cache = (marker, serialization.load_pem_public_key(Path(path).read_bytes()))
            return self._key_cache[1]
        except (OSError, ValueError):
            return None

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.get_data(cache=True, as_text=True)).items()}
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "grant_type must be client_credentials", 400)
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return oauth_error("invalid_request", "a jwt-bearer client_assertion is required", 400)
        key = self._public_key()
        if key is None:
            return oauth_error("invalid_client", "the sandbox has no readable jpm_public_key_path", 401)
        try:
            claims = jwt.decode(form["client_assertion"], key, algorithms=["RS256"],
                                options={"verify_aud": False, "require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.InvalidTokenError as exc:
            return oauth_error("invalid_client", f"client assertion refused: {type(exc).__name__}", 401)
        client_id = self.ctx.config.jpm_client_id
        if claims["iss"] != client_id or claims["sub"] != client_id:
            return oauth_error("invalid_client", "iss and sub must be the client id", 401)
        if form.get("client_id") not in (None, client_id):
            return oauth_error("invalid_client", "client_id does not match the assertion", 401)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not any(isinstance(aud, str) and urlparse(aud).scheme in ("http", "https")
                   and urlparse(aud).path.rstrip("/") == TOKEN_PATH for aud in audiences):
            return oauth_error("invalid_client", "aud must be the token endpoint URL", 401)
        now = time.time()
        with self._mutex:
            self.used_jti = {jti: exp for jti, exp in self.used_jti.items() if exp >= now}
            if claims["jti"] in self.used_jti:
                return oauth_error("invalid_client", "client assertion jti was already used", 401)
            self.used_jti[str(claims["jti"])] = float(claims["exp"])
            ttl = int(self.ctx.config.jpm_token_ttl_seconds)
            token = secrets.token_urlsafe(32)
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
            self.tokens[token] = now + ttl
        return json_response({"access_token": token, "token_type": "Bearer", "expires_in": ttl})

    def _authenticate(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._mutex:
            expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= time.time():
            return errors_response([E_TOKEN], 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    def _body(self, request: Request) -> Any:
        """The JSON body (verifying a JWS one). Raises ``BadBody`` with the refusal."""
        raw = request.get_data(cache=True)
        if request.mimetype == JOSE:
            key = self._public_key()
            try:
                if key is None:
                    raise jwt.InvalidSignatureError("no public key")
                payload = PyJWS().decode_complete(raw.strip(), key, algorithms=["RS256"])["payload"]
            except jwt.InvalidTokenError as exc:
                raise BadBody(errors_response([E_SIGNATURE], 401)) from exc
            raw = payload
        elif self.ctx.config.jpm_require_signed_bodies:
            raise BadBody(errors_response([E_UNSIGNED], 401))
        try:
            return json.loads(raw or b"null", parse_float=Decimal)
        except ValueError as exc:
            raise BadBody(errors_response([E_BODY], 400)) from exc

    # --- payments ------------------------------------------------------------------------------------------------
    def _submit(self, request: Request) -> Response:
        try:
            body = self._body(request)
        except BadBody as bad:
            return bad.response
        payment = body.get("payments") if isinstance(body, dict) else None
        if not isinstance(payment, dict):
            return errors_response([E_BODY], 400)
        errors, parsed = validate_payment(payment)
        if errors:
            return errors_response(errors, 400)
        canonical = json.dumps(payment, sort_keys=True, default=str)
        with self._mutex:
            self._progress()
            existing = self.payments.get(parsed["end_to_end_id"])
            if existing is not None:
                if existing.canonical != canonical:
                    return errors_response([E_DUPLICATE], 422)
                return json_response(existing.answer(), 202)  # idempotent: the same answer, no new entry
            now = self.ctx.clock.now()
            record = PaymentRecord(seq=next(self._seq), firm_root_id=str(uuid.uuid4()), created_at=now,
                              canonical=canonical, **parsed)
            self.payments[record.end_to_end_id] = record
            if record.outcome.kind == "reject":
                record.exceptions = [record.reason("Rejected before the ACH network")]
                self._set_status(record, "REJECTED", now)
            else:
                self._set_status(record, "PENDING", now)
            return json_response(record.answer(), 202)

    def _status(self, end_to_end_id: str) -> Response:
        with self._mutex:
            self._progress()
            record = self.payments.get(end_to_end_id)
            if record is None:
                return errors_response([E_NOT_FOUND], 404)
            return json_response({"paymentStatus": {"status": record.status,
                                                    "createDateTime": iso_time(record.created_at),
                                                    "exception": list(record.exceptions)}})

    def _transactions(self, request: Request) -> Response:
        args = request.args
        accounts = {a.strip() for a in args.get("accountIds", "").split(",") if a.strip()}
        try:
            start, end = date.fromisoformat(args["startDate"]), date.fromisoformat(args["endDate"])
            page_number = int(args.get("pageNumber", "1"))
        except (KeyError, ValueError):
            return errors_response([E_QUERY], 400)
        if not accounts or start > end or page_number < 1:
            return errors_response([E_QUERY], 400)
        with self._mutex:
            self._progress()
            records = sorted((p for p in self.payments.values()
                              if p.company_account_id in accounts and start <= p.requested_execution_date <= end),
                             key=lambda p: p.seq)
            size = self.page_size
            data = [transaction_record(p) for p in records[(page_number - 1) * size: page_number * size]]
        total_pages = max(1, math.ceil(len(records) / size))
        return json_response({"data": data, "pagination": {"pageNumber": page_number, "totalPages": total_pages,
                                                           "pageSize": size, "totalRecords": len(records)}})

    # --- time and callbacks --------------------------------------------------------------------------------------
    def _set_status(self, record: PaymentRecord, status: str, at: datetime) -> None:
        record.status = status
        record.history.append((status, at))
        self.callbacks.append({
            "id": next(self._callback_seq),
            "transferType": record.transfer_type,
            "callback": {"endToEndId": record.end_to_end_id, "firmRootId": record.firm_root_id,
                         "createDateTime": iso_time(at), "paymentStatus": status,
                         "exceptions": list(record.exceptions)},
            "attempts": 0,
            "delivered_at": None,
            "last_http_status": None,
        })

    def _progress(self) -> None:
        """Apply every status change that is due at the sandbox clock's now, queuing a callback for each."""
        now = self.ctx.clock.now()
        for record in sorted(self.payments.values(), key=lambda p: p.seq):
            if record.status in FINAL:
                continue
            done = {status for status, _ in record.history}
            for status, at in record.schedule():
                if status in done or at > now:
                    continue
                if status == "RETURNED":
                    record.exceptions = [record.reason("Returned by the receiving bank")]
                self._set_status(record, status, at)

    def _deliver(self, body: dict) -> Response:
        config = self.ctx.config
        try:
            url = str(body.get("url") or config.jpm_webhook_url)
            duplicate = int(body.get("duplicate", 0))
            batch_size = int(body.get("batch_size", MAX_CALLBACKS_PER_MESSAGE))
            shuffle = bool(body.get("shuffle", False))
            seed = body.get("seed")
            timestamp = body.get("timestamp")
            timestamp = None if timestamp is None else int(timestamp)
        except (TypeError, ValueError):
            return json_response({"error": "bad_request", "message": "duplicate, batch_size, timestamp: integers"},
                                 400)
        if not 0 <= duplicate <= 10 or not 1 <= batch_size <= MAX_CALLBACKS_PER_MESSAGE:
            return json_response({"error": "bad_request",
                                  "message": f"duplicate is 0-10, batch_size 1-{MAX_CALLBACKS_PER_MESSAGE}"}, 400)
        if urlparse(url).scheme not in ("http", "https"):
            return json_response({"error": "bad_request", "message": "url must be http(s)"}, 400)
        rng = random.Random(seed)  # noqa: S311 (test ordering, not security)
        with self._mutex:
            self._progress()
            pending = [item for item in self.callbacks if item["delivered_at"] is None]
            secret = config.jpm_webhook_secret
        groups: dict[str, list[dict]] = {}
        for item in pending:  # credits and debits are never mixed in one message (processors.md)
            groups.setdefault(item["transferType"], []).append(item)
        messages = []
        for items in groups.values():
            if shuffle:
                rng.shuffle(items)
            messages += [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
        if shuffle:
            rng.shuffle(messages)
        summary = []
        for items in messages:
            payload = json.dumps({"callbacks": [item["callback"] for item in items]}).encode()
            statuses = []
            for _ in range(1 + duplicate):
                stamp = timestamp if timestamp is not None else int(time.time())
                signature = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
                try:
                    answer = requests.post(url, data=payload, timeout=CALLBACK_TIMEOUT_SECONDS, headers={
                        "Content-Type": "application/json", "X-JPM-Signature": f"t={stamp},v1={signature}"})
                    status, error = answer.status_code, None
                except requests.RequestException as exc:
                    status, error = None, type(exc).__name__
                statuses.append(status if error is None else error)
                with self._mutex:
                    for item in items:
                        item["attempts"] += 1
                        item["last_http_status"] = status
                        if status == 200 and item["delivered_at"] is None:
                            item["delivered_at"] = iso_time(self.ctx.clock.now())
            summary.append({"transferType": items[0]["transferType"], "count": len(items),
                            "endToEndIds": [item["callback"]["endToEndId"] for item in items],
                            "statuses": statuses})
        with self._mutex:
            remaining = sum(1 for item in self.callbacks if item["delivered_at"] is None)
        return json_response({"url": url, "messages": summary, "sent": sum(len(m["statuses"]) for m in summary),
                              "delivered": sum(1 for item in pending if item["delivered_at"] is not None),
                              "pending": remaining})

    # --- control routes ------------------------------------------------------------------------------------------
    def control(self, request: Request, subpath: str) -> Response | None:
        route = (request.method, subpath.strip("/"))
        body = request_json(request)
        body = body if isinstance(body, dict) else {}
        if route == ("POST", "deliver-callbacks"):
            return self._deliver(body)
        if route == ("GET", "callbacks"):
            with self._mutex:
                self._progress()
                items = [dict(item) for item in self.callbacks]
            return json_response({"pending": [i for i in items if i["delivered_at"] is None],
                                  "delivered": [i for i in items if i["delivered_at"] is not None]})
        if route == ("GET", "ledger"):
            with self._mutex:
                self._progress()
                ledger = [ledger_entry(p) for p in sorted(self.payments.values(), key=lambda p: p.seq)]
            return json_response({"ledger": ledger})
        if route == ("PUT", "page-size"):
            size = body.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
                return json_response({"error": "bad_request", "message": f"size is 1-{MAX_PAGE_SIZE}"}, 400)
            with self._mutex:
                self.page_size = size
            return json_response({"size": size})
        if route == ("PUT", "token-ttl"):
            seconds = body.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
                return json_response({"error": "bad_request", "message": "seconds is an integer >= 1"}, 400)
            self.ctx.config.jpm_token_ttl_seconds = seconds
            return json_response({"seconds": seconds})
        if route == ("POST", "tokens/revoke"):
            with self._mutex:
                revoked = len(self.tokens)
                self.tokens.clear()
            return json_response({"revoked": revoked})
        return None


