"""Writing GGUF files from the studio's weights, for llama.cpp, Ollama and LM Studio.

* `write_lora`: a PEFT LoRA adapter as a GGUF LoRA adapter (llama.cpp `--lora`, Ollama's `ADAPTER`); the base GGUF
  stays as it is, so base + adapter computes exactly what transformers computes from the de-quantized base.
* `write_model`: a whole model (the base with any adapter merged) at a chosen quantization.

The metadata (architecture, hyper-parameters, tokenizer) is copied from the GGUF the base model was read from, so
only tensors are written. Tensor names come from gguf-py's name map, the one transformers reads GGUF files with,
and each tensor is turned back into the form llama.cpp expects (the inverse of transformers' GGUF tensor
processors: Gemma's norm weights are stored plus one, Llama's q/k rows are permuted for its rotary layout).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

from core.errors import StudioError
from core.i18n import Msg

Progress = Callable[[float, Msg], None]

# name -> (ggml type name, how it is produced). gguf-py quantizes the first four itself; the K-quant mix needs
# llama.cpp's quantizer (llama-cpp-python), which picks a type per tensor as llama-quantize does.
QUANTIZATIONS = {
    "Q8_0": Msg("8-bit (Q8_0): nearly lossless, about half the size of 16-bit"),
    "Q4_K_M": Msg("4-bit mix (Q4_K_M): the usual choice for Ollama and LM Studio; needs the llama.cpp engine"),
    "Q4_0": Msg("4-bit (Q4_0): smallest, answers drift more"),
    "F16": Msg("16-bit (F16): no quantization loss, largest"),
}
LLAMA_CPP_QUANTIZATIONS = {"Q4_K_M": 15}  # llama_ftype of llama.cpp (LLAMA_FTYPE_MOSTLY_Q4_K_M)
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "BF16": 32}  # general.file_type (llama_ftype)
# Architectures whose tensors are known to round-trip; others are refused with a pointer to llama.cpp's converter.
NORM_PLUS_ONE = {"gemma", "gemma2", "gemma3"}
PERMUTED_QK = {"llama"}
SUPPORTED = NORM_PLUS_ONE | PERMUTED_QK | {"qwen2", "qwen3"}


def _refuse(arch: str) -> StudioError:
    return StudioError(Msg("GGUF export supports {supported} models, not '{arch}'; export the merged folder and "
                           "convert it with llama.cpp's convert_hf_to_gguf.py.",
                           supported=", ".join(sorted(SUPPORTED)), arch=arch))


def read_template(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:
        raise StudioError(Msg("The base GGUF file {path} cannot be read ({reason}).", path=str(path),
                              reason=str(exc)[:160])) from exc


def architecture(reader) -> str:
    return str(reader.fields["general.architecture"].contents())


def _hparam(reader, arch: str, key: str, default=None):
    field = reader.fields.get(f"{arch}.{key}")
    return field.contents() if field is not None else default


class NameMap:
    """GGUF tensor name -> Hugging Face state-dict name, for the given HF names (as transformers maps them)."""

    def __init__(self, arch: str, blocks: int, hf_names):
        import gguf

        if arch not in SUPPORTED:
            raise _refuse(arch)
        arch_id = next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)
        names = gguf.get_tensor_name_map(arch_id, blocks)
        self.to_hf: dict[str, str] = {}
        for hf_name in hf_names:
            stem, suffix = (hf_name.rsplit(".", 1) + [""])[:2]
            gguf_stem = names.get_name(stem)
            if gguf_stem is not None:
                self.to_hf.setdefault(f"{gguf_stem}.{suffix}", hf_name)

    def hf_name(self, gguf_name: str) -> str | None:
        return self.to_hf.get(gguf_name)


def _permute(weights, heads: int):
    """llama.cpp's row order for q/k (the inverse of transformers' reverse_permute)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def as_stored(arch: str, gguf_name: str, values, reader=None):
    """A Hugging Face tensor (numpy, float32) in the form the GGUF file stores it."""
    if arch in NORM_PLUS_ONE and gguf_name.endswith("norm.weight"):
        return values + 1.0
    if arch in PERMUTED_QK and reader is not None and (".attn_q." in gguf_name or ".attn_k." in gguf_name):
        heads = int(_hparam(reader, arch, "attention.head_count"))
        if ".attn_k." in gguf_name:
            heads = int(_hparam(reader, arch, "attention.head_count_kv", heads))
        return _permute(values, heads)
    return values


def _copy_metadata(reader, writer, skip: tuple[str, ...] = ()) -> None:
    """Every key of the template except the file's own bookkeeping (as gguf-py's gguf_new_metadata does)."""
    import gguf

    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE or field.name in skip:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)


def _quantized(values, name: str, quantization: str):
    """(data, ggml type) for one tensor: vectors stay F32 as llama.cpp keeps them; rows that do not fit the
    quantization's blocks fall back to F16."""
    import gguf
    import numpy as np

    if values.ndim == 1 or quantization == "F32":
        return values.astype(np.float32), gguf.GGMLQuantizationType.F32
    target = gguf.GGMLQuantizationType[quantization]
    block, _ = gguf.GGML_QUANT_SIZES[target]
    if quantization == "F16" or values.shape[-1] % block:
        return values.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(values.astype(np.float32), target), target


