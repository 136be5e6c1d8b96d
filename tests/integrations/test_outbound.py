"""Slack and Transaction Service clients against the sandbox over real HTTP, and the HTTP base's error mapping."""

import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from integrations.errors import (
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)
from integrations.slack import slack_client
from integrations.transaction_service import StatusNotification, transaction_service_client


def _notification(event_id: str = "evt-1") -> StatusNotification:
    return StatusNotification(event_id=event_id, confirmation_id="c-1", user_id="u-1", payment_status="COMPLETED",
                              previous_status="ACHSENT", amount=Decimal("12.30"),
                              occurred_at=datetime(2026, 11, 20, 17, 0, tzinfo=UTC))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slack_message_is_delivered(sandbox):
    posted = slack_client().post_message(text="Balance report: ok", blocks=[{"type": "section"}])
    assert sandbox.received("slack") == [{"text": "Balance report: ok", "blocks": [{"type": "section"}]}]
    assert posted.exchange.status == 200
    assert posted.exchange.url == "slack:incoming-webhook"


def test_slack_webhook_url_never_reaches_the_audit_record(sandbox, settings):
    settings.SLACK_WEBHOOK_URL = f"{sandbox.url}/slack/services/T000/B000/XXXXsecretpart"
    with pytest.raises(ProcessorDeclined) as exc:  # the sandbox has no such path: 404 no_service
        slack_client().post_message(text="hello")
    assert exc.value.code == "no_service"
    assert "secretpart" not in str(exc.value.exchange.as_dict())


def test_slack_refusal_is_declined_and_nothing_recorded(sandbox):
    client = slack_client()
    with pytest.raises(ValueError):
        client.post_message(text="  ")
    assert sandbox.requests("slack") == []
    assert sandbox.received("slack") == []


def test_transaction_service_accepts_and_deduplicates_on_event_id(sandbox):
    client = transaction_service_client()
    first = client.post_payment_status(_notification())
    again = client.post_payment_status(_notification())
    assert (first.duplicate, again.duplicate) == (False, True)
    received = sandbox.received("transactions")
    assert received == [_notification().as_json()]
    assert received[0]["amount"] == "12.30"


def test_transaction_service_5xx_is_unavailable_and_not_retried(sandbox):
    sandbox.fault("transactions.payments", "500")
    with pytest.raises(ProcessorUnavailable) as exc:
        transaction_service_client().post_payment_status(_notification())
    assert exc.value.retryable is True
    assert exc.value.exchange.status == 500
    assert len(sandbox.requests("transactions")) == 1
    assert sandbox.received("transactions") == []


def test_hang_beyond_read_timeout_is_timeout_outcome_unknown(sandbox):
    sandbox.fault("transactions.payments", "timeout")
    with pytest.raises(ProcessorTimeout):
        transaction_service_client().post_payment_status(_notification("evt-timeout"))
    # the peer did receive it: that is what "outcome unknown" means
    assert [n["event_id"] for n in sandbox.received("transactions")] == ["evt-timeout"]
    assert len(sandbox.requests("transactions")) == 1


def test_malformed_answer_is_protocol_error(sandbox):
    sandbox.fault("transactions.payments", "malformed")
    with pytest.raises(ProcessorProtocolError):
        transaction_service_client().post_payment_status(_notification())


def test_refused_port_is_unavailable(settings):
    settings.TRANSACTION_SERVICE_URL = f"http://127.0.0.1:{_free_port()}/transactions"
    with pytest.raises(ProcessorUnavailable) as exc:
        transaction_service_client().post_payment_status(_notification())
    assert exc.value.exchange.status is None
    assert exc.value.exchange.error == "could not connect"


@override_settings(TRANSACTION_SERVICE_URL="", SLACK_WEBHOOK_URL="")
def test_unconfigured_clients_say_so():
    with pytest.raises(ProcessorConfigurationError):
        transaction_service_client()
    with pytest.raises(ProcessorConfigurationError):
        slack_client()


def test_transaction_service_missing_fields_is_declined(sandbox):
    client = transaction_service_client()
    _, exchange = client._send("POST", "payments/status", operation="probe", json_body={"event_id": "x"})
    assert exchange.status == 422
    assert sandbox.received("transactions") == []
