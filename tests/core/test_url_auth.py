"""Every URL of the URL conf requires credentials, except health, metrics and the schema.

The URLs are enumerated from the resolver (not a hand list), so an endpoint added later without auth
fails this test.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern

pytestmark = pytest.mark.django_db

PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/schema/", "/api/docs/", "/admin/login/", "/admin/logout/"}
METHODS = ("get", "post", "put", "patch", "delete")
_SAMPLES = {"int": "1", "uuid": "00000000-0000-0000-0000-000000000001"}


def _route_sample(route: str) -> str:
    return re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLES.get(m.group(1) or "str", "x1"), route)


def _regex_sample(regex: str) -> str:
    def group(m):
        body = m.group(2)
        return body.split("|")[0] if "|" in body and "(" not in body else "1"

    sample = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", group, regex)
    return sample.replace("^", "").replace("$", "").replace("\\", "")


def _sample(pattern) -> str:
    if isinstance(pattern, RoutePattern):
        return _route_sample(str(pattern))
    if isinstance(pattern, RegexPattern):
        return _regex_sample(pattern.regex.pattern)
    raise AssertionError(f"unknown pattern type {type(pattern)}")


def enumerate_urls(patterns=None, prefix="/") -> list[str]:
    urls = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        path = prefix + _sample(entry.pattern)
        if isinstance(entry, URLResolver):
            urls.extend(enumerate_urls(entry.url_patterns, path))
        elif isinstance(entry, URLPattern):
            urls.append(path)
    return sorted(set(urls))


ALL_URLS = enumerate_urls()


def test_enumeration_finds_the_known_endpoints_and_every_url_resolves():
    assert {"/api/v1/auth/whoami", "/healthz", "/admin/core/deadletter/"} <= set(ALL_URLS)
    for url in ALL_URLS:
        resolve(url)  # raises Resolver404 if a sample does not reach its pattern


@pytest.mark.parametrize("url", [u for u in ALL_URLS if u not in PUBLIC and not u.startswith("/admin/")])
@pytest.mark.parametrize("method", METHODS)
def test_api_url_without_credentials_is_401(api_client, url, method):
    response = getattr(api_client, method)(url)
    assert response.status_code == 401, f"{method.upper()} {url} -> {response.status_code}"
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("url", [u for u in ALL_URLS if u not in PUBLIC and u.startswith("/admin/")])
def test_admin_url_without_session_redirects_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302, f"GET {url} -> {response.status_code}"
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", sorted(PUBLIC - {"/admin/logout/"}))
def test_public_urls_answer_without_credentials(client, url):
    assert client.get(url).status_code == 200
