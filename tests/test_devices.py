"""Device-correct code, checked on a CPU machine: no tensor factory in longrl leaves its device implicit.

On a GPU every tensor a loop creates must follow the model's device (or say that it means the CPU);
a factory call without `device=` silently allocates on the CPU, and the first mix with CUDA tensors
crashes (the first RL update once did: `pad_rows`). On a CPU-only machine nothing crashes, so this
net watches the factories themselves: `ImplicitDevice`, a torch function mode, records every call of
a tensor factory (torch.full, zeros, ones, empty, tensor, arange, rand*, randperm, ...) made directly
by longrl's source without a `device` argument. One RL step (with KL tracking and two mini-batches,
the paths that crashed), one SFT step, one evaluation batch and one pretrain step run under it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from longrl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "longrl"
FACTORIES = {torch.full, torch.zeros, torch.ones, torch.empty, torch.tensor, torch.arange, torch.rand, torch.randn,
             torch.randint, torch.randperm, torch.linspace, torch.eye, torch.as_tensor}


class ImplicitDevice(TorchFunctionMode):
    """Records (file:line, factory) of factory calls made from `roots` without an explicit device."""

    def __init__(self, roots=(SRC,)):
        super().__init__()
        self.roots = [str(r) for r in roots]
        self.found: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None and not (args and isinstance(args[0], torch.Tensor)):
            caller = sys._getframe(1)       # factories are C functions: the frame above is the Python caller
            if any(caller.f_code.co_filename.startswith(r) for r in self.roots):
                where = f"{Path(caller.f_code.co_filename).relative_to(ROOT)}:{caller.f_lineno}"
                self.found.add(f"{where} torch.{func.__name__}")
        return func(*args, **kwargs)


def check(run) -> None:
    mode = ImplicitDevice()
    with mode:
        run()
    assert not mode.found, "tensor factories without a device:\n" + "\n".join(sorted(mode.found))


def _allocates_implicitly():
    return torch.full((2, 3), 0.0)           # the pad_rows bug, in miniature


def _allocates_on_purpose():
    return torch.full((2, 3), 0.0, device="cpu")


def test_the_net_catches_an_implicit_factory_and_passes_an_explicit_one():
    mode = ImplicitDevice(roots=(Path(__file__).resolve(),))
    with mode:
        _allocates_on_purpose()
    assert not mode.found
    with mode:
        _allocates_implicitly()
    assert [f.split(" ")[-1] for f in mode.found] == ["torch.full"]


def test_one_rl_step(tmp_path, samples):
    from longrl.rl.trainer import train

    cfg = load_config(ROOT / "configs" / "smoke.yaml", ["train.steps=1", "run.progress=none", "run.torch_threads=1",
                                                       "algo.track_kl=true",
                                                       "train.mini_batches=2"])
    check(lambda: train(cfg, tmp_path / "rl", items=samples[:6]))


def test_one_sft_step(tmp_path, samples):
    from longrl.sft.trainer import train_sft

    cfg = load_config(None, ["model.path=random", "model.tiny={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
                             "num_key_value_heads: 1, intermediate_size: 64}", "sft.steps=1", "sft.batch_tokens=1024",
                             "sft.eval_fraction=0.2", "sft.eval_every=1", "run.progress=none"])
    check(lambda: train_sft(cfg, tmp_path / "sft", examples=samples))


def test_one_eval_batch(tiny_model, tokenizer, samples):
    from longrl.eval.backends import LocalBackend
    from longrl.eval.prompts import prepare_prompt
    from longrl.eval.protocol import GenerationParams, Request

    backend = LocalBackend(tiny_model, tokenizer, batch_size=2)
    requests = [Request(f"s/{s.id}", prepare_prompt(tokenizer, s, 4096), seed=i) for i, s in enumerate(samples[:2])]
    # `complete` runs `_complete` on a worker thread, and torch function modes are per thread: call it here.
    check(lambda: backend._complete(requests, 2, GenerationParams(6, 1.0, 0.9, 5)))


def test_one_pretrain_step(tmp_path):
    from longrl.pretrain import pretrain

    cfg = load_config(None, ["pretrain.architecture={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
                             "num_key_value_heads: 1, intermediate_size: 64, max_position_embeddings: 1024}",
                             "pretrain.steps=1", "pretrain.batch_tokens=512", "pretrain.min_length=96",
                             "pretrain.max_length=128", "pretrain.warmup_steps=0", "pretrain.eval_items=2",
                             "pretrain.eval_max_new_tokens=4", "run.progress=none"])
    check(lambda: pretrain(cfg, tmp_path / "base"))


@pytest.mark.parametrize("budget", [100_000, 64])
def test_rl_batching_helpers_follow_their_inputs(budget):
    from longrl.rl.batching import completion_mask, pad_rows, plan_micro_batches, split_mini_batches

    def run():
        pad_rows([torch.ones(2, device="cpu"), torch.ones(3, device="cpu")])
        completion_mask([1, 3], device="cpu")
        plan_micro_batches([10, 20], [[3, 4], [5]], budget)
        split_mini_batches(5, 2, torch.Generator().manual_seed(0))
    check(run)
