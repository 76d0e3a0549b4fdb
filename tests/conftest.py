"""Shared fixtures for the core tests.

* Every test gets its own STUDIO_HOME (a tmp folder) and runs with HF_HUB_OFFLINE=1.
* `tiny_model_dir(arch, chat_template=False)` builds a tiny random causal LM (llama, gemma3 or phi) with an
  offline-trained byte-level BPE tokenizer, saved like a Hugging Face folder. Folders are cached per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub, which reads it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests of the transformers path stay on it when llama.cpp is installed; the llama.cpp tests choose it themselves.
os.environ.setdefault("STUDIO_ENGINE", "transformers")

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. A helpful assistant answers questions briefly and accurately.
What is the capital of France? The capital of France is Paris. How many days are in a week? Seven days.
Question: how do I reset my password? Answer: open the settings page and choose reset password.
Our company ships orders within two business days. Refunds are processed within five days of the return.
The weather today is sunny with a light breeze. Tomorrow it will rain in the afternoon and evening.
Cats and dogs are popular pets. Birds sing in the morning. Fish swim in the river near the old bridge.
Machine learning models read tokens, predict the next token and repeat until they reach a stop.
Xin chào, bạn có khỏe không? Tôi khỏe, cảm ơn bạn. Hôm nay trời đẹp quá.
Thủ đô của Việt Nam là Hà Nội. Thành phố Hồ Chí Minh là thành phố lớn nhất.
Công ty chúng tôi giao hàng trong hai ngày làm việc. Hoàn tiền trong vòng năm ngày.
Đường phố đông đúc, người dân đi xe máy. Phở bò và bánh mì là món ăn nổi tiếng.
Câu hỏi: làm sao để đặt lại mật khẩu? Trả lời: mở trang cài đặt và chọn đặt lại mật khẩu.
Tiếng Việt có nhiều dấu: à á ả ã ạ ă ằ ắ ẳ ẵ ặ â ầ ấ ẩ ẫ ậ đ è é ẻ ẽ ẹ ê ề ế ể ễ ệ ì í ỉ ĩ ị
ò ó ỏ õ ọ ô ồ ố ổ ỗ ộ ơ ờ ớ ở ỡ ợ ù ú ủ ũ ụ ư ừ ứ ử ữ ự ỳ ý ỷ ỹ ỵ Đ Ă Â Ê Ô Ơ Ư.
0 1 2 3 4 5 6 7 8 9 10 100 1000 user assistant system Question Answer : ? ! . , ; - ( ) [ ] { } < > | /
"""

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    """A fresh STUDIO_HOME per test so tests never see each other's projects (or the user's)."""
    home = tmp_path / "studio-home"
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def workspace(studio_home):
    from core.workspace import Workspace

    return Workspace()


@pytest.fixture
def project(workspace):
    return workspace.create("Test project")


def build_tokenizer(chat_template: str | None = None):
    """A tiny byte-level BPE trained offline on TRAINING_TEXT, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = TRAINING_TEXT.split()
    lines = [line for line in TRAINING_TEXT.splitlines() if line.strip()]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines * 3 + words, trainer)
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=256)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_tiny_model(arch: str, tokenizer, max_positions: int = 256):
    import torch
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, PhiConfig,
                              PhiForCausalLM)

    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=max_positions,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if arch == "llama":
        config, cls = LlamaConfig(num_key_value_heads=1, **common), LlamaForCausalLM
    elif arch == "gemma3":
        config, cls = Gemma3TextConfig(num_key_value_heads=1, head_dim=16, sliding_window=64, **common), Gemma3ForCausalLM
    elif arch == "phi":
        config, cls = PhiConfig(**common), PhiForCausalLM
    else:
        raise ValueError(f"unknown tiny arch {arch}")
    torch.manual_seed(1234)
    model = cls(config)
    model.eval()
    return model


TINY_ARCHS = ("llama", "gemma3", "phi")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: tiny_model_dir("llama"|"gemma3"|"phi", chat_template=False) -> folder (built once per session)."""
    cache: dict[tuple[str, bool], Path] = {}

    def make(arch: str, chat_template: bool = False) -> Path:
        key = (arch, bool(chat_template))
        if key not in cache:
            tokenizer = build_tokenizer(TINY_CHAT_TEMPLATE if chat_template else None)
            model = build_tiny_model(arch, tokenizer)
            folder = tmp_path_factory.mktemp(f"tiny-{arch}{'-chat' if chat_template else ''}")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            cache[key] = folder
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    """Factory: a loaded LocalModel for a tiny folder, loaded once per session (backends are read-only)."""
    from core.models.local import load_folder

    cache: dict[tuple[str, bool], object] = {}

    def make(arch: str = "llama", chat_template: bool = False):
        key = (arch, bool(chat_template))
        if key not in cache:
            cache[key] = load_folder(tiny_model_dir(arch, chat_template))
        return cache[key]

    return make


class HashEmbedder:
    """Deterministic bag-of-words embedder: each word hashes to a dimension; rows are unit length."""

    def __init__(self, dims: int = 256):
        self.dims = dims
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]):
        import hashlib
        import re

        import numpy as np

        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                index = int(hashlib.md5(word.encode("utf-8")).hexdigest(), 16) % self.dims
                out[row, index] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


@pytest.fixture
def hash_embedder():
    return HashEmbedder()


@pytest.fixture
def fake_embedder(monkeypatch):
    """Knowledge bases embed with a 384-dimension HashEmbedder and count words as tokens (no model loads)."""
    from core.rag import kb as kb_module

    embedder = HashEmbedder(dims=384)
    monkeypatch.setattr(kb_module, "_embed", embedder)
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    return embedder
