"""Every way a model can fail to open ends in a ModelLoadError/EndpointError with a clear message."""

from __future__ import annotations

import json
import random
import shutil
import socket
import struct
import time

import pytest

from core.errors import EndpointError, ModelLoadError
from core.models import convert, registry
from core.models.local import check_model_folder, load_folder
from core.models.source import ModelSource


def _copy_model(tiny_model_dir, tmp_path, arch="llama"):
    target = tmp_path / f"copy-{arch}"
    shutil.copytree(tiny_model_dir(arch), target)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- local folders --------------------------------------------------------------------------------------------

def _missing(tmp_path, _):
    return tmp_path / "does-not-exist"


def _a_file(tmp_path, _):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    return path


def _no_config(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    (folder / "config.json").unlink()
    return folder


def _no_weights(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    return folder


def _corrupt_weights(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").write_bytes(random.Random(0).randbytes(4096))
    return folder


def _truncated_weights(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _corrupt_config(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    (folder / "config.json").write_text("{ this is not json")
    return folder


def _unknown_architecture(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "definitely-not-a-model"
    config["architectures"] = ["DefinitelyNotAModel"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _no_tokenizer(tmp_path, tiny_model_dir):
    folder = _copy_model(tiny_model_dir, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    return folder


@pytest.mark.parametrize("make, fragment", [
    (_missing, "does not exist"),
    (_a_file, "is a file, not a folder"),
    (_no_config, "has no config.json"),
    (_no_weights, "has no weights"),
    (_corrupt_weights, "could not be loaded"),
    (_truncated_weights, "could not be loaded"),
    (_corrupt_config, "could not be loaded"),
    (_unknown_architecture, "could not be loaded"),
    (_no_tokenizer, "could not be loaded"),
], ids=lambda value: getattr(value, "__name__", str(value)).strip("_"))
def test_load_folder_errors(make, fragment, tmp_path, tiny_model_dir):
    folder = make(tmp_path, tiny_model_dir)
    with pytest.raises(ModelLoadError) as info:
        load_folder(folder)
    message = str(info.value)
    assert fragment in message
    assert str(folder) in message  # says which path is wrong
    assert "\n" not in message  # one sentence for st.error, not a traceback


def test_check_model_folder_accepts_a_good_folder(tiny_model_dir):
    check_model_folder(tiny_model_dir("phi"))  # no error


@pytest.mark.parametrize("kind", ["local"])
def test_registry_local_folder_errors(kind, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        registry.open_backend(ModelSource(kind=kind, location=str(tmp_path / "nope")))


def test_registry_opens_a_local_folder_and_shares_it(tiny_model_dir):
    source = ModelSource(kind="local", location=str(tiny_model_dir("gemma3")))
    registry.forget_backend(source)  # another test may have loaded it in this process
    try:
        assert registry.peek_backend(source) is None
        backend = registry.get_backend(source)
        assert backend.card.architecture == "Gemma3ForCausalLM"
        assert registry.get_backend(source) is backend  # loaded once per process
        assert registry.peek_backend(source) is backend
        assert not registry.needs_conversion(source)
    finally:
        registry.forget_backend(source)
    assert registry.peek_backend(source) is None


# --- GGUF files -----------------------------------------------------------------------------------------------

def _gguf_wrong_suffix(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF")
    return path, "not a .gguf file"


def _gguf_missing(tmp_path):
    return tmp_path / "missing.gguf", "GGUF file not found"


def _gguf_random_bytes(tmp_path):
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"JUNK" + random.Random(1).randbytes(8192))
    return path, "cannot be loaded"


def _gguf_empty(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    return path, "cannot be loaded"


def _gguf_truncated_header(tmp_path):
    # the right magic and version, then the file ends: the reader fails with struct.error inside gguf
    path = tmp_path / "truncated.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"garbage-after-magic")
    return path, "cannot be loaded"


def _gguf_random_after_header(tmp_path):
    path = tmp_path / "noise.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + random.Random(2).randbytes(4096))
    return path, "cannot be loaded"


def _gguf_no_architecture(tmp_path):
    path = tmp_path / "bare.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # valid, but no tensors and no metadata
    return path, "cannot be loaded"


@pytest.mark.parametrize("make", [
    _gguf_wrong_suffix, _gguf_missing, _gguf_random_bytes, _gguf_empty, _gguf_truncated_header,
    _gguf_random_after_header, _gguf_no_architecture,
], ids=lambda f: f.__name__.removeprefix("_gguf_"))
def test_gguf_errors(make, tmp_path, studio_home):
    path, fragment = make(tmp_path)
    source = ModelSource(kind="gguf", location=str(path))
    with pytest.raises(ModelLoadError, match=fragment) as info:
        registry.open_backend(source)
    assert "\n" not in str(info.value)
    # nothing half-converted is left in the cache to be mistaken for a ready model
    cache = convert.models_cache()
    assert not cache.exists() or not any(convert.is_converted(p) for p in cache.iterdir())


def test_gguf_needs_conversion_flags(tmp_path):
    path = tmp_path / "m.gguf"
    assert registry.needs_conversion(ModelSource(kind="gguf", location=str(path))) is False  # missing file
    path.write_bytes(b"GGUF")
    assert registry.needs_conversion(ModelSource(kind="gguf", location=str(path))) is True
    argv = registry.conversion_argv(ModelSource(kind="gguf", location=str(path)))
    assert argv[:2] == ["-m", "core.models.convert"] and argv[2] == str(path)
    assert registry.conversion_argv(ModelSource()) == ["-m", "core.models.convert", "embedded"]


def test_gguf_cache_folder_changes_when_the_file_changes(tmp_path, studio_home):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF-one")
    first = convert.gguf_cache_folder(path)
    path.write_bytes(b"GGUF-two-longer")
    assert convert.gguf_cache_folder(path) != first
    assert first.parent == studio_home / "models"


def test_convert_main_reports_errors_as_json_events(tmp_path, capsys):
    path, _ = _gguf_truncated_header(tmp_path)
    assert convert.main([str(path), str(tmp_path / "out")]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1].keys() == {"error", "error_template", "error_params"}  # the page translates the template
    assert "cannot be loaded" in events[-1]["error"]
    assert events[-1]["error_template"].startswith("This GGUF file cannot be loaded ({reason})")
    assert events[-1]["error"] == events[-1]["error_template"].format(**events[-1]["error_params"])
    assert not (tmp_path / "out").exists()


# --- hub ids --------------------------------------------------------------------------------------------------

def test_hub_id_offline_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="offline"):
        registry.open_backend(ModelSource(kind="hub", location="nobody/not-downloaded-model"))
    assert time.perf_counter() - start < 10


def test_hub_unreachable_fails_fast(monkeypatch):
    from core.models import local

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(local, "_hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        registry.open_backend(ModelSource(kind="hub", location="nobody/not-downloaded-model"))
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("exc", [RuntimeError("401 Client Error\nRepository Not Found"), RuntimeError()])
def test_hub_download_failure_is_wrapped(monkeypatch, exc):
    import huggingface_hub

    from core.models import local

    def fake_snapshot_download(repo_id, local_files_only=False, **kwargs):
        if local_files_only:
            raise FileNotFoundError("not cached")
        raise exc

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(local, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelLoadError, match="Could not download 'org/private'") as info:
        local.resolve_hub_id("org/private")
    assert "\n" not in str(info.value)


# --- endpoints ------------------------------------------------------------------------------------------------

def test_endpoint_unreachable():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    start = time.perf_counter()
    with pytest.raises(EndpointError, match="Could not reach") as info:
        registry.open_backend(ModelSource(kind="openai", location=url, model_name="llama3.2"))
    assert url in str(info.value)
    assert time.perf_counter() - start < 10


def test_endpoint_unreachable_while_streaming():
    from core.models.endpoint import EndpointModel
    from core.models.generation import GenerationSettings

    backend = EndpointModel(ModelSource(kind="openai", location=f"http://127.0.0.1:{_free_port()}/v1",
                                        model_name="m"), timeout=5)
    stream = backend.stream(backend.render([{"role": "user", "content": "hi"}], None), GenerationSettings())
    with pytest.raises(EndpointError, match="Could not reach"):
        stream.run_to_end()
