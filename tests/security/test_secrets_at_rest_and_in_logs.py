"""No plaintext secret at rest, none in the logs, after an end-to-end run through the API.

The run (real API, real sandbox): a bank account saved (PUT), a debit card saved (PUT), an ACH and a pinless
payment, a refund of the pinless one, a prenote processed, a JPM subscription debit whose callbacks come back
through the signed webhook and are processed, the outbox relayed; and an attempt to send a card number and CVV
(refused). Then:
- raw SQL over every column of every table (introspected; each value cast to text) finds no account number,
  routing number, PAN or CVV, and the card tokens only in the card table's two token columns;
- the log records of the run (caplog) and the JSON log output (``json_lines``) contain none of the account numbers,
  routing numbers, tokens, PAN, CVV, API key secrets, the JWT or the webhook secret.
"""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from django.db import connection
from django.test import TestCase

from core.outbox_relay import outbox_relay_run
from payments.prenotes import prenote_process_batch
from syncing.jpm_webhook_jobs import process_jpm_webhook_task
from tests.sandbox_fixtures import WEBHOOK_SECRET
from tests.security.fuzz_helpers import ROUTING, USER
from tests.syncing.conftest_jpm_webhook import deliver, message, queued_ids, sandbox_callbacks

pytestmark = pytest.mark.django_db

ACCOUNT_USIO = "739146285017"
ACCOUNT_JPM = "739146281234"
ACCOUNTS = {"sec-acc-usio": ACCOUNT_USIO, "sec-acc-jpm": ACCOUNT_JPM}
CREDIT_TOKEN, DEBIT_TOKEN = "tok_credit_secscan_7731", "tok_debit_secscan_7732"
PAN, CVV = "4111111111111111", "9182"
TOKEN_COLUMNS = {("cards_debitcard", "transaction_reference_id"), ("cards_debitcard", "debit_transaction_reference_id")}
DIGITS_ONLY = re.compile(r"(?<![0-9A-Za-z-]){}(?![0-9A-Za-z-])")


def key(n: int) -> dict:
    return {"HTTP_IDEMPOTENCY_KEY": f"secscan-{n}"}


def e2e_run(sandbox, client_as, make_jwt, api_client) -> dict:
    """The end-to-end run; returns the secrets it used (API keys, JWT)."""
    service_raw, support_raw = None, None
    service, support = client_as("service"), client_as("support")
    service_raw = service._credentials["HTTP_X_API_KEY"]
    support_raw = support._credentials["HTTP_X_API_KEY"]
    jwt = make_jwt(USER)
    user = api_client
    user.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt}")

    for account_id, number in ACCOUNTS.items():
        r = service.put(f"/api/v1/users/{USER}/bank-accounts/{account_id}",
                        {"account_number": number, "routing_number": ROUTING}, format="json")
        assert r.status_code == 201, r.content
    r = user.put(f"/api/v1/users/{USER}/debit-card",
                 {"masked_card_number": "1111", "card_exp": f"12{date.today().year + 2}",
                  "transaction_reference_id": CREDIT_TOKEN, "debit_transaction_reference_id": DEBIT_TOKEN},
                 format="json")
    assert r.status_code == 201, r.content
    base = {"user_id": USER, "purpose": "float", "payment_type": "debit"}
    ach = service.post("/api/v1/payments", {**base, "payment_method": "ach", "amount": "25.00",
                                            "account_id": "sec-acc-usio"}, format="json", **key(1))
    assert ach.status_code == 201 and ach.json()["payment_status"] == "ACHSENT", ach.content
    card = user.post("/api/v1/payments", {**base, "payment_method": "pinless", "amount": "40.00"}, format="json",
                     **key(2))
    assert card.status_code == 201 and card.json()["payment_status"] == "COMPLETED", card.content
    # card data sent by a confused client: refused, and (checked below) stored and logged nowhere
    refused = service.post("/api/v1/payments", {**base, "payment_method": "pinless", "amount": "1.00",
                                                "card_number": PAN, "cvv": CVV}, format="json", **key(3))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "card_data_not_allowed"
    refund = support.post("/api/v1/refunds", {"user_id": USER, "amount": "10.00", "description": "scan",
                                              "payment_id": card.json()["id"]}, format="json", **key(4))
    assert refund.status_code in (201, 202), refund.content
    prenote = service.post("/api/v1/prenotes", {"user_id": USER, "account_id": "sec-acc-usio", "provider": "usio",
                                                "usio_account": "subscription"}, format="json", **key(5))
    assert prenote.status_code in (200, 202), prenote.content
    assert prenote_process_batch().as_dict()
    sub = service.post("/api/v1/payments", {**base, "purpose": "subscription", "payment_method": "ach",
                                            "amount": "9.99", "account_id": "sec-acc-jpm", "provider": "jpm"},
                       format="json", **key(6))
    assert sub.status_code == 201 and sub.json()["payment_provider"] == "jpm", sub.content
    sandbox.advance(days=3)
    callbacks = sandbox_callbacks(sandbox)
    assert callbacks
    from rest_framework.test import APIClient

    queued_ids()  # nothing left over on the queue from elsewhere
    assert deliver(APIClient(), message(*callbacks)).status_code == 200
    for message_id in queued_ids():
        assert process_jpm_webhook_task.apply(args=[message_id]).successful()
    with TestCase.captureOnCommitCallbacks(execute=True):
        outbox_relay_run()
    return {"service_key": service_raw, "support_key": support_raw, "jwt": jwt}


