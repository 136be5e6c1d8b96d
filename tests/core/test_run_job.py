"""`manage.py run_job NAME [--as-of DATE] [job options]` runs a registered job synchronously."""

import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from core.jobs import get_job, register_job, unregister_job

calls: list[dict] = []


def _add_arguments(parser):
    parser.add_argument("--job-type", choices=["transactions", "chargebacks"], default="transactions")


@pytest.fixture
def echo_job():
    @register_job("test_echo", help="Echo its arguments.", add_arguments=_add_arguments)
    def echo(*, as_of: date | None, job_type: str):
        calls.append({"as_of": as_of, "job_type": job_type})
        return {"seen": job_type}

    calls.clear()
    yield echo
    unregister_job("test_echo")


def test_run_job_passes_as_of_and_job_options(echo_job, capsys):
    call_command("run_job", "test_echo", "--as-of", "2026-11-20", "--job-type", "chargebacks")
    assert calls == [{"as_of": date(2026, 11, 20), "job_type": "chargebacks"}]
    out = json.loads(capsys.readouterr().out)
    assert out == {"job": "test_echo", "as_of": "2026-11-20", "result": {"seen": "chargebacks"}}


def test_run_job_defaults_as_of_to_none(echo_job):
    call_command("run_job", "test_echo")
    assert calls == [{"as_of": None, "job_type": "transactions"}]


@pytest.mark.parametrize(
    "argv",
    [["test_echo", "--as-of", "2026-13-01"], ["no_such_job"], ["test_echo", "--job-type", "bogus"], []],
)
def test_run_job_rejects_bad_arguments_without_running(echo_job, argv):
    with pytest.raises(CommandError):
        call_command("run_job", *argv)
    assert calls == []


def test_registering_a_different_function_under_a_taken_name_fails(echo_job):
    with pytest.raises(ValueError):
        register_job("test_echo", help="x")(lambda *, as_of: None)
    assert get_job("test_echo").func is echo_job
