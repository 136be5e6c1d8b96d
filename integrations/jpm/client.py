"""The J.P. Morgan Treasury Services client (processors.md; SPEC §5, §7.2, §7.5, §7.7). HTTP only.

Operations:
- ``submit_ach_payment`` → ``POST /tsapi/v1/payments`` → ``JpmSubmission`` (202). JPM is idempotent on
  ``endToEndId`` (our payment id): after a ``ProcessorTimeout`` the same call may be made again deliberately
  (the reconciler), never automatically here.
- ``get_payment_status`` → ``GET /tsapi/v3/payment/{endToEndId}`` → ``JpmPaymentStatus``, or
  ``JpmPaymentNotFound`` when JPM answers 404 *with its error body* ("never received": the reconciler's signal).
  A bare 404 (no JPM error body: a wrong base URL, a proxy) is a ``ProcessorProtocolError``, never "not found".
- ``list_transactions`` / ``iter_transactions`` → ``GET /tsapi/v3/transactions`` following ``pageNumber`` up to
  ``totalPages``.

Error mapping (on top of ``integrations.http``): 4xx with a JPM error body → ``ProcessorDeclined(code=errorCode)``;
4xx without one → ``ProcessorProtocolError``; 401/403 → ``ProcessorAuthError``. A 401 also drops the cached
token; a GET that used a cached token is then retried once with a fresh one (reads are safe to repeat), a POST
is not (no automatic re-POST of payments: the caller decides).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from django.conf import settings

from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorProtocolError,
)
from integrations.http import DEFAULT_KEEPALIVE_SECONDS, Exchange, HttpClient
from integrations.jpm import adapter
from integrations.jpm.adapter import (
    JpmPaymentNotFound,
    JpmPaymentStatus,
    JpmSubmission,
    JpmTransaction,
    JpmTransactionsPage,
)
from integrations.jpm.auth import JpmTokenSource
from integrations.jpm.signing import CONTENT_TYPE as JOSE_CONTENT_TYPE
from integrations.jpm.signing import JwsSigner

PROCESSOR = "jpm"
# ISO 20022 Max35Text, restricted to characters that are safe in a URL path segment.
END_TO_END_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,34}$")
MAX_PAGES = 10_000


class JpmClient(HttpClient):
    processor = PROCESSOR

    def __init__(
        self,
        *,
        base_url: str,
        tokens: JpmTokenSource,
        connect_timeout: float,
        read_timeout: float,
        account_id: str = "",
        account_routing_number: str = "",
        company_name: str = "",
        signer: JwsSigner | None = None,
        **kwargs,
    ):
        super().__init__(base_url=base_url, connect_timeout=connect_timeout, read_timeout=read_timeout, **kwargs)
        self.tokens = tokens
        self.account_id = account_id
        self.account_routing_number = account_routing_number
        self.company_name = company_name
        self.signer = signer

    # --- operations ----------------------------------------------------------------------------------------------
    def submit_ach_payment(
        self,
        *,
        end_to_end_id: str,
        amount: Decimal,
        direction: str,
        account_number: str,
        routing_number: str,
        account_type: str,
        name: str,
        requested_execution_date: date,
        prenote: bool = False,
    ) -> JpmSubmission:
        """Submit one ACH debit or credit (or a zero-amount prenote) against our company account.

        Raises ``ValueError`` for arguments no processor could accept (a programming error); JPM's own
        validation answers ``ProcessorDeclined`` with its error code. Not retried: after ``ProcessorTimeout``
        look the payment up (``get_payment_status``) or re-submit the same endToEndId deliberately.
        """
        operation = "submit_ach_payment"
        _check_submission(end_to_end_id=end_to_end_id, amount=amount, direction=direction,
                          account_type=account_type, prenote=prenote)
        missing = [name for name, value in (("JPM_ACCOUNT_ID", self.account_id),
                                            ("JPM_ACCOUNT_ROUTING_NUMBER", self.account_routing_number),
                                            ("JPM_COMPANY_NAME", self.company_name)) if not value]
        if missing:
            raise ProcessorConfigurationError(f"{', '.join(missing)} not set", processor=PROCESSOR,
                                              operation=operation)
        body = adapter.payment_request(
            end_to_end_id=end_to_end_id, amount=amount, direction=direction, account_number=str(account_number),
            routing_number=str(routing_number), account_type=account_type, name=name,
            requested_execution_date=requested_execution_date, prenote=prenote,
            company_account_id=self.account_id, company_routing_number=self.account_routing_number,
            company_name=self.company_name,
        )
        audit = adapter.redacted_payment_request(body)
        if self.signer is not None:
            response, exchange = self._api("POST", "tsapi/v1/payments", operation=operation,
                                           data=self.signer.sign(body).encode(), audit_body=audit,
                                           headers={"Content-Type": JOSE_CONTENT_TYPE})
        else:
            response, exchange = self._api("POST", "tsapi/v1/payments", operation=operation, json_body=body,
                                           audit_body=audit)
        if response.status_code in (200, 201, 202):
            return adapter.parse_submission(self.json_body(response, exchange, operation=operation),
                                            end_to_end_id=end_to_end_id, exchange=exchange)
        raise self._refusal(response, exchange, operation)

    def get_payment_status(self, end_to_end_id: str) -> JpmPaymentStatus | JpmPaymentNotFound:
        """The payment's JPM status, or ``JpmPaymentNotFound`` when JPM has never received it."""
        operation = "get_payment_status"
        if not END_TO_END_ID.match(end_to_end_id or ""):
            raise ValueError("endToEndId must be 1-35 characters [A-Za-z0-9._-], starting alphanumeric")
        response, exchange = self._api("GET", f"tsapi/v3/payment/{quote(end_to_end_id, safe='')}",
                                       operation=operation)
        if response.status_code == 200:
            return adapter.parse_payment_status(self.json_body(response, exchange, operation=operation),
                                                end_to_end_id=end_to_end_id, exchange=exchange)
        if response.status_code == 404:
            details = adapter.error_details(_json_or_none(response))
            if details is None:
                raise ProcessorProtocolError("HTTP 404 without a JPM error body (wrong base URL?)",
                                             processor=PROCESSOR, operation=operation, exchange=exchange)
            return JpmPaymentNotFound(end_to_end_id=end_to_end_id, error_code=details[0][0], exchange=exchange)
        raise self._refusal(response, exchange, operation)

    def get_transactions_page(self, *, start: date, end: date, page_number: int = 1) -> JpmTransactionsPage:
        operation = "list_transactions"
        if not self.account_id:
            raise ProcessorConfigurationError("JPM_ACCOUNT_ID not set", processor=PROCESSOR, operation=operation)
        if start > end:
            raise ValueError("start is after end")
        params = {"accountIds": self.account_id, "startDate": start.isoformat(), "endDate": end.isoformat(),
                  "pageNumber": str(page_number)}
        response, exchange = self._api("GET", "tsapi/v3/transactions", operation=operation, params=params)
        if response.status_code != 200:
            raise self._refusal(response, exchange, operation)
        page = adapter.parse_transactions_page(self.json_body(response, exchange, operation=operation),
                                               exchange=exchange)
        if page.page_number != page_number:
            raise ProcessorProtocolError(f"asked for page {page_number}, got page {page.page_number}",
                                         processor=PROCESSOR, operation=operation, exchange=exchange)
        return page

    def iter_transactions(self, *, start: date, end: date) -> Iterator[JpmTransaction]:
        """Every transaction of our account (JPM_ACCOUNT_ID) dated ``start``..``end`` inclusive, page by page."""
        page_number = 1
        while True:
            page = self.get_transactions_page(start=start, end=end, page_number=page_number)
            yield from page.transactions
            if page_number >= page.total_pages:
                return
            if page_number >= MAX_PAGES:
                raise ProcessorProtocolError(f"more than {MAX_PAGES} pages", processor=PROCESSOR,
                                             operation="list_transactions", exchange=page.exchange)
            page_number += 1

    def list_transactions(self, *, start: date, end: date) -> list[JpmTransaction]:
        return list(self.iter_transactions(start=start, end=end))

    # --- plumbing ------------------------------------------------------------------------------------------------
    def _api(self, method: str, path: str, *, operation: str, headers: dict | None = None, **kwargs: Any):
        """``_send`` with a bearer token; a 401 drops the token, and a GET that used a cached one is retried once."""
        retried = False
        while True:
            token, from_cache = self.tokens.get(self)
            try:
                return self._send(method, path, operation=operation,
                                  headers={**(headers or {}), "Authorization": f"Bearer {token}"}, **kwargs)
            except ProcessorAuthError as exc:
                if exc.exchange is None or exc.exchange.status != 401:
                    raise
                self.tokens.invalidate(token)
                if method != "GET" or not from_cache or retried:
                    raise
                retried = True

    def _refusal(self, response, exchange: Exchange, operation: str) -> Exception:
        """The error for a non-success answer that the base did not already map (i.e. not 5xx/401/403)."""
        details = adapter.error_details(_json_or_none(response)) if 400 <= response.status_code < 500 else None
        if details is None:
            return ProcessorProtocolError(f"unexpected HTTP {response.status_code}", processor=PROCESSOR,
                                          operation=operation, exchange=exchange)
        code, description = details[0]
        message = "; ".join(f"{c}: {d}" if d else c for c, d in details)
        return ProcessorDeclined(description or message, code=code, processor=PROCESSOR, operation=operation,
                                 exchange=exchange)