def write_model(template: Path, state: dict, out: Path, quantization: str = "Q8_0",
                progress: Progress | None = None) -> Path:
    """A standalone GGUF of the model whose Hugging Face weights are `state` (name -> numpy float32 array), with
    the template's metadata and tensor list. Q4_K_M is made from an F16 file by llama.cpp's quantizer."""
    import gguf

    progress = progress or (lambda fraction, message: None)
    if quantization not in QUANTIZATIONS and quantization not in FILE_TYPES:
        raise StudioError(Msg("Unknown quantization '{name}'; pick one of {names}.", name=quantization,
                              names=", ".join(QUANTIZATIONS)))
    if quantization in LLAMA_CPP_QUANTIZATIONS:
        from core.models.engine import llama_cpp_installed

        if not llama_cpp_installed():
            raise StudioError(Msg("{name} needs the llama.cpp engine (Model page, or `make fast`); pick Q8_0 or Q4_0 "
                                  "without it.", name=quantization))
    reader = read_template(template)
    arch = architecture(reader)
    names = NameMap(arch, int(_hparam(reader, arch, "block_count")), state)
    written_as = "F16" if quantization in LLAMA_CPP_QUANTIZATIONS else quantization
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(staging), arch)
        _copy_metadata(reader, writer, skip=("general.file_type", "general.quantization_version"))
        writer.add_file_type(FILE_TYPES[written_as])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        missing = [t.name for t in reader.tensors if names.hf_name(t.name) is None]
        if missing:
            raise StudioError(Msg("The model has no weight for '{name}' of the GGUF file; export the merged folder "
                                  "instead.", name=missing[0]))
        for n, tensor in enumerate(reader.tensors):
            values = as_stored(arch, tensor.name, state[names.hf_name(tensor.name)], reader)
            data, ggml_type = _quantized(values, tensor.name, written_as)
            writer.add_tensor(tensor.name, data, raw_dtype=ggml_type)
            if n % 24 == 23:
                progress(0.1 + 0.6 * (n + 1) / len(reader.tensors), Msg("Quantizing the weights"))
        progress(0.75, Msg("Writing the GGUF file"))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if quantization in LLAMA_CPP_QUANTIZATIONS:
            progress(0.85, Msg("Quantizing with llama.cpp"))
            final = staging.with_name(staging.name + ".q")
            quantize_with_llama_cpp(staging, final, LLAMA_CPP_QUANTIZATIONS[quantization])
            os.replace(final, staging)
        os.replace(staging, out)
    finally:
        for leftover in (staging, staging.with_name(staging.name + ".q")):
            leftover.unlink(missing_ok=True)
    return out


def quantize_with_llama_cpp(source: Path, destination: Path, file_type: int) -> None:
    import llama_cpp

    from core.models.llamacpp import route_logs

    route_logs()  # its notes (tensors that fall back to another type) go to the log, not the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    params.nthread = max(1, os.cpu_count() or 1)
    if llama_cpp.llama_model_quantize(str(source).encode(), str(destination).encode(), params) != 0:
        raise StudioError(Msg("llama.cpp could not quantize the model."))


def lora_refusal(config: dict) -> Msg | None:
    """Why a PEFT LoRA config cannot become a GGUF adapter (it is then merged into a whole model), or None."""
    if config.get("use_dora"):
        return Msg("DoRA adapters have no GGUF adapter form")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return Msg("per-layer ranks have no GGUF adapter form")
    if config.get("modules_to_save"):
        return Msg("the adapter also trains whole layers")
    return None


def write_lora(template: Path, adapter_folder: Path, out: Path) -> Path:
    """The PEFT LoRA adapter in `adapter_folder` as a GGUF LoRA adapter for the base model of `template`."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((Path(adapter_folder) / "adapter_config.json").read_text(encoding="utf-8"))
    refusal = lora_refusal(config)
    if refusal is not None:
        raise StudioError(Msg("This adapter cannot be written as a GGUF adapter ({reason}); export the merged "
                              "model instead.", reason=refusal))
    reader = read_template(template)
    arch = architecture(reader)
    weights_file = Path(adapter_folder) / "adapter_model.safetensors"
    tensors = {name: values.astype(np.float32) for name, values in load_file(str(weights_file)).items()}
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, values in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if name.endswith(marker):
                layer = name[:-len(marker)].removeprefix("base_model.model.")
                pairs.setdefault(layer + ".weight", {})[part] = values
    names = NameMap(arch, int(_hparam(reader, arch, "block_count")), pairs)
    rank = int(config["r"])
    # llama.cpp scales by alpha / rank; rsLoRA scales by alpha / sqrt(rank)
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1.0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(staging), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        known = {t.name for t in reader.tensors}
        for gguf_name, hf_name in sorted(names.to_hf.items()):
            if gguf_name not in known:
                continue  # a tied output head has no tensor of its own in the base file
            a, b = pairs[hf_name]["lora_A"], pairs[hf_name]["lora_B"]
            b = as_stored(arch, gguf_name, b, reader)  # q/k rows permuted like the weight they change
            writer.add_tensor(gguf_name + ".lora_a", np.ascontiguousarray(a))
            writer.add_tensor(gguf_name + ".lora_b", np.ascontiguousarray(b))
        unmapped = sorted(set(pairs) - set(names.to_hf.values()))
        if unmapped:
            raise StudioError(Msg("The adapter changes '{name}', which the GGUF base has no tensor for; export the "
                                  "merged model instead.", name=unmapped[0]))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return out


def merged_state(base_folder: Path, adapter_info) -> dict:
    """The base model's weights with the adapter merged (LoRA, IA3, full, partial, BitFit), as numpy float32."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.models.adapters import apply_adapter, check_base

    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    if adapter_info is not None:
        check_base(adapter_info, base_folder)
        model = apply_adapter(model, adapter_info, merge=True)
    return {name: tensor.detach().float().numpy() for name, tensor in model.state_dict().items()}
