"""What the processor clients take from the process environment, against the sandbox over real HTTP: proxies
(``HTTP_PROXY`` / ``NO_PROXY``) are honoured as requests honours them, read once per process and origin
(``integrations.http._environ_proxies``: not by scanning the environment on every call, as requests would); a proxy
that cannot be reached means the request never left; a ``.netrc`` is never consulted (our credentials are explicit:
a netrc entry for the processor's host must not replace JPM's bearer token)."""

from __future__ import annotations

import socket

import pytest

from integrations.errors import ProcessorUnavailable
from integrations.http import clear_environment_cache
from integrations.jpm import JpmPaymentNotFound, clear_token_cache, jpm_client


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_token_cache()
    clear_environment_cache()
    yield
    clear_token_cache()
    clear_environment_cache()


@pytest.fixture
def dead_proxy() -> str:
    """A proxy address nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _clear_proxy_env(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_an_http_proxy_in_the_environment_is_used(sandbox, monkeypatch, dead_proxy):
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    client = jpm_client()
    with pytest.raises(ProcessorUnavailable):  # the proxy refuses: the request never left
        client.get_payment_status("pay-unknown")
    monkeypatch.delenv("HTTP_PROXY")  # the test's own control calls go direct
    assert sandbox.requests(service="jpm") == []


def test_no_proxy_is_honoured(sandbox, monkeypatch, dead_proxy):
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert isinstance(jpm_client().get_payment_status("pay-unknown"), JpmPaymentNotFound)
    assert [r["operation"] for r in sandbox.requests(service="jpm")][-1] == "jpm.payment_status"


def test_the_environment_is_read_once_per_process(sandbox, monkeypatch, dead_proxy):
    _clear_proxy_env(monkeypatch)
    assert isinstance(jpm_client().get_payment_status("pay-unknown"), JpmPaymentNotFound)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    # like the settings: a process's configuration, read when first needed
    assert isinstance(jpm_client().get_payment_status("pay-unknown"), JpmPaymentNotFound)
    clear_environment_cache()
    with pytest.raises(ProcessorUnavailable) as refused:  # the proxy refuses: the request never left
        jpm_client().get_payment_status("pay-unknown")
    assert str(refused.value).endswith("could not connect")
    monkeypatch.delenv("HTTP_PROXY")
    assert len([r for r in sandbox.requests(service="jpm") if r["operation"] == "jpm.payment_status"]) == 2


def test_a_netrc_entry_for_the_processor_host_does_not_replace_the_bearer_token(sandbox, monkeypatch, tmp_path):
    _clear_proxy_env(monkeypatch)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-a-jpm-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    # With requests' environment lookups on, this entry would turn the call's Authorization into Basic auth and
    # JPM would refuse it (401).
    assert isinstance(jpm_client().get_payment_status("pay-unknown"), JpmPaymentNotFound)
    statuses = [r["status"] for r in sandbox.requests(service="jpm") if r["operation"] == "jpm.payment_status"]
    assert statuses == [404]
