"""The computations `test_ulysses_distributed.py` compares: run as one plain process, or under torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engine/ulysses_worker.py MODEL OUT 2 [cpu|cuda]

`results(model_dir, out, sp)` trains the model two RL steps (shared-prompt forward), two RL steps
(per-sample forward, with activation checkpointing) and two SFT steps (packed rows, the real loop), each from the same start, and
returns every step's metrics, one extra gradient and the final weights (full tensors, rank 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
G = 4


def groups_of(step: int, vocab: int):
    """Four groups of G completions: prompts and completions of different lengths, seeded by the step."""
    from longrl.rl.groups import Group

    gen = torch.Generator().manual_seed(step)
    out = []
    for p in range(4):
        prompt = torch.randint(3, vocab, (int(torch.randint(20, 60, (1,), generator=gen)),), generator=gen).tolist()
        comps = [torch.randint(3, vocab, (int(torch.randint(3, 25, (1,), generator=gen)),), generator=gen).tolist()
                 for _ in range(G)]
        rewards = torch.rand(G, generator=gen).tolist()
        out.append(Group(None, prompt, comps, [False] * G, [""] * G, [], rewards))
    return out


def rl_results(model_dir: Path, dist, device, shared: bool) -> dict:
    from longrl.config import load_config
    from longrl.engine.logprobs import completion_stats
    from longrl.engine.sharding import full_tensor, full_weights, load_trainable
    from longrl.rl import algos
    from longrl.rl.trainer import load_reference, make_optimizer
    from longrl.rl.update import objective, policy_update, rewards_tensor

    cfg = load_config(SMOKE, [f"model.path={model_dir}", f"train.shared_prompt_forward={str(shared).lower()}",
                              "algo.kl_coef=0.05", "optim.lr=1e-3", "train.micro_batch_tokens=120",
                              "rollout.temperature=0.8", "algo.entropy_coef=0.01",
                              f"model.gradient_checkpointing={str(not shared).lower()}"])   # recomputed layers re-exchange
    policy = load_trainable(cfg.model, dist, device)
    ref = load_reference(cfg, device, policy, dist)
    optimizer = make_optimizer(cfg, policy)
    vocab = policy.config.vocab_size
    metrics = []
    for step in (1, 2):
        groups = groups_of(step, vocab)
        adv = algos.ADVANTAGES.get("grpo")(rewards_tensor(groups, G), eps=1e-6)
        metrics.append(policy_update(policy, ref, optimizer, groups, adv, cfg, objective(cfg), step, dist))
    # One more loss, its gradient unclipped: log-probs with per-token weights and the entropy, each data replica
    # its share of the groups over the global token count.
    groups = groups_of(3, vocab)
    mine = groups[dist.data_rank::dist.data_world]
    stats = completion_stats(policy, [g.prompt_ids for g in mine], [g.completions for g in mine],
                             shared_prompt=shared, temperature=0.8)
    weights = ((torch.arange(stats.mask.shape[1], device=stats.mask.device) % 5) - 2.0)[None, :] * stats.mask
    tokens = sum(len(c) for g in groups for c in g.completions)
    loss = ((stats.logprobs * weights).sum() + 0.1 * (stats.entropy * stats.mask).sum()) / tokens
    loss.backward()
    grads = {n: full_tensor(p.grad).clone() for n, p in policy.named_parameters()}
    return {"metrics": metrics, "loss": dist.data_sum([float(loss.detach())])[0], "grads": grads,
            "weights": full_weights(policy, lambda t: t.clone(), dist)}


def sft_results(model_dir: Path, dist, device, out: Path) -> dict:
    from longrl.config.model import ModelConfig
    from longrl.engine.nll import token_nll
    from longrl.engine.packed import packed_attention
    from longrl.engine.sharding import full_tensor, full_weights, load_trainable
    from longrl.sft.packing import Example, micro_batches
    from longrl.sft.trainer import LoopSettings, train_loop
    from longrl.tracking import read_metrics

    model = load_trainable(ModelConfig(path=str(model_dir)), dist, device)
    gen = torch.Generator().manual_seed(7)
    vocab = model.config.vocab_size

    def example(i: int) -> Example:
        n = int(torch.randint(20, 70, (1,), generator=gen))
        return Example(f"e{i}", torch.randint(3, vocab, (n,), generator=gen).tolist(), n_prompt=n // 2)

    examples = [example(i) for i in range(16)]
    settings = LoopSettings(phase="sft", steps=2, lr=1e-3, min_lr_ratio=0.0, warmup_steps=0, schedule="constant",
                            weight_decay=0.01, grad_clip=1.0, micro_batch_tokens=150, row_tokens=75,
                            logits_chunk_mb=0.05, bf16_autocast=False, eval_every=1, save_every=100,
                            keep_checkpoints=1, log_every=1, progress="none")
    train_loop(model, lambda step: examples[(step - 1) * 6: step * 6], settings, out, examples[12:], dist=dist)
    batches = micro_batches(dist.data_shard(examples[:8]), 400, 100)
    with packed_attention(model):
        for batch in batches:
            (token_nll(model, batch, 0.05).sum() / sum(e.n_labels for e in examples[:8])).backward()
    grads = {n: full_tensor(p.grad).clone() for n, p in model.named_parameters()}
    rows = read_metrics(out / "metrics.jsonl") if dist.is_main else []
    return {"metrics": rows, "grads": grads, "weights": full_weights(model, lambda t: t.clone(), dist)}


def results(model_dir: Path, out: Path, sp: int, device: str = "cpu") -> dict:
    from longrl.config.model import ModelConfig
    from longrl.engine import ulysses
    from longrl.engine.distributed import setup

    dist, device = setup(device)
    rl_dist = ulysses.init(dist, sp, "train.sequence_parallel", ModelConfig(path=str(model_dir)))
    sft_dist = ulysses.init(dist, sp, "sft.sequence_parallel", ModelConfig(path=str(model_dir)))
    return {"rank": dist.rank, "world": dist.world,
            "rl_shared": rl_results(model_dir, rl_dist, device, shared=True),
            "rl_per_sample": rl_results(model_dir, rl_dist, device, shared=False),
            "sft": sft_results(model_dir, sft_dist, device, out / f"sft-{dist.world}")}


if __name__ == "__main__":
    from longrl.engine.distributed import shutdown

    torch.set_num_threads(1)
    model_dir, out, sp = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    found = results(model_dir, out, sp, sys.argv[4] if len(sys.argv) > 4 else "cpu")
    if found["rank"] == 0:
        torch.save(found, out / f"results-{found['world']}.pt")        # (CUDA tensors: load with map_location)
    shutdown()
