"""Which addresses a server may bind, and which Host / Origin headers it answers.

A server on 127.0.0.1 is still reachable from any web page the user opens: with DNS rebinding, a page at
`attacker.example` makes its own name resolve to 127.0.0.1, and the browser then talks to the local server with
`Host: attacker.example`. So every server here (the studio, `studio demo`, `studio serve`) answers only Host
names on an allow-list: this machine's loopback names (any port), the address it was bound to, and the names the
user lists in $STUDIO_ALLOWED_HOSTS (comma-separated; ".example.com" also allows its subdomains, "*" allows any
host). A server bound to every interface (0.0.0.0) also answers this machine's own host names and addresses, so
the URL it prints works from the network. A browser's Origin, when sent, must name an allowed host too.

The functions here are pure but for `configured_hosts` (reads the environment) and `machine_names` (asks the OS).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from typing import Iterable
from urllib.parse import urlsplit

from core.i18n import Msg

ALLOWED_HOSTS_ENV = "STUDIO_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
ANY_HOST = "*"
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize(name: str) -> str:
    """A host name or IP address in one spelling (lower case, no trailing dot, IPv6 compressed and without
    brackets); "" when it is neither."""
    name = (name or "").strip().lower().rstrip(".")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    return name if _NAME.fullmatch(name) else ""


def host_of(header: str | None) -> str:
    """The host name in a Host header ("example.com:8501", "[::1]:8000", "127.0.0.1"), port dropped; "" when
    the header is missing or malformed."""
    value = (header or "").strip()
    if value.startswith("["):  # [IPv6]:port
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return ""
        return normalize(f"[{inside}]") if ":" in inside else ""
    if value.count(":") > 1:  # a bare IPv6 address (not valid in a Host header, but unambiguous)
        return normalize(value)
    name, colon, port = value.partition(":")
    if colon and not re.fullmatch(r"\d{1,5}", port):
        return ""
    return normalize(name)


def origin_host(origin: str | None) -> str:
    """The host name of an Origin header ("http://localhost:8501" -> "localhost"); "" for "null" or a malformed
    one."""
    try:
        parts = urlsplit((origin or "").strip())
        hostname = parts.hostname if parts.scheme in ("http", "https") else None
    except ValueError:
        return ""
    return normalize(hostname or "")


def parse_hosts(value: str | None) -> tuple[str, ...]:
    """Host names from a comma-separated list ("a.example, .b.example, *"), normalized; bad entries dropped."""
    names = []
    for part in (value or "").split(","):
        part = part.strip()
        if part == ANY_HOST:
            names.append(ANY_HOST)
        elif part.startswith("."):
            if normalize(part[1:]):
                names.append("." + normalize(part[1:]))
        elif host_of(part):  # "name" or "name:port": the port is not checked
            names.append(host_of(part))
    return tuple(names)


def configured_hosts(environ=None) -> tuple[str, ...]:
    """The hosts the user allows in $STUDIO_ALLOWED_HOSTS."""
    return parse_hosts((os.environ if environ is None else environ).get(ALLOWED_HOSTS_ENV))


@functools.lru_cache(maxsize=1)
def machine_names() -> tuple[str, ...]:
    """This machine's host names and interface addresses (for a server bound to every interface; asked once)."""
    import socket

    names = set()
    for ask in (socket.gethostname, socket.getfqdn):
        try:
            names.add(ask())
        except OSError:
            pass
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            names.update(a.address.split("%")[0] for a in addresses
                         if a.family in (socket.AF_INET, socket.AF_INET6))
    except Exception:  # psutil missing or the OS refused: the host names still count
        pass
    return tuple(sorted(n for n in map(normalize, names) if n))


def allowed_hosts(bound: str | None = None, configured: Iterable[str] | None = None,
                  machine: Iterable[str] | None = None) -> frozenset[str]:
    """The Host names a server answers: loopback names, `configured` (default: $STUDIO_ALLOWED_HOSTS), the
    address it was `bound` to, and, when bound to every interface, `machine` (default: this machine's names)."""
    allowed = set(LOOPBACK_NAMES)
    allowed.update(configured_hosts() if configured is None else configured)
    bound = (bound or "").strip()
    if bound in WILDCARD_ADDRESSES:
        if bound:  # "" is "not given": a test client, or an app not told where it listens
            allowed.update(machine_names() if machine is None else machine)
    elif normalize(bound):
        allowed.add(normalize(bound))
    return frozenset(allowed)


def is_allowed(name: str, allowed: Iterable[str]) -> bool:
    """Whether a normalized host name is on the allow-list (loopback IP addresses always are)."""
    allowed = frozenset(allowed)
    if ANY_HOST in allowed:
        return True
    if not name:
        return False
    if name in allowed or is_loopback(name):
        return True
    return any(entry.startswith(".") and (name == entry[1:] or name.endswith(entry)) for entry in allowed)


def refusal(host: str | None, origin: str | None, allowed: Iterable[str]) -> Msg | None:
    """Why a request with these Host and Origin headers is refused, or None when it may be answered. A missing
    Host is let through (every browser sends one; only a test client or a local tool leaves it out); a missing
    Origin too (browsers send one on cross-site requests and on every websocket)."""
    allowed = frozenset(allowed)
    if host is not None and not is_allowed(host_of(host), allowed):
        return Msg("This server does not answer for the address '{host}'. If you opened it by that name on "
                   "purpose, add the name to {variable} (comma-separated) where the server runs and restart it.",
                   host=host[:100], variable=ALLOWED_HOSTS_ENV)
    if origin is not None and not is_allowed(origin_host(origin), allowed):
        return Msg("Requests from the page at '{origin}' are refused: this server only answers its own pages. "
                   "Open it directly, or add that page's host to {variable} where the server runs.",
                   origin=origin[:100], variable=ALLOWED_HOSTS_ENV)
    return None


def streamlit_flags(bound: str, configured: Iterable[str] | None = None,
                    machine: Iterable[str] | None = None) -> list[str]:
    """`streamlit run` options that make Streamlit itself refuse a websocket from another Host (it checks
    server.allowedHosts before a session starts) or from another site's page (CORS and XSRF protection on, even
    when a config.toml turned them off)."""
    flags = ["--server.enableCORS", "true", "--server.enableXsrfProtection", "true"]
    for name in sorted(allowed_hosts(bound, configured, machine)):
        # Streamlit writes "*.example.com" for subdomains only; ".example.com" here covers the name itself too
        for pattern in ((name[1:], "*" + name) if name.startswith(".") else (name,)):
            flags += ["--server.allowedHosts", pattern]
    return flags
