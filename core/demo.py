"""Demo mode: a clean chat with one recipe version for stakeholders, with the project's name, logo and colour.

Settings live in <project>/demo/demo.json. A password is kept only as a salted scrypt hash. The demo runs either in
the presenter's own tab (the studio switches that session to the demo page) or as its own server (`studio demo`),
which binds 127.0.0.1 unless a password protects it. Wrong passwords are counted per client address across all
browser sessions of the server (`login_throttle`): too many lock that address out for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core import atomic
from core.errors import StudioError
from core.hosts import is_loopback, streamlit_flags
from core.i18n import Msg
from core.recipe import DEFAULT_RECIPE, RecipeStore
from core.workspace import Project

DEMO_ENV = "STUDIO_DEMO"                  # JSON handed by `studio demo` to the Streamlit process it starts
PASSWORD_ENV = "STUDIO_DEMO_PASSWORD"     # a password given through the environment (hashed before use)
LOGO_TYPES = ("png", "jpg", "jpeg", "gif", "webp")
MAX_LOGO_BYTES = 2 * 1024 * 1024
MAX_SAMPLE_QUESTIONS = 6
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_FAILED_LOGINS = 5  # wrong demo passwords one client address may enter within LOCKOUT_S ...
LOCKOUT_S = 15 * 60    # ... before it must wait this long after the last one


@dataclass(frozen=True)
class DemoSettings:
    title: str = field(default="", metadata={"help": "Shown at the top; the project's name when empty."})
    welcome: str = field(default="", metadata={"help": "One or two sentences under the title."})
    recipe: str = field(default=DEFAULT_RECIPE, metadata={"help": "Recipe the demo answers with."})
    version: int | None = field(default=None, metadata={"help": "Recipe version; none = the latest saved."})
    sample_questions: tuple[str, ...] = field(default=(), metadata={"help": "Buttons a visitor can click to start."})
    primary_color: str = field(default="#2563eb", metadata={"help": "Accent colour (#rrggbb)."})
    logo: str = field(default="", metadata={"help": "Logo file name inside the project's demo folder."})
    show_sources: bool = field(default=True, metadata={"help": "Show the passages an answer used."})
    password_hash: str = field(default="", metadata={"help": "scrypt hash; never the password itself."})

    def __post_init__(self):
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.primary_color):
            raise StudioError(Msg("The colour must look like #1f6feb."))
        if self.version is not None and self.version < 1:
            raise StudioError(Msg("Recipe versions start at 1."))
        questions = tuple(q.strip() for q in self.sample_questions if q and q.strip())
        if len(questions) > MAX_SAMPLE_QUESTIONS:
            raise StudioError(Msg("At most {count} sample questions.", count=MAX_SAMPLE_QUESTIONS))
        object.__setattr__(self, "sample_questions", questions)
        if len(self.title) > 80:
            raise StudioError(Msg("The title is at most 80 characters."))

    @property
    def protected(self) -> bool:
        return bool(self.password_hash)

    def with_changes(self, **changes) -> "DemoSettings":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sample_questions"] = list(self.sample_questions)
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "DemoSettings":
        data = dict(data or {})
        data["sample_questions"] = tuple(data.get("sample_questions") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def demo_folder(project: Project) -> Path:
    return project.subdir("demo")


def load_settings(project: Project) -> DemoSettings:
    path = demo_folder(project) / "demo.json"
    if not path.exists():
        return DemoSettings()
    try:
        return DemoSettings.from_dict(atomic.read_json(path))
    except (ValueError, TypeError, StudioError):
        return DemoSettings()  # a damaged file must not keep the demo from starting


def save_settings(project: Project, settings: DemoSettings) -> None:
    project.require()
    atomic.write_json(demo_folder(project) / "demo.json", settings.to_dict())


def save_logo(project: Project, file_name: str, data: bytes) -> str:
    """Keep an uploaded logo in the demo folder after checking it is a readable image; returns its file name."""
    extension = Path(file_name).suffix.lower().lstrip(".")
    if extension not in LOGO_TYPES:
        raise StudioError(Msg("The logo must be a {types} image.", types=", ".join(LOGO_TYPES)))
    if len(data) > MAX_LOGO_BYTES:
        raise StudioError(Msg("The logo is larger than 2 MB; use a smaller image."))
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:
        raise StudioError(Msg("{name} is not a readable image.", name=file_name)) from exc
    name = f"logo.{extension}"
    for old in demo_folder(project).glob("logo.*"):
        old.unlink()
    atomic.write_bytes(demo_folder(project) / name, data)
    return name


def logo_path(project: Project, settings: DemoSettings) -> Path | None:
    if not settings.logo:
        return None
    path = demo_folder(project) / Path(settings.logo).name
    return path if path.is_file() else None


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise StudioError(Msg("Use a password of at least 8 characters."))
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


class LoginThrottle:
    """Failed demo passwords counted per client address across all browser sessions of this process: after
    `limit` failures within `window_s` seconds, that address may not try again until `window_s` seconds after
    its last failure. A right password clears the address's count. `clock` is injectable for tests."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window_s: float = LOCKOUT_S, clock=time.monotonic,
                 max_clients: int = 10_000):
        if limit < 1 or window_s <= 0:
            raise ValueError("LoginThrottle needs limit >= 1 and window_s > 0.")
        self.limit, self.window_s, self.clock, self.max_clients = limit, window_s, clock, max_clients
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(client, ()) if now - t < self.window_s]
        if times:
            self._failures[client] = times
        else:
            self._failures.pop(client, None)
        return times

    def retry_after(self, client: str | None) -> float:
        """Seconds until `client` may try a password again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(_client_key(client), now)
            return max(0.0, times[-1] + self.window_s - now) if len(times) >= self.limit else 0.0

    def failed(self, client: str | None) -> None:
        with self._lock:
            now, key = self.clock(), _client_key(client)
            times = self._recent(key, now)
            if key not in self._failures and len(self._failures) >= self.max_clients:
                for stale in [k for k, v in self._failures.items() if now - v[-1] >= self.window_s]:
                    del self._failures[stale]
                if len(self._failures) >= self.max_clients:  # still full: forget the longest-quiet address
                    del self._failures[min(self._failures, key=lambda k: self._failures[k][-1])]
            self._failures[key] = [*times, now][-self.limit:]

    def succeeded(self, client: str | None) -> None:
        with self._lock:
            self._failures.pop(_client_key(client), None)


def _client_key(client: str | None) -> str:
    """One spelling per address; this machine's own browser (Streamlit gives it no address) is "local"."""
    return (client.strip().lower() if isinstance(client, str) else "") or "local"