def scan_database() -> tuple[dict[tuple[str, str], list[str]], int, int]:
    """Every column of every table, each value cast to text: ``{(table, column): [values]}``, tables, columns."""
    values, tables, columns = {}, 0, 0
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            tables += 1
            for column in connection.introspection.get_table_description(cursor, table):
                columns += 1
                q = connection.ops.quote_name
                cursor.execute(f"SELECT CAST({q(column.name)} AS TEXT) FROM {q(table)}")
                values[(table, column.name)] = [row[0] for row in cursor.fetchall() if row[0] is not None]
    return values, tables, columns


def found(needle: str, text: str) -> bool:
    if needle.isdigit():
        return re.search(DIGITS_ONLY.pattern.format(needle), text) is not None
    return needle in text


STATS: dict = {}


def test_no_plaintext_secret_at_rest_or_in_logs_after_an_e2e_run(sandbox, client_as, make_jwt, api_client, caplog,
                                                                   json_lines, settings):
    caplog.set_level("DEBUG")
    secrets = e2e_run(sandbox, client_as, make_jwt, api_client)

    values, tables, columns = scan_database()
    cells = sum(len(v) for v in values.values())
    never = {"account number": [ACCOUNT_USIO, ACCOUNT_JPM], "routing number": [ROUTING], "PAN": [PAN], "CVV": [CVV]}
    leaks = [f"{what} {needle!r} in {table}.{column}" for (table, column), cells_ in values.items()
             for what, needles in never.items() for needle in needles
             if any(found(needle, cell) for cell in cells_)]
    token_places = {(table, column) for (table, column), cells_ in values.items()
                    if any(t in cell for cell in cells_ for t in (CREDIT_TOKEN, DEBIT_TOKEN))}
    assert not leaks, leaks
    assert token_places == TOKEN_COLUMNS, token_places  # the tokens are there, and only there

    records = [record.getMessage() + " " + json.dumps(record.__dict__, default=str) for record in caplog.records]
    lines = [json.dumps(line) for line in json_lines()]
    assert len(records) > 20 and len(lines) > 20  # the run did log
    log_needles = {
        "account number": [ACCOUNT_USIO, ACCOUNT_JPM], "routing number": [ROUTING], "PAN": [PAN], "CVV": [CVV],
        "card token": [CREDIT_TOKEN, DEBIT_TOKEN], "API key": [secrets["service_key"], secrets["support_key"]],
        "JWT": [secrets["jwt"]], "webhook secret": [WEBHOOK_SECRET], "JWT secret": [settings.JWT_SECRET],
    }
    log_leaks = sorted({f"{what} in {source}" for source, texts in (("caplog", records), ("json", lines))
                        for what, needles in log_needles.items() for needle in needles if needle
                        for text in texts if found(needle, text)})
    assert not log_leaks, log_leaks
    STATS.update(tables=tables, columns=columns, cells=cells, caplog_records=len(records), json_lines=len(lines))
    print(f"secrets scan: {STATS}")
