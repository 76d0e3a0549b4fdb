"""Load a model at a chosen precision for the quantization comparison: fp32, bf16, int8 or 4-bit NF4.

* fp32 — the weights as saved (a GGUF source's fp32 is its de-quantized weights: the file's own quantization is
  already in that baseline).
* bf16 — `model.to(torch.bfloat16)`: half the memory; native on CPUs with avx512_bf16 / amx_bf16, emulated
  (often slower than fp32) on others.
* int8 — dynamic quantization of the linear layers, CPU only: int8 weights with one scale per output channel,
  activations quantized on the fly. It uses `torch.ao.quantization.quantize_dynamic`, which torch marks as
  deprecated in favour of torchao but which still works (tests/test_quantize.py fails the day it stops); its
  deprecation warnings are silenced and logged once.
* nf4 — bitsandbytes 4-bit NF4, loaded from the folder; needs a CUDA GPU (bitsandbytes 0.50's CPU 4-bit kernels
  fail in eval mode, see core/finetune/methods.py `qlora_support`).

The output head (lm_head) always stays at the model's float precision for int8 and nf4 (bitsandbytes keeps it
too): for small models it is a large share of the weights (Gemma 3 270M's head is its 262k-row embedding, tied)
and quantizing it costs most of the accuracy, especially on exact strings such as tool calls. Embeddings stay in
fp32 too, so int8 saves memory only on the linear layers: on Gemma 3 270M, 168M of the 268M weights are the tied
embedding, and int8 keeps about 72% of fp32's memory (bf16: 50%). `model_memory_bytes` measures what is held.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import warnings
from pathlib import Path

from core.errors import ModelLoadError
from core.i18n import Msg

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8", "nf4")
PRECISION_LABELS = {
    "fp32": Msg("fp32 (full precision)"),
    "bf16": Msg("bf16 (half precision)"),
    "int8": Msg("int8 (dynamic quantization, CPU)"),
    "nf4": Msg("4-bit NF4 (bitsandbytes, GPU)"),
}
PRECISION_HELP = {
    "fp32": Msg("The weights as saved, 4 bytes each: the reference the others are compared with."),
    "bf16": Msg("2 bytes per weight: half the memory, usually the same answers."),
    "int8": Msg("Linear layers with 1-byte weights (the output head stays full precision): about a quarter of "
                "their memory, some accuracy lost."),
    "nf4": Msg("Linear layers with 4-bit weights: the least memory and the largest accuracy loss."),
}
KEEP_FULL_PRECISION = ("lm_head",)  # the output head is never quantized (see the module docstring)
INT8_ENGINES = ("x86", "fbgemm", "qnnpack")  # CPU engines with dynamic int8 linear kernels
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ModelLoadError(Msg("Unknown precision '{precision}'; choose one of {choices}.", precision=precision,
                                 choices=", ".join(PRECISIONS)))
    return precision


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_precision(device: str) -> str:
    """What the studio loads when no precision is asked for (core/models/local.py `load_folder`)."""
    return "bf16" if str(device).startswith("cuda") else "fp32"


# --- what works here -------------------------------------------------------------------------------------------

def _cpu_flags() -> set[str] | None:
    """The CPU features PyTorch itself detected (x86 and Arm, any OS); None when this build cannot tell."""
    import torch

    try:
        capabilities = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return None
    return {name for name, present in capabilities.items() if present is True}


def cpu_has_native_bf16() -> bool:
    """Without native bf16 (avx512_bf16 / AMX on x86), CPU bf16 matmuls are emulated and slower than fp32."""
    return bool((_cpu_flags() or set()) & set(BF16_CPU_FLAGS))


def _int8_engine() -> str | None:
    import torch

    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine in INT8_ENGINES:
        return torch.backends.quantized.engine
    return next((engine for engine in INT8_ENGINES if engine in engines), None)


@functools.lru_cache(maxsize=1)
def int8_probe() -> tuple[bool, str]:
    """(works, detail): dynamic int8 quantization of a tiny nn.Linear, run once per process."""
    import torch

    engine = _int8_engine()
    if engine is None:
        return False, f"no CPU quantization engine among {torch.backends.quantized.supported_engines}"
    try:
        layer = torch.nn.Linear(8, 4)
        quantized = _quantize_dynamic(torch.nn.Sequential(layer), {"0"})
        with torch.no_grad():
            x = torch.randn(2, 8)
            error = (quantized(x) - layer(x)).abs().max().item()
        if not error < 0.1:
            return False, f"int8 output off by {error:.3g}"
    except Exception as exc:  # removed API, missing kernels: anything means "not here"
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return True, engine


def precision_support(precision: str, device: str = "cpu") -> tuple[bool, Msg]:
    """Whether `precision` works on `device` ("cpu" or "cuda"), and one sentence saying so (or what to do)."""
    import torch

    check_precision(precision)
    cuda = str(device).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        return False, Msg("No CUDA GPU was found; compare precisions on the CPU.")
    if precision == "fp32":
        return True, Msg("Full precision works everywhere.")
    if precision == "bf16":
        if cuda:
            if torch.cuda.is_bf16_supported():
                return True, Msg("bf16 runs natively on this GPU.")
            return True, Msg("This GPU has no native bf16; it is emulated and may be slower than fp32.")
        flags = _cpu_flags()
        if flags is None:
            return True, Msg("bf16 works on this CPU; it may be emulated and slower than fp32.")
        if flags & set(BF16_CPU_FLAGS):
            return True, Msg("bf16 runs natively on this CPU.")
        return True, Msg("bf16 works on this CPU but is emulated (no avx512_bf16 or amx_bf16), so it may be slower "
                         "than fp32; memory is still halved.")
    if precision == "int8":
        works, detail = int8_probe()
        if not works:
            log.warning("int8 dynamic quantization unavailable: %s", detail)
            return False, Msg("int8 quantization does not work with this PyTorch build ({reason}).", reason=detail)
        if cuda:
            return True, Msg("int8 dynamic quantization runs on the CPU even with a GPU, so its speed is a CPU "
                             "speed.")
        return True, Msg("int8 dynamic quantization works on this CPU.")
    if not cuda:  # bitsandbytes 0.50 loads 4-bit layers on a CPU, but they fail in eval mode (generation)
        return False, Msg("4-bit needs a CUDA GPU; compare fp32, bf16 and int8 on this CPU instead.")
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken install raises more than ImportError
        return False, Msg("4-bit needs the bitsandbytes package, which is missing; install it with 'pip install "
                          "bitsandbytes'.")
    return True, Msg("4-bit NF4 works on this GPU.")


def require(precision: str, device: str) -> None:
    works, message = precision_support(precision, device)
    if not works:
        raise ModelLoadError(message)


# --- converting a loaded model --------------------------------------------------------------------------------

def _kept_full_precision(model) -> set[str]:
    """Names of the modules that stay in float: the output embeddings (whatever they are called) and lm_head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, module in model.named_modules()
            if (head is not None and module is head) or name.rsplit(".", 1)[-1] in KEEP_FULL_PRECISION}