_THROTTLE = LoginThrottle()


def login_throttle() -> LoginThrottle:
    """The process-wide throttle every session of a demo server shares."""
    return _THROTTLE


def locked_out_message(seconds: float) -> Msg:
    return Msg("Too many wrong passwords from your address; try again in {minutes} min.",
               minutes=max(1, math.ceil(seconds / 60)))


def resolve_recipe(project: Project, settings: DemoSettings):
    """(recipe, version number) the demo answers with; the latest version when none is pinned."""
    store = RecipeStore(project, settings.recipe)
    if settings.version is None:
        latest = store.latest()
        if latest is None:
            raise StudioError(Msg("Save a recipe version first: the demo shows a saved recipe."))
        return latest.recipe, latest.number
    return store.load(settings.version), settings.version


def check_host(host: str, protected: bool) -> None:
    if not is_loopback(host) and not protected:
        raise StudioError(Msg("Without a password the demo only listens on this computer (127.0.0.1). "
                              "Set a password to share it on the network."))


def server_environment(project: Project, settings: DemoSettings) -> dict:
    """What the demo's Streamlit process needs to know (the password only as its hash)."""
    return {DEMO_ENV: json.dumps({"project": project.slug, "recipe": settings.recipe, "version": settings.version,
                                  "password_hash": settings.password_hash})}


def server_demo() -> dict | None:
    """The demo this process serves (set by `studio demo`), or None in the full studio."""
    raw = os.environ.get(DEMO_ENV)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("project") else None


def streamlit_command(app_path: Path, host: str, port: int, settings: DemoSettings) -> list[str]:
    import sys

    return [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.address", host, "--server.port",
            str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer", "--theme.primaryColor", settings.primary_color,
            *streamlit_flags(host)]


def _server_file(project: Project) -> Path:
    return demo_folder(project) / "server.json"


def start_server(project: Project, app_path: Path, host: str, port: int) -> dict:
    """Start the demo as its own Streamlit process in the background (the page's "run as a server")."""
    import socket
    import subprocess

    from core.models import registry

    settings = load_settings(project)
    check_host(host, settings.protected)
    recipe, _ = resolve_recipe(project, settings)
    if registry.needs_conversion(recipe.model):
        raise StudioError(Msg("Prepare the model first (Model page): visitors should not wait for its one-time "
                              "conversion."))
    if running_server(project):
        raise StudioError(Msg("The demo server is already running; stop it first."))
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise StudioError(Msg("Port {port} is in use; pick another port.", port=port))
    log_path = demo_folder(project) / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(streamlit_command(app_path, host, port, settings),
                                   env={**os.environ, **server_environment(project, settings)},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info = {"pid": process.pid, "host": host, "port": port}
    atomic.write_json(_server_file(project), info)
    return info


def running_server(project: Project) -> dict | None:
    path = _server_file(project)
    if not path.exists():
        return None
    try:
        import psutil

        info = atomic.read_json(path)
        process = psutil.Process(int(info["pid"]))
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            return info
    except Exception:
        pass
    path.unlink(missing_ok=True)
    return None


def stop_server(project: Project) -> None:
    import signal

    info = running_server(project)
    if info is not None:
        try:
            os.killpg(int(info["pid"]), signal.SIGTERM)
        except OSError:
            pass
    _server_file(project).unlink(missing_ok=True)
