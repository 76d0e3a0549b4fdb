"""The Streamlit servers (the studio and `studio demo`) refuse other Hosts and cross-site pages (DNS rebinding), and
the demo's password is rate-limited per client address across browser sessions."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import streamlit
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from core import demo, hosts
from tests.apptest_helpers import APP
from tests.test_demo import serve_demo, shop  # noqa: F401 (fixture)

EVIL = {"host": "attacker.example:8501", "origin": "http://attacker.example:8501"}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the login throttle (core) ----------------------------------------------------------------------------------

@pytest.mark.parametrize("steps, waits", [
    # limit 3 within 60 s; each step: ("fail"|"ok", client) or ("wait", seconds); waits: retry_after("a") after each
    ([("fail", "a"), ("fail", "a")], [0, 0]),
    ([("fail", "a")] * 3, [0, 0, 60]),
    ([("fail", "a")] * 3 + [("wait", 59)], [0, 0, 60, 1]),
    ([("fail", "a")] * 3 + [("wait", 60)], [0, 0, 60, 0]),  # the lock-out ends ...
    ([("fail", "a")] * 3 + [("wait", 60), ("fail", "a")], [0, 0, 60, 0, 0]),  # ... and the count starts again
    ([("fail", "a"), ("wait", 61), ("fail", "a"), ("fail", "a")], [0, 0, 0, 0]),  # old failures expire
    ([("fail", "a"), ("fail", "a"), ("ok", "a"), ("fail", "a")], [0, 0, 0, 0]),  # a right password clears
    ([("fail", "b")] * 3 + [("fail", "a")], [0, 0, 0, 0]),  # other addresses are counted apart
    ([("fail", "A ")] * 3, [0, 0, 60]),  # one address however it is spelt
])
def test_login_throttle(steps, waits):
    clock = FakeClock()
    throttle = demo.LoginThrottle(limit=3, window_s=60, clock=clock)
    seen = []
    for step, value in steps:
        if step == "wait":
            clock.now += value
        elif step == "fail":
            throttle.failed(value)
        else:
            throttle.succeeded(value)
        seen.append(throttle.retry_after("a"))
    assert seen == pytest.approx(waits)


def test_throttle_counts_this_machine_as_one_client_and_stays_small():
    clock = FakeClock()
    throttle = demo.LoginThrottle(limit=2, window_s=60, clock=clock, max_clients=3)
    throttle.failed(None)
    throttle.failed("")
    assert throttle.retry_after(None) == 60  # Streamlit gives no address for a browser on this machine
    for n in range(10):  # many addresses: the oldest quiet ones are forgotten, the table stays bounded
        clock.now += 1
        throttle.failed(f"10.0.0.{n}")
    assert len(throttle._failures) <= 3
    with pytest.raises(ValueError):
        demo.LoginThrottle(limit=0)
    assert demo.login_throttle() is demo.login_throttle()
    assert "15 min" in demo.locked_out_message(demo.LOCKOUT_S) and "1 min" in demo.locked_out_message(3)


# --- the demo page uses it across sessions ----------------------------------------------------------------------

def log_in(at: AppTest, password: str) -> AppTest:
    at.text_input[0].set_value(password)
    return at.button[0].click().run()


def test_wrong_passwords_lock_the_address_out_across_sessions(shop, monkeypatch):  # noqa: F811
    clock = FakeClock()
    monkeypatch.setattr(demo, "_THROTTLE", demo.LoginThrottle(limit=2, window_s=600, clock=clock))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    serve_demo(monkeypatch, shop, password_hash=demo.hash_password("open sesame"))
    first = AppTest.from_file(APP, default_timeout=120).run()
    for _ in range(2):
        log_in(first, "guess")
        assert any("Wrong password" in e.value for e in first.error)
    second = AppTest.from_file(APP, default_timeout=120).run()  # a fresh browser session, the same address
    log_in(second, "open sesame")
    assert any("Too many wrong passwords" in e.value and "10 min" in e.value for e in second.error)
    assert len(second.chat_input) == 0  # even the right password waits
    clock.now += 600
    log_in(second, "open sesame")
    assert not second.error and len(second.chat_input) == 1
    assert demo.login_throttle().retry_after(None) == 0


# --- the host guard (studio and demo) -----------------------------------------------------------------------------

def fake_context(headers: dict) -> SimpleNamespace:
    return SimpleNamespace(headers=headers, ip_address=None, locale=None)


@pytest.mark.parametrize("headers, refused", [
    ({}, False),  # no browser (AppTest itself)
    ({"host": "localhost:8501", "origin": "http://localhost:8501"}, False),
    ({"host": "127.0.0.1:8501"}, False),
    (EVIL, True),
    ({"host": "attacker.example"}, True),
    ({"host": "localhost:8501", "origin": "http://attacker.example"}, True),
])
def test_the_studio_refuses_other_hosts_before_any_page(workspace, monkeypatch, headers, refused):
    monkeypatch.setattr(streamlit, "context", fake_context(headers))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    if refused:
        assert len(at.error) == 1 and "STUDIO_ALLOWED_HOSTS" in at.error[0].value
        assert not at.title and not at.button and not at.sidebar.selectbox  # no Projects page, no sidebar
    else:
        assert not at.error and at.title  # the Projects page


def test_the_studio_answers_hosts_the_user_names(workspace, monkeypatch):
    monkeypatch.setenv(hosts.ALLOWED_HOSTS_ENV, "studio.example.com")
    monkeypatch.setattr(streamlit, "context", fake_context({"host": "studio.example.com",
                                                            "origin": "https://studio.example.com"}))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.error and at.title


def test_the_demo_refuses_other_hosts(shop, monkeypatch):  # noqa: F811
    serve_demo(monkeypatch, shop)
    monkeypatch.setattr(streamlit, "context", fake_context(EVIL))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert len(at.error) == 1 and "attacker.example" in at.error[0].value
    assert not at.title and not at.chat_input


# --- the commands start Streamlit with its own checks on ----------------------------------------------------------

def allowed_flag_values(command: list[str]) -> set[str]:
    return {command[i + 1] for i, part in enumerate(command) if part == "--server.allowedHosts"}


def test_demo_and_studio_commands_pass_streamlits_host_and_origin_checks(shop, monkeypatch):  # noqa: F811
    from core import cli
    from core.cli import common

    monkeypatch.setenv(hosts.ALLOWED_HOSTS_ENV, "studio.example.com")
    command = demo.streamlit_command(APP, "127.0.0.1", 8502, demo.DemoSettings())
    assert allowed_flag_values(command) == {"localhost", "127.0.0.1", "::1", "studio.example.com"}
    assert command[command.index("--server.enableCORS") + 1] == "true"
    assert command[command.index("--server.enableXsrfProtection") + 1] == "true"
    calls = []
    monkeypatch.setattr(common, "run_child", lambda argv, env=None: calls.append(argv) or 0)
    assert CliRunner().invoke(cli.app, ["run", "--host", "192.168.1.20"]).exit_code == 0
    assert allowed_flag_values(calls[0]) == {"localhost", "127.0.0.1", "::1", "studio.example.com", "192.168.1.20"}
    assert CliRunner().invoke(cli.app, ["demo", shop.slug]).exit_code == 0
    assert "studio.example.com" in allowed_flag_values(calls[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def websocket_status(port: int, host: str, origin: str) -> str:
    """The status line Streamlit answers a websocket handshake to its session stream with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Protocol: streamlit\r\nOrigin: {origin}\r\n\r\n").encode())
        return sock.recv(200).split(b"\r\n")[0].decode()


def test_streamlit_itself_refuses_a_rebound_websocket(tmp_path):
    """With the flags `studio run` and `studio demo` pass, a real Streamlit server answers a websocket that comes
    with Host attacker.example with 403 before any session starts (without them it switches protocols)."""
    app = tmp_path / "app.py"
    app.write_text("import streamlit as st\nst.write('hi')\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
                                "--server.port", str(port), "--server.headless", "true",
                                "--browser.gatherUsageStats", "false", *hosts.streamlit_flags("127.0.0.1", (), ())],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "streamlit did not start"
                time.sleep(0.2)
        assert " 403 " in websocket_status(port, f"attacker.example:{port}", f"http://attacker.example:{port}")
        assert " 403 " in websocket_status(port, f"localhost:{port}", "http://attacker.example")
        assert " 101 " in websocket_status(port, f"localhost:{port}", f"http://localhost:{port}")
    finally:
        process.terminate()
        process.wait(timeout=20)
