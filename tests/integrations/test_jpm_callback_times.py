"""JPM callback times are read in UTC: PostgreSQL stores offsets only up to ±15:59, Python accepts ±23:59."""

import pytest

from integrations.errors import ProcessorProtocolError


@pytest.mark.parametrize("stamp", ["2026-11-20T10:00:00-18:47", "2026-11-20T10:00:00+23:59"])
def test_callback_times_with_offsets_postgresql_cannot_store_are_read_in_utc(stamp):
    from datetime import UTC, datetime

    from integrations.jpm.adapter import parse_callback_message

    (callback,) = parse_callback_message({"callbacks": [{"endToEndId": "a" * 32, "paymentStatus": "CLEARED",
                                                         "createDateTime": stamp}]})
    assert callback.create_date_time.utcoffset().total_seconds() == 0
    assert callback.create_date_time == datetime.fromisoformat(stamp).astimezone(UTC)


def test_a_callback_time_with_no_utc_form_is_a_protocol_error():
    from integrations.jpm.adapter import parse_callback_message

    with pytest.raises(ProcessorProtocolError):
        parse_callback_message({"callbacks": [{"endToEndId": "a" * 32, "paymentStatus": "CLEARED",
                                               "createDateTime": "0001-01-01T00:00:00+05:00"}]})
