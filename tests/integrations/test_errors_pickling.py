"""Processor errors survive pickling with every field: Celery pickles a failed task's exception before
``on_failure`` dead-letters it, and the dead letter keeps the error's exchange as the raw answer."""

import pickle

import pytest

from integrations.errors import ProcessorDeclined, ProcessorProtocolError, ProcessorUnavailable
from integrations.usio import usio_client


def test_a_real_protocol_error_keeps_its_exchange_through_pickle(sandbox):
    sandbox.fault("usio.GetPrefundingBalance", "malformed")
    with pytest.raises(ProcessorProtocolError) as caught:
        usio_client("float_debit").get_prefunding_balance()

    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 (our own bytes, as Celery does)

    assert type(copy) is ProcessorProtocolError
    assert (copy.processor, copy.operation, copy.message) == ("usio", "GetPrefundingBalance",
                                                               caught.value.message)
    assert copy.exchange == caught.value.exchange and copy.exchange.status == 200
    assert str(copy) == str(caught.value)


@pytest.mark.parametrize("error", [
    ProcessorDeclined("Insufficient funds", code="51", processor="usio", operation="SubmitTokenPayment"),
    ProcessorUnavailable("HTTP 500", processor="jpm", operation="payments"),
])
def test_every_field_survives(error):
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, as Celery does)
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)

