"""API keys and tokens: read from the environment or a Streamlit secrets file, never written anywhere.

`get_secret(NAME)` looks in `os.environ`, then in the top-level keys of `.streamlit/secrets.toml` in the current
folder, then of `$STUDIO_HOME/secrets.toml` (read with tomllib; streamlit is not imported). Recipes, bundles and
run files store only the variable's NAME. `install_log_redaction()` replaces every known secret value in log
records with `***`, whichever logger or handler writes them; `install_access_log_redaction()` also hides the
values of key-like query parameters (?api_key=...) in an HTTP server's access log.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import tomllib
from pathlib import Path

REDACTED = "***"
# Shorter values would redact ordinary words; real keys and tokens are far longer.
MIN_SECRET_LENGTH = 8
# Variables whose values count as secrets even before anything asked for them (a log line may come first).
SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)$|^HF_TOKEN$|^HUGGING_FACE_HUB_TOKEN$", re.IGNORECASE)

_lock = threading.Lock()
_files: dict[str, tuple[tuple, dict[str, str]]] = {}  # path -> ((mtime_ns, size), top-level string values)
_asked: set[str] = set()  # names asked through get_secret: their values are secrets whatever they are called


def secrets_files() -> list[Path]:
    """Where keys may be kept besides the environment, first found wins: the Streamlit project file, then the
    studio's own."""
    from core.workspace import studio_home

    try:
        here = Path.cwd()
    except OSError:  # the current folder was deleted
        return [studio_home() / "secrets.toml"]
    return [here / ".streamlit" / "secrets.toml", studio_home() / "secrets.toml"]


def _read(path: Path) -> dict[str, str]:
    """Top-level string values of one secrets file, parsed again only when the file changed."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _files.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        parsed, broken = tomllib.loads(path.read_text(encoding="utf-8")), False
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        parsed, broken = {}, True
    values = {k: v for k, v in parsed.items() if isinstance(v, str)}
    with _lock:
        _files[str(path)] = (stamp, values)
    if broken:  # after caching: logging redacts, which reads this file again. Never the parser's message (it
        # may quote a line of the file).
        logging.getLogger(__name__).warning("%s could not be read as TOML; its keys are ignored", path)
    return values


def _file_secrets() -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in reversed(secrets_files()):  # the first file wins
        merged.update(_read(path))
    return merged


def get_secret(name: str) -> str:
    """The value of a key or token by NAME ("" when it is set nowhere)."""
    name = (name or "").strip()
    if not name:
        return ""
    _asked.add(name)
    value = os.environ.get(name)
    if value:
        return value
    return _file_secrets().get(name, "")


def known_secret_values() -> list[str]:
    """Every value that must never be written: all values of the secrets files, and the environment values of
    variables asked through get_secret or named like a key or token. Longest first, so redaction replaces a
    value before any part of it."""
    values = set(_file_secrets().values())
    values |= {v for k, v in os.environ.items() if k in _asked or SECRET_NAME.search(k)}
    return sorted((v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    for value in known_secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Replace secret values in a record's message, traceback and stack. Never raises: logging must go on (a
    record whose arguments do not format is left to the handler, which reports it)."""
    try:
        _redact_record(record)
    except Exception:
        pass


def _redact_record(record: logging.LogRecord) -> None:
    values = known_secret_values()
    if not values:
        return
    message = record.getMessage()
    cleaned = redact(message, values)
    if cleaned != message and not _redact_args(record, values):
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text, values)
    if record.stack_info:
        record.stack_info = redact(record.stack_info, values)


def _redact_args(record: logging.LogRecord, values: list[str]) -> bool:
    """Redact a record's tuple arguments one by one, keeping their number and order: formatters such as
    uvicorn's access log unpack record.args, and fail ("--- Logging error ---") when it is no longer the tuple
    the format string expects. False when the secret is not (only) in the arguments."""
    if not isinstance(record.args, tuple) or not record.args:
        return False
    args = tuple(redact(a, values) if isinstance(a, str) else a for a in record.args)
    try:
        message = str(record.msg) % args
    except (TypeError, ValueError):
        return False
    if redact(message, values) != message:
        return False
    record.args = args
    return True


# Query parameters whose values are keys, tokens or passwords however a client names them (?api_key=, ?token=).
SECRET_QUERY_NAME = re.compile(r"key|token|secret|passw|pwd|auth|credential|signature|^sig$|session", re.IGNORECASE)


def redact_url(url: str) -> str:
    """A path with its query string, the values of secret-looking parameters replaced by ***."""
    from urllib.parse import unquote_plus

    path, mark, query = url.partition("?")
    if not mark:
        return url
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        secret = equals and value and SECRET_QUERY_NAME.search(unquote_plus(name))
        parts.append(f"{name}={REDACTED}" if secret else part)
    return f"{path}?{'&'.join(parts)}"


class RedactAccessLog(logging.Filter):
    """For uvicorn's access logger: its records carry (client_addr, method, full_path, http_version,
    status_code); secret query values and known secrets in the path become ***, and the arguments stay that
    5-tuple, which uvicorn's AccessFormatter unpacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            try:
                record.args = (args[0], args[1], redact(redact_url(args[2])), args[3], args[4])
            except Exception:  # logging must go on
                pass
        return True


ACCESS_LOGGER = "uvicorn.access"


def install_access_log_redaction(name: str = ACCESS_LOGGER) -> None:
    """Redact request paths in an HTTP server's access log (call after the server configured its logging)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactAccessLog) for f in logger.filters):
        logger.addFilter(RedactAccessLog())


class RedactSecrets(logging.Filter):
    """A logging filter that lets every record through with known secret values replaced by ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_FILTER = RedactSecrets()
_installed = False


def install_log_redaction() -> None:
    """Redact secrets in every log record of this process. A filter on a logger only sees records logged on that
    very logger, so the filter goes on the root and studio loggers and their handlers, and on the handler Python
    uses when none is configured; the record factory covers handlers added later (Streamlit's, a job's)."""
    global _installed
    for name in ("", "studio", "core"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    if logging.lastResort is not None and _FILTER not in logging.lastResort.filters:
        logging.lastResort.addFilter(_FILTER)
    with _lock:
        if _installed:
            return
        _installed = True
        make_record = logging.getLogRecordFactory()

    def redacted_record(*args, **kwargs):
        record = make_record(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(redacted_record)
