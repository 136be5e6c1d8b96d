"""A dead letter keeps what is needed to understand and replay the failed job: for a processor answer that broke
the protocol, the raw answer (redacted), never the credentials that were sent."""

import pytest

from core.dead_letters import dead_letter_record
from core.models import DeadLetter
from integrations.errors import ProcessorProtocolError
from integrations.usio import usio_client

pytestmark = pytest.mark.django_db


def _protocol_error(sandbox) -> ProcessorProtocolError:
    sandbox.fault("usio.GetPrefundingBalance", "malformed")
    with pytest.raises(ProcessorProtocolError) as caught:
        usio_client("float_debit").get_prefunding_balance()
    return caught.value


def test_a_protocol_error_is_dead_lettered_with_its_raw_answer(sandbox, settings):
    settings.USIO_ACCOUNTS = {**settings.USIO_ACCOUNTS,
                              "float_debit": {**settings.USIO_ACCOUNTS["float_debit"], "password": "s3cret-pass-9"}}
    error = _protocol_error(sandbox)

    letter = dead_letter_record(task_name="syncing.balance_report", task_id="t-1", queue="default",
                                args=["float_debit"], kwargs={}, error=error, attempts=3)

    letter = DeadLetter.objects.get(pk=letter.pk)
    assert letter.raw_answer["operation"] == "GetPrefundingBalance"
    assert letter.raw_answer["status"] == 200
    assert letter.raw_answer["response_body"]  # the truncated JSON the sandbox sent, as received
    assert "ProcessorProtocolError" in letter.last_error
    stored = str(letter.raw_answer) + letter.last_error
    assert "s3cret-pass-9" not in stored


def test_an_error_without_an_exchange_has_no_raw_answer():
    letter = dead_letter_record(task_name="x", task_id="", queue="default", args=[], kwargs={},
                                error=RuntimeError("boom"), attempts=1)
    assert DeadLetter.objects.get(pk=letter.pk).raw_answer is None
