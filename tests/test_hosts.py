"""core.hosts: the Host / Origin allow-list every server checks (DNS rebinding), as tables of cases."""

from __future__ import annotations

import pytest

from core import hosts

MACHINE = ("vm", "192.0.2.7")


@pytest.mark.parametrize("header, name", [
    ("localhost:8501", "localhost"),
    ("LocalHost.", "localhost"),
    ("127.0.0.1", "127.0.0.1"),
    ("[::1]:8000", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("::1", "::1"),
    ("attacker.example:8501", "attacker.example"),
    ("", ""),
    (None, ""),
    ("a b", ""),
    ("evil.example:80x", ""),
    ("user@localhost", ""),
    ("localhost/path", ""),
    ("[::1", ""),
    ("[::1]junk", ""),
    ("[localhost]", ""),
])
def test_host_of_a_header(header, name):
    assert hosts.host_of(header) == name


@pytest.mark.parametrize("origin, name", [
    ("http://localhost:8501", "localhost"),
    ("https://Studio.Example.com", "studio.example.com"),
    ("http://[::1]:8000", "::1"),
    ("null", ""),
    ("file://", ""),
    ("ftp://localhost", ""),
    ("http://[broken", ""),
    ("", ""),
])
def test_origin_host(origin, name):
    assert hosts.origin_host(origin) == name


@pytest.mark.parametrize("value, parsed", [
    ("", ()),
    ("studio.example.com", ("studio.example.com",)),
    (" A.example , b.example:8080 ,, ", ("a.example", "b.example")),
    (".corp.example", (".corp.example",)),
    ("*", ("*",)),
    ("bad name, ok.example", ("ok.example",)),
])
def test_parse_hosts(value, parsed):
    assert hosts.parse_hosts(value) == parsed
    assert hosts.configured_hosts({hosts.ALLOWED_HOSTS_ENV: value}) == parsed


@pytest.mark.parametrize("bound, configured, expected", [
    (None, (), {"localhost", "127.0.0.1", "::1"}),
    ("127.0.0.1", (), {"localhost", "127.0.0.1", "::1"}),
    ("192.168.1.20", (), {"localhost", "127.0.0.1", "::1", "192.168.1.20"}),
    ("studio.lan", ("a.example",), {"localhost", "127.0.0.1", "::1", "studio.lan", "a.example"}),
    ("0.0.0.0", (), {"localhost", "127.0.0.1", "::1", *MACHINE}),  # bound everywhere: this machine's names
    ("::", ("*",), {"localhost", "127.0.0.1", "::1", "*", *MACHINE}),
])
def test_allowed_hosts(bound, configured, expected):
    assert hosts.allowed_hosts(bound, configured, MACHINE) == frozenset(expected)


def test_allowed_hosts_reads_the_environment(monkeypatch):
    monkeypatch.setenv(hosts.ALLOWED_HOSTS_ENV, "studio.example.com")
    assert "studio.example.com" in hosts.allowed_hosts()
    monkeypatch.delenv(hosts.ALLOWED_HOSTS_ENV)
    assert hosts.allowed_hosts() == frozenset(hosts.LOOPBACK_NAMES)


DEFAULT = hosts.allowed_hosts(None, ())


@pytest.mark.parametrize("host, origin, allowed, refused", [
    ("localhost:8501", "http://localhost:8501", DEFAULT, None),
    ("127.0.0.1:8000", None, DEFAULT, None),
    ("[::1]:8000", "http://[::1]:8000", DEFAULT, None),
    ("127.0.0.2", None, DEFAULT, None),  # any loopback address
    (None, None, DEFAULT, None),  # no browser (a test client)
    ("attacker.example", "http://attacker.example", DEFAULT, "address 'attacker.example'"),  # DNS rebinding
    ("attacker.example:8501", None, DEFAULT, "address"),
    ("localhost.attacker.example", None, DEFAULT, "address"),
    ("", None, DEFAULT, "address"),
    ("localhost:8501", "http://attacker.example", DEFAULT, "page at 'http://attacker.example'"),  # cross-site
    ("localhost:8501", "null", DEFAULT, "page at 'null'"),  # a sandboxed frame
    ("studio.example.com", None, DEFAULT, "STUDIO_ALLOWED_HOSTS"),
    ("studio.example.com", None, DEFAULT | {"studio.example.com"}, None),
    ("a.corp.example", "https://corp.example", DEFAULT | {".corp.example"}, None),
    ("corp.example.evil", None, DEFAULT | {".corp.example"}, "address"),
    ("anything.example", "http://else.example", DEFAULT | {"*"}, None),
])
def test_refusal(host, origin, allowed, refused):
    problem = hosts.refusal(host, origin, allowed)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


def test_streamlit_flags_turn_on_its_own_checks():
    flags = hosts.streamlit_flags("127.0.0.1", configured=(".corp.example", "studio.example.com"), machine=())
    pairs = list(zip(flags[::2], flags[1::2]))
    assert ("--server.enableCORS", "true") in pairs and ("--server.enableXsrfProtection", "true") in pairs
    assert sorted(v for k, v in pairs if k == "--server.allowedHosts") == \
        sorted(["localhost", "127.0.0.1", "::1", "studio.example.com", "corp.example", "*.corp.example"])
    wide = hosts.streamlit_flags("0.0.0.0", configured=(), machine=MACHINE)
    assert {"vm", "192.0.2.7"} <= set(wide[1::2])


def test_is_loopback_unchanged():
    assert hosts.is_loopback("localhost") and hosts.is_loopback("[::1]") and hosts.is_loopback("127.0.0.1")
    assert not hosts.is_loopback("0.0.0.0") and not hosts.is_loopback("example.com")
