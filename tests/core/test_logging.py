"""core.logging end to end: a real logger -> handler (project filters) -> project JSON formatter.

Every test parses each emitted line as JSON and checks both the field it is about and that the raw
secret appears nowhere in the line. No database is needed.
"""

import io
import json
import logging
from datetime import datetime
from types import SimpleNamespace

import pytest

from core import celery_signals
from core.logging import JsonFormatter, RedactionFilter, RequestIdFilter
from core.request_context import get_request_id, request_id_var, reset_request_id, set_request_id

ACCOUNT = "123456789012"
UUID = "3f2b8c1e-1234-5678-9abc-123456789012"


class Capture:
    """A logger whose only handler writes to a StringIO through the project's filters and formatter."""

    def __init__(self, name: str, *, handler_count: int = 1, with_filters: bool = True) -> None:
        self.stream = io.StringIO()
        self.logger = logging.getLogger(name)
        self.logger.handlers = []
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        for _ in range(handler_count):
            handler = logging.StreamHandler(self.stream)
            if with_filters:
                handler.addFilter(RequestIdFilter())
                handler.addFilter(RedactionFilter())
            handler.setFormatter(JsonFormatter())
            self.logger.addHandler(handler)

    def raw_lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.raw_lines()]

    def only(self) -> tuple[str, dict]:
        lines = self.raw_lines()
        assert len(lines) == 1, lines
        return lines[0], json.loads(lines[0])

    def close(self) -> None:
        self.logger.handlers = []


@pytest.fixture(autouse=True)
def no_request_id():
    token = set_request_id(None)
    yield
    reset_request_id(token)


@pytest.fixture
def capture(request):
    cap = Capture(f"tests.core.test_logging.{request.node.name}")
    yield cap
    cap.close()


# --- shape of a line ---------------------------------------------------------------------------


def test_line_is_one_json_object_with_the_core_keys(capture):
    capture.logger.info("hello %s", "world", extra={"payment_id": UUID})

    line, data = capture.only()
    assert "\n" not in line
    assert list(data)[:5] == ["timestamp", "level", "logger", "message", "request_id"]
    assert data["level"] == "INFO"
    assert data["logger"] == capture.logger.name
    assert data["message"] == "hello world"
    assert data["payment_id"] == UUID
    assert "exc_info" not in data


def test_timestamp_is_iso8601_utc_with_milliseconds(capture):
    capture.logger.warning("tick")

    _, data = capture.only()
    ts = data["timestamp"]
    assert ts.endswith("Z")
    assert len(ts) == len("2026-11-21T10:00:00.123Z")
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert parsed.utcoffset().total_seconds() == 0
    assert abs(parsed.timestamp() - datetime.now().timestamp()) < 60


def test_request_id_is_in_every_line(capture):
    capture.logger.info("before")
    token = set_request_id("req-42")
    try:
        capture.logger.info("during")
        capture.logger.error("during, again")
    finally:
        reset_request_id(token)
    capture.logger.info("after")

    assert [r["request_id"] for r in capture.records()] == ["-", "req-42", "req-42", "-"]


# --- redaction through the whole pipeline ------------------------------------------------------


def test_account_number_in_percent_args_is_masked(capture):
    capture.logger.info("debiting account %s for %s", ACCOUNT, "1234.56")

    line, data = capture.only()
    assert data["message"] == "debiting account ****9012 for 1234.56"
    assert ACCOUNT not in line


def test_sensitive_extra_key_is_redacted_entirely(capture):
    capture.logger.info("verifying", extra={"routing_number": "021000021", "bank": "Chase"})

    line, data = capture.only()
    assert data["routing_number"] == "[REDACTED]"
    assert data["bank"] == "Chase"
    assert "021000021" not in line


def test_token_nested_two_levels_in_an_extra_dict_is_redacted(capture):
    capture.logger.info(
        "webhook",
        extra={"payload": {"auth": {"token": "tok_live_abc", "scheme": "custom"}, "note": f"acct {ACCOUNT}"}},
    )

    line, data = capture.only()
    assert data["payload"]["auth"] == {"token": "[REDACTED]", "scheme": "custom"}
    assert data["payload"]["note"] == "acct ****9012"
    assert "tok_live_abc" not in line
    assert ACCOUNT not in line


def test_pan_with_spaces_is_masked(capture):
    capture.logger.info("card 4111 1111 1111 1111 declined")

    line, data = capture.only()
    assert data["message"] == "card ****1111 declined"
    assert "4111 1111" not in line