def _quantize_dynamic(model, names: set[str]):
    """torch.ao dynamic int8 quantization of the named nn.Linear modules, in place, per output channel."""
    import torch

    engine = _int8_engine()
    if engine and torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantized = quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names},
                                     dtype=torch.qint8, inplace=True)
    for message in sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}):
        if message not in _logged:  # torch's deprecation of torch.ao (it still works): recorded, not shown
            _logged.add(message)
            log.info("int8 dynamic quantization (torch.ao) warned: %s", message)
    return quantized


_logged: set[str] = set()


def quantize_model(model, precision: str):
    """The model converted to `precision` and the model to use from now on. The model is changed in place where
    torch does that (never pass the shared, cached model). int8 quantizes every nn.Linear except the output head
    and moves the model to the CPU; nf4 needs the weights from disk, so use `load_at_precision`."""
    import torch

    check_precision(precision)
    if precision == "fp32":
        return model.to(torch.float32)
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        require("int8", "cpu")
        model = model.to("cpu", torch.float32)
        keep = _kept_full_precision(model)
        names = {name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and name not in keep}
        return _quantize_dynamic(model, names).eval()
    raise ModelLoadError(Msg("A 4-bit model is loaded from its folder; use load_at_precision for nf4."))


# --- loading from a folder ------------------------------------------------------------------------------------

def _adapter_info(adapter_folder: Path, base_folder: Path):
    from core.models.adapters import check_base, read_adapter

    info = read_adapter(adapter_folder)
    check_base(info, base_folder)
    return info