def _json_or_none(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _check_submission(*, end_to_end_id: str, amount: Decimal, direction: str, account_type: str,
                      prenote: bool) -> None:
    if not isinstance(end_to_end_id, str) or not END_TO_END_ID.match(end_to_end_id):
        raise ValueError("endToEndId must be 1-35 characters [A-Za-z0-9._-], starting alphanumeric")
    if direction not in adapter.DIRECTIONS:
        raise ValueError(f"direction must be one of {adapter.DIRECTIONS}")
    if account_type not in adapter.ACCOUNT_TYPES:
        raise ValueError(f"account_type must be one of {tuple(adapter.ACCOUNT_TYPES)}")
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError("amount must be a finite Decimal")
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError("amount must be non-negative with at most two decimals")
    if prenote and amount != 0:
        raise ValueError("a prenote has a zero amount")
    if not prenote and amount == 0:
        raise ValueError("a payment amount must be positive")


# --- factory -----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _load_key(path: str, mtime_ns: int, size: int):
    with open(path, "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


def _private_key(path: str, setting: str):
    try:
        stat = os.stat(path)
        return _load_key(path, stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError, TypeError) as exc:
        # The message names the setting, never the key material.
        raise ProcessorConfigurationError(f"{setting} is not a readable PEM private key", processor=PROCESSOR,
                                          operation="configure") from exc


def jpm_client() -> JpmClient:
    """A client configured from the JPM_* settings, read now (so ``override_settings`` applies). Its calls go
    through the thread's kept-alive connections, none reused after ``PROCESSOR_KEEPALIVE_SECONDS`` idle
    (``integrations.http._thread_manager``)."""
    required = ("JPM_BASE_URL", "JPM_TOKEN_URL", "JPM_CLIENT_ID", "JPM_PRIVATE_KEY_PATH")
    missing = [name for name in required if not getattr(settings, name, "")]
    if missing:
        raise ProcessorConfigurationError(f"{', '.join(missing)} not set", processor=PROCESSOR,
                                          operation="configure")
    tokens = JpmTokenSource(client_id=settings.JPM_CLIENT_ID, token_url=settings.JPM_TOKEN_URL,
                            private_key=_private_key(settings.JPM_PRIVATE_KEY_PATH, "JPM_PRIVATE_KEY_PATH"),
                            key_id=settings.JPM_KEY_ID)
    signer = None
    if settings.JPM_SIGN_REQUESTS:
        setting = "JPM_SIGNING_KEY_PATH" if settings.JPM_SIGNING_KEY_PATH else "JPM_PRIVATE_KEY_PATH"
        signer = JwsSigner(private_key=_private_key(getattr(settings, setting), setting), key_id=settings.JPM_KEY_ID)
    cert_path, key_path = settings.JPM_MTLS_CERT_PATH, settings.JPM_MTLS_KEY_PATH
    if bool(cert_path) != bool(key_path):
        raise ProcessorConfigurationError("set both JPM_MTLS_CERT_PATH and JPM_MTLS_KEY_PATH, or neither",
                                          processor=PROCESSOR, operation="configure")
    return JpmClient(
        base_url=settings.JPM_BASE_URL,
        tokens=tokens,
        connect_timeout=settings.JPM_CONNECT_TIMEOUT,
        read_timeout=settings.JPM_READ_TIMEOUT,
        account_id=settings.JPM_ACCOUNT_ID,
        account_routing_number=settings.JPM_ACCOUNT_ROUTING_NUMBER,
        company_name=settings.JPM_COMPANY_NAME,
        signer=signer,
        cert=(cert_path, key_path) if cert_path else None,
        verify=settings.JPM_CA_BUNDLE or True,
        keepalive_seconds=getattr(settings, "PROCESSOR_KEEPALIVE_SECONDS", DEFAULT_KEEPALIVE_SECONDS),
    )