def test_authorization_header_text_is_redacted(capture):
    capture.logger.info("upstream headers: Authorization: Bearer abc.def")
    capture.logger.info("retrying with Bearer abc.def")

    first, second = capture.records()
    assert first["message"] == "upstream headers: Authorization: [REDACTED]"
    assert second["message"] == "retrying with Bearer [REDACTED]"
    assert "abc.def" not in capture.stream.getvalue()


def test_exception_message_with_account_number_is_masked_in_exc_info(capture):
    try:
        raise ValueError(f"insufficient funds in account {ACCOUNT}")
    except ValueError:
        capture.logger.exception("debit failed")

    line, data = capture.only()
    assert data["level"] == "ERROR"
    assert "Traceback (most recent call last)" in data["exc_info"]
    assert "ValueError: insufficient funds in account ****9012" in data["exc_info"]
    assert "****" in data["exc_info"]
    assert ACCOUNT not in data["exc_info"]
    assert ACCOUNT not in line


def test_chained_exception_and_stack_info_are_masked(capture):
    try:
        try:
            raise KeyError(f"password={ACCOUNT}")
        except KeyError as exc:
            raise RuntimeError(f"lookup of {ACCOUNT} failed") from exc
    except RuntimeError:
        capture.logger.error("failed", exc_info=True, stack_info=True, extra={"ref": f"acct {ACCOUNT}"})

    line, data = capture.only()
    assert "RuntimeError: lookup of ****9012 failed" in data["exc_info"]
    assert "password=[REDACTED]" in data["exc_info"]
    assert data["stack_info"].startswith("Stack (most recent call last)")
    assert data["ref"] == "acct ****9012"
    assert ACCOUNT not in line


def test_non_json_extra_objects_are_redacted_after_conversion(capture):
    class Request:
        def __str__(self) -> str:
            return f"<Request GET /cb?token=abc&acct={ACCOUNT}>"

    capture.logger.info("callback", extra={"request": Request()})

    line, data = capture.only()
    assert data["request"] == "<Request GET /cb?token=[REDACTED]&acct=****9012>"
    assert ACCOUNT not in line


def test_dict_message_is_redacted_and_merged(capture):
    capture.logger.info({"message": "charge", "cvv": "123", "note": f"acct {ACCOUNT}"})

    line, data = capture.only()
    assert data["message"] == "charge"
    assert data["cvv"] == "[REDACTED]"
    assert data["note"] == "acct ****9012"
    assert ACCOUNT not in line


def test_uuids_timestamps_and_amounts_are_left_intact(capture):
    capture.logger.info(
        "payment %s of %s due %s",
        UUID,
        "1234.56",
        "2026-11-21T10:00:00Z",
        extra={"payment_id": UUID, "amount": "1234.56", "due": "2026-11-21T10:00:00Z"},
    )

    _, data = capture.only()
    assert data["message"] == f"payment {UUID} of 1234.56 due 2026-11-21T10:00:00Z"
    assert data["payment_id"] == UUID
    assert data["amount"] == "1234.56"
    assert data["due"] == "2026-11-21T10:00:00Z"


def test_raw_secrets_never_appear_anywhere_in_the_output(capture):
    token = set_request_id("req-secrets")
    try:
        capture.logger.info(
            "acct %s pan %s key %s",
            ACCOUNT,
            "4111-1111-1111-1111",
            "psk_live_abc.def",
            extra={"password": "hunter2", "headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
        )
        try:
            raise ValueError(f"api_key=psk_live_abc.def account {ACCOUNT}")
        except ValueError:
            capture.logger.exception("boom %s", ACCOUNT)
    finally:
        reset_request_id(token)

    lines = capture.raw_lines()
    assert len(lines) == 2
    for line in lines:
        data = json.loads(line)
        assert data["request_id"] == "req-secrets"
        for secret in (ACCOUNT, "4111-1111", "psk_live", "hunter2", "dXNlcjpwYXNz"):
            assert secret not in line, (secret, line)


# --- idempotency and robustness ----------------------------------------------------------------


def _record(logger: logging.Logger) -> logging.LogRecord:
    try:
        raise ValueError(f"account {ACCOUNT}")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    return logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "acct %s token=%s",
        (ACCOUNT, "abc"),
        exc_info,
        extra={"ctx": {"card": "4111 1111 1111 1111", "secret": "s"}},
    )