def _load_nf4(folder: Path, device: str, info=None):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from core.models.adapters import apply_adapter

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.bfloat16,
                                      llm_int8_skip_modules=list(KEEP_FULL_PRECISION))

    def load(path):
        return AutoModelForCausalLM.from_pretrained(str(path), quantization_config=quantization,
                                                    device_map={"": device})

    if info is None:
        return load(folder)
    if info.method in ("prompt_tuning", "prefix_tuning"):  # soft prompts leave the weights alone
        return apply_adapter(load(folder), info)
    # Weights change: merge the adapter in full precision, then quantize the merged weights from a temporary copy.
    merged = apply_adapter(AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32), info, merge=True)
    with tempfile.TemporaryDirectory(prefix="studio-nf4-") as staging:
        merged.save_pretrained(staging)
        del merged
        return load(staging)


def load_at_precision(folder: Path, precision: str, adapter_folder: Path | None = None, device: str | None = None):
    """The causal LM in `folder` at `precision`, in eval mode, with the adapter in `adapter_folder` (if any) applied
    before quantizing (LoRA/IA3 merged in full precision, so the quantized model is the tuned one). `device`
    defaults to CUDA when there is one; int8 always runs on the CPU. Raises ModelLoadError when `precision` does
    not work here (see precision_support)."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.models.adapters import apply_adapter

    folder = Path(folder).expanduser()
    check_precision(precision)
    device = "cpu" if precision == "int8" else (device or default_device())
    require(precision, device)
    info = _adapter_info(adapter_folder, folder) if adapter_folder is not None else None
    if precision == "nf4":
        model = _load_nf4(folder, device, info)
    elif precision == "bf16" and info is None:  # straight to bf16: no fp32 copy on the way
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).to(device)
    else:  # an adapter is applied (LoRA/IA3 merged) in fp32, then the result is converted
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        if info is not None:
            model = apply_adapter(model, info, merge=True)
        model = quantize_model(model, precision).to(device)
    model.eval()
    return model


# --- measuring ------------------------------------------------------------------------------------------------

def _tensor_bytes(tensor) -> int:
    size = tensor.nelement() * tensor.element_size()
    if getattr(tensor, "is_quantized", False) and tensor.qscheme() in _per_channel_schemes():
        size += _tensor_bytes(tensor.q_per_channel_scales()) + _tensor_bytes(tensor.q_per_channel_zero_points())
    return size


@functools.lru_cache(maxsize=1)
def _per_channel_schemes() -> tuple:
    import torch

    return torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams


def _tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def model_memory_bytes(model) -> int:
    """Bytes held by the model's weights and buffers, each storage counted once (tied weights share one).
    Dynamic-quantized linear layers keep their int8 weights in packed params that `parameters()` does not list;
    `state_dict()` exposes them (with their scales), as it does bitsandbytes' 4-bit weights and quant states."""
    seen: set = set()
    total = 0
    sources = [model.state_dict(keep_vars=True).values(), (p for _, p in model.named_parameters()),
               (b for _, b in model.named_buffers())]  # non-persistent buffers are not in the state dict
    for source in sources:
        for value in source:
            for tensor in _tensors(value):
                key = _storage_key(tensor)
                if key in seen:
                    continue
                seen.add(key)
                total += _tensor_bytes(tensor)
    return total


def _storage_key(tensor):
    try:
        pointer = tensor.untyped_storage().data_ptr()
    except Exception:  # meta or exotic tensors
        pointer = 0
    if not pointer:
        return ("id", id(tensor))
    return ("ptr", tensor.device.type, pointer, tensor.storage_offset(), tuple(tensor.shape))


def parameter_count(model) -> int:
    """Weights the model has, counting those inside dynamic-quantized layers and the real (unpacked) size of
    4-bit ones, each tied weight once."""
    seen, total = set(), 0
    for module in model.modules():
        for _, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            quant_state = getattr(param, "quant_state", None)
            shape = getattr(quant_state, "shape", None)
            total += int(_prod(shape)) if shape is not None else param.numel()
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight") and callable(module.weight):
            weight, bias = module.weight(), module.bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


def _prod(shape) -> int:
    result = 1
    for dim in shape:
        result *= int(dim)
    return result


def precision_of(model) -> str:
    """The precision a loaded model is at (as in PRECISIONS)."""
    import torch

    for module in model.modules():
        if hasattr(module, "_packed_params"):
            return "int8"
        if any(getattr(p, "quant_state", None) is not None for p in module.parameters(recurse=False)):
            return "nf4"
    dtype = next(model.parameters()).dtype
    return "bf16" if dtype == torch.bfloat16 else "fp32"
