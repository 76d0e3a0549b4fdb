"""The model a bundle was made with: its source and, for weights on disk, a fingerprint, so an import can say when
this machine lacks the model or holds different weights. Nothing is converted or downloaded here."""

from __future__ import annotations

from pathlib import Path

from core.errors import StudioError
from core.i18n import Msg
from core.models.source import ModelSource


def local_folder(source: ModelSource) -> Path | None:
    """The weights folder behind a source when it is on this machine already; None otherwise (and for endpoints)."""
    from core.models import convert

    if source.kind == "embedded":
        folder = convert.embedded_folder()
        return folder if convert.is_converted(folder) else None
    if source.kind == "local":
        folder = Path(source.location).expanduser()
        return folder if (folder / "config.json").is_file() else None
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        if not path.is_file():
            return None
        folder = convert.gguf_cache_folder(path)
        return folder if convert.is_converted(folder) else None
    if source.kind == "hub":
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(source.location, local_files_only=True))
        except Exception:  # not in the cache (or no such id): that is all this needs to know
            return None
    return None


def fingerprint(source: ModelSource) -> str | None:
    """core.models.adapters.folder_fingerprint of the base weights, when they are on this machine."""
    from core.models.adapters import folder_fingerprint

    folder = local_folder(source)
    try:
        return folder_fingerprint(folder) if folder is not None else None
    except (OSError, ValueError):
        return None


def reference(source: ModelSource, adapter_manifest: dict | None = None) -> dict:
    """What a bundle's manifest says about its model. Without the weights at hand, the fingerprint the adapter
    was trained on stands in."""
    found = fingerprint(source) or (adapter_manifest or {}).get("base_fingerprint")
    return {"source": source.to_dict(), "fingerprint": found}


def warnings(model: dict) -> list[Msg]:
    """Why the bundle's model may not work here: missing on this machine, different weights, or a key not set."""
    from core.secrets import get_secret

    try:
        source = ModelSource.from_dict((model or {}).get("source"))
    except (StudioError, TypeError):
        return [Msg("The bundle does not say which model it uses; pick one on the Model page.")]
    if source.kind == "openai":
        if source.api_key_env and not get_secret(source.api_key_env):
            return [Msg("The recipe's endpoint {url} needs an API key: set the environment variable {variable} or "
                        "put it in a secrets.toml file.", url=source.location, variable=source.api_key_env)]
        return []
    folder = local_folder(source)
    if folder is None:
        if source.kind == "hub":
            return [Msg("The model '{repo}' is not downloaded on this machine; it downloads on first use when the hub "
                        "can be reached.", repo=source.location)]
        if source.kind in ("local", "gguf"):
            return [Msg("The recipe's model {location} is not on this machine; put the same model there or pick it "
                        "on the Model page.", location=source.location)]
        return []  # the embedded model ships with the studio; it is prepared on the Model page
    expected, found = (model or {}).get("fingerprint"), fingerprint(source)
    if expected and found and expected != found:
        return [Msg("The model at {location} is not the one the bundle was made with (fingerprint {found}, expected "
                    "{expected}): answers will differ and its adapter may be refused.",
                    location=source.describe(), found=found, expected=expected)]
    return []