def test_redaction_filter_is_idempotent():
    formatter = JsonFormatter()
    rfilter = RedactionFilter()
    record = _record(logging.getLogger("tests.idempotent"))

    assert rfilter.filter(record) is True
    first_state = {k: v for k, v in vars(record).items() if k != "message"}
    first = formatter.format(record)
    assert rfilter.filter(record) is True
    second_state = {k: v for k, v in vars(record).items() if k != "message"}
    second = formatter.format(record)

    assert first == second
    assert first_state == second_state
    data = json.loads(first)
    assert data["message"] == "acct ****9012 token=[REDACTED]"
    assert data["ctx"] == {"card": "****1111", "secret": "[REDACTED]"}
    assert "account ****9012" in data["exc_info"]
    assert record.exc_info is None
    assert record.args is None
    assert ACCOUNT not in first


def test_record_through_two_handlers_gives_two_identical_redacted_lines():
    cap = Capture("tests.core.test_logging.two_handlers", handler_count=2)
    try:
        try:
            raise ValueError(f"account {ACCOUNT}")
        except ValueError:
            cap.logger.exception("acct %s", ACCOUNT, extra={"routing_number": "021000021"})
        first, second = cap.raw_lines()
    finally:
        cap.close()

    assert first == second
    data = json.loads(first)
    assert data["message"] == "acct ****9012"
    assert data["routing_number"] == "[REDACTED]"
    assert "account ****9012" in data["exc_info"]
    assert ACCOUNT not in first


def test_formatter_redacts_even_on_a_handler_configured_without_the_filters():
    cap = Capture("tests.core.test_logging.no_filters", with_filters=False)
    token = set_request_id("req-nofilter")
    try:
        try:
            raise ValueError(f"account {ACCOUNT}")
        except ValueError:
            cap.logger.exception("acct %s", ACCOUNT, extra={"password": "hunter2"})
        line, data = cap.only()
    finally:
        reset_request_id(token)
        cap.close()

    assert data["message"] == "acct ****9012"
    assert data["password"] == "[REDACTED]"
    assert data["request_id"] == "req-nofilter"
    assert "account ****9012" in data["exc_info"]
    assert ACCOUNT not in line
    assert "hunter2" not in line


def test_bad_percent_args_do_not_raise_into_the_caller(capture):
    capture.logger.info("two placeholders %s %s", ACCOUNT)  # one arg missing

    line, data = capture.only()
    assert "two placeholders" in data["message"]
    assert ACCOUNT not in line


def test_settings_logging_points_at_these_classes():
    from django.conf import settings

    assert settings.LOGGING["filters"]["request_id"]["()"] == "core.logging.RequestIdFilter"
    assert settings.LOGGING["filters"]["redact"]["()"] == "core.logging.RedactionFilter"
    assert settings.LOGGING["formatters"]["json"]["()"] == "core.logging.JsonFormatter"
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["request_id", "redact"]


# --- Celery request-id propagation -------------------------------------------------------------


def _task(**request_attrs) -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(**{"is_eager": False, "headers": None, **request_attrs}))


def test_publish_adds_current_request_id_header():
    token = set_request_id("req-pub")
    try:
        headers: dict = {}
        celery_signals.add_request_id_header(headers=headers, body=None)
        explicit = {"request_id": "chosen-by-caller"}
        celery_signals.add_request_id_header(headers=explicit, body=None)
    finally:
        reset_request_id(token)
    none_set: dict = {}
    celery_signals.add_request_id_header(headers=none_set, body=None)

    assert headers == {"request_id": "req-pub"}
    assert explicit == {"request_id": "chosen-by-caller"}
    assert none_set == {}


@pytest.mark.parametrize(
    ("request_attrs", "expected"),
    [
        ({"request_id": "req-from-header"}, "req-from-header"),
        ({"request_id": None, "headers": {"request_id": "req-in-headers"}}, "req-in-headers"),
        ({}, "task:tid-1"),
        ({"request_id": "bad id\ninjected"}, "task:tid-1"),
    ],
)
def test_task_prerun_sets_and_postrun_resets_the_request_id(request_attrs, expected):
    task = _task(**request_attrs)
    celery_signals.bind_task_request_id(task_id="tid-1", task=task)
    during = get_request_id()
    celery_signals.unbind_task_request_id(task_id="tid-1", task=task)

    assert during == expected
    assert get_request_id() is None
    assert request_id_var.get() is None


def test_eager_task_keeps_the_callers_request_id():
    from celery import Celery

    app = Celery("tests-core-logging", set_as_current=False)
    seen: list = []

    @app.task(bind=True)
    def probe(self):
        seen.append(get_request_id())

    token = set_request_id("req-eager")
    try:
        probe.apply()
        after = get_request_id()
    finally:
        reset_request_id(token)
    probe.apply(task_id="tid-eager")

    assert seen == ["req-eager", "task:tid-eager"]
    assert after == "req-eager"
    assert get_request_id() is None
