"""Models and devices of the engine benchmarks (`engine/bench.py`): shape presets, timing, peak memory.

    model = preset_model("0.5b", device)           # random-init Qwen2 of that shape, seeded, eval mode
    device = BenchDevice("cuda")                   # sync() before reading a clock; peak memory on CUDA

Presets (random init; the attention shapes and vocabulary are what matter for speed and memory):
    bench  hidden 256, 4 layers, 4/2 heads, 32K vocabulary (the CPU benchmarks' default)
    tiny   the embedded default's shape with its own 1.3K vocabulary (`--tiny`)
    0.5b   Qwen2.5-0.5B: hidden 896, 24 layers, 14 query / 2 key-value heads, MLP 4864, 151,936 vocabulary, tied
    1.5b   Qwen2.5-1.5B: hidden 1536, 28 layers, 12 / 2 heads, MLP 8960, 151,936 vocabulary, tied
On CUDA the weights are bf16 (fp32 on the CPU).
"""

from __future__ import annotations

import gc
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from longrl.config.model import TinyArchConfig
from longrl.models.tiny import build_tiny_model
from longrl.models.tokenizer import load_default_tokenizer

BENCH_VOCAB = 32768
QWEN_VOCAB = 151936
# name -> (hidden, layers, query heads, key-value heads, MLP width, vocabulary)
PRESETS = {
    "bench": (256, 4, 4, 2, 768, BENCH_VOCAB),
    "0.5b": (896, 24, 14, 2, 4864, QWEN_VOCAB),
    "1.5b": (1536, 28, 12, 2, 8960, QWEN_VOCAB),
}
PRESET_NAMES = ("bench", "tiny", "0.5b", "1.5b")
GIB = 1 << 30


def preset_model(preset: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """A seeded random-init Qwen2 decoder of the preset's shape, in eval mode, on `device`."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    if preset == "tiny":
        return build_tiny_model(TinyArchConfig(), load_default_tokenizer()).to(device=device, dtype=dtype).eval()
    hidden, layers, heads, kv_heads, mlp, vocab = PRESETS[preset]
    arch = TinyArchConfig()
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=arch.max_position_embeddings,
                         rope_parameters={"rope_type": "default", "rope_theta": arch.rope_theta},
                         tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=0,
                         pad_token_id=0)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    return model.to(device=device, dtype=dtype).eval()


def bench_policy(args, preset: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """The engine benchmarks' policy: `--model NAME_OR_PATH` loaded as training loads it (fp32 on the CPU,
    bf16 on CUDA; `builtin:smollm2-135m`, a folder or a hub name), else the random model of `preset`."""
    name = getattr(args, "model", None)
    if not name:
        return preset_model(preset, device, dtype)
    from longrl.config.model import ModelConfig  # lazy: only --model needs the loader
    from longrl.models.loading import load_policy

    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return load_policy(ModelConfig(path=name, dtype=str(dtype).removeprefix("torch.")), device).eval()


def model_label(args) -> str:
    """What the figures were measured on: the `--model` name, or the preset's."""
    return getattr(args, "model", None) or getattr(args, "preset", None) or ("tiny" if getattr(args, "tiny", False) else "bench")


class BenchDevice:
    """Where a benchmark runs: the clock waits for the device; peak memory is the CUDA allocator's."""

    def __init__(self, name: str):
        self.device = torch.device(name)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device")
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def clear(self) -> None:
        """Free what the last measurement left and restart the peak counter."""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.cuda else 0

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) if self.cuda else 0

    def measure(self, fn) -> tuple[float, float, int]:
        """(wall s, CPU s, peak bytes above what was allocated before) of one call of fn, device work included."""
        self.clear()
        self.sync()
        before = self.allocated()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        self.sync()
        return time.perf_counter() - start, time.process_time() - start_cpu, self.peak() - before


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
