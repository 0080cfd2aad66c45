"""Which Host names and Origins the server answers (middleware.HostPolicy, OriginPolicy)."""

import socket

import pytest

from localgw.server.middleware import BrowserGuard, HostPolicy, OriginPolicy

LOOPBACK = HostPolicy.for_bind(loopback=True)
EXPOSED = HostPolicy.for_bind(loopback=False)


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "127.0.0.1", "localhost:8000", "LOCALHOST",
                                  "localhost.", "[::1]:8000", "[::1]", "127.1.2.3:80",
                                  "app.localhost:8000", None, ""])
def test_loopback_bind_serves_its_own_names(host):
    assert LOOPBACK.allows(host)


@pytest.mark.parametrize("host", ["rebind.evil:8000", "rebind.evil", "localhost.evil.com",
                                  "192.168.1.5:8000", "10.0.0.1", "[fe80::1]:8000",
                                  "evil.com:8000@127.0.0.1", socket.gethostname()])
def test_loopback_bind_refuses_other_names(host):
    assert not LOOPBACK.allows(host)


def test_a_wider_bind_serves_addresses_and_this_machines_name_but_not_other_names():
    assert EXPOSED.allows("192.168.1.5:8000") and EXPOSED.allows("[fe80::1]:8000")
    assert EXPOSED.allows(f"{socket.gethostname()}:8000")
    assert EXPOSED.allows("mybox.local")
    assert not EXPOSED.allows("rebind.evil:8000")


def test_allowed_hosts_add_names_wildcards_or_everything():
    policy = HostPolicy.for_bind(True, ["llm.example.com", "*.internal.example"])
    assert policy.allows("llm.example.com:8000") and policy.allows("a.internal.example")
    assert not policy.allows("example.com") and not policy.allows("internal.example")
    assert HostPolicy.for_bind(True, ["*"]).allows("anything.at.all")


def test_origins_loopback_pages_and_named_ones():
    origins = OriginPolicy(frozenset({"https://app.example.com"}))
    for ok in ["http://localhost:3000", "http://127.0.0.1:8000", "http://[::1]:5173",
               "https://localhost", "https://app.example.com"]:
        assert origins.allows(ok), ok
    for bad in ["https://evil.example", "null", "http://localhost.evil.com",
                "https://app.example.com.evil", "file://"]:
        assert not origins.allows(bad), bad
    assert OriginPolicy(frozenset({"*"})).allows("https://evil.example")


def _scope(method="POST", **headers):
    return {"type": "http", "method": method, "path": "/v1/chat/completions",
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize("headers,status", [
    ({"host": "127.0.0.1:8000", "content_type": "application/json"}, None),
    ({"host": "127.0.0.1:8000", "content_type": "application/json; charset=utf-8"}, None),
    ({"host": "rebind.evil:8000", "content_type": "application/json"}, 403),
    ({"host": "127.0.0.1:8000", "origin": "https://evil.example",
      "content_type": "application/json"}, 403),
    ({"host": "127.0.0.1:8000", "content_type": "text/plain;charset=UTF-8"}, 415),
    ({"host": "127.0.0.1:8000", "content_type": "application/x-www-form-urlencoded"}, 415),
    ({"host": "127.0.0.1:8000"}, 415),
])
def test_guard_decisions(headers, status):
    guard = BrowserGuard(None, LOOPBACK, OriginPolicy())
    refusal = guard.refusal(_scope(**headers))
    assert (refusal.status if refusal else None) == status


def test_gets_need_no_content_type():
    guard = BrowserGuard(None, LOOPBACK, OriginPolicy())
    assert guard.refusal(_scope("GET", host="localhost:8000")) is None
