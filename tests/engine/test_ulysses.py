"""engine/ulysses.py in one process: the reshapes around the all-to-all against naive loops, Ulysses
attention simulated over N ranks against full attention (values and gradients), the sequence blocks,
and the start-up refusals. The real collectives run in test_ulysses_distributed.py (gloo ranks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from longrl.cli import main
from longrl.config.model import ModelConfig, TinyArchConfig
from longrl.engine import ulysses
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.ulysses import SequenceParallel, pack_heads, pack_sequence, unpack_heads, unpack_sequence
from longrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def exchange(sent: list[torch.Tensor]) -> list[torch.Tensor]:
    """What all_to_all_single does across n ranks: rank r receives chunk r of every rank, in rank order."""
    return [torch.stack([sent[j][r] for j in range(len(sent))]) for r in range(len(sent))]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_sequence_shards_become_head_shards_and_back_as_a_naive_loop_says(n):
    b, h, t, d = 2, 8, 3 * n, 5
    x = torch.randn(b, h, t, d)                               # the whole tensor: (batch, heads, positions, dim)
    tl, hl = t // n, h // n
    received = exchange([pack_heads(x[:, :, r * tl:(r + 1) * tl], n) for r in range(n)])
    for r in range(n):
        got = unpack_sequence(received[r])                    # rank r: its heads, every position
        expected = torch.empty(b, hl, t, d)
        for i in range(b):
            for head in range(hl):
                for pos in range(t):
                    expected[i, head, pos] = x[i, r * hl + head, pos]
        assert torch.equal(got, expected)
    y = torch.randn(b, t, h, d)                               # attention output layout: (batch, positions, heads, dim)
    back = exchange([pack_sequence(y[:, :, r * hl:(r + 1) * hl], n) for r in range(n)])
    for r in range(n):
        got = unpack_heads(back[r])                           # rank r: its positions, every head
        expected = torch.empty(b, tl, h, d)
        for i in range(b):
            for pos in range(tl):
                for head in range(h):
                    expected[i, pos, head] = y[i, r * tl + pos, head]
        assert torch.equal(got, expected)


def ulysses_attention(q, k, v, n: int) -> torch.Tensor:
    """Causal GQA attention as n ranks compute it: sequence blocks in, exchange, heads out, exchange back."""
    t = q.shape[2] // n
    blocks = [(q[:, :, r * t:(r + 1) * t], k[:, :, r * t:(r + 1) * t], v[:, :, r * t:(r + 1) * t]) for r in range(n)]
    heads = [exchange([pack_heads(block[i], n) for block in blocks]) for i in range(3)]          # q, k, v
    outs = [F.scaled_dot_product_attention(unpack_sequence(heads[0][r]), unpack_sequence(heads[1][r]),
                                           unpack_sequence(heads[2][r]), is_causal=True, enable_gqa=True)
            .transpose(1, 2) for r in range(n)]                                                 # (B, T, H/n, D)
    back = exchange([pack_sequence(o, n) for o in outs])
    return torch.cat([unpack_heads(c) for c in back], 1)                                       # (B, T, H, D)


@pytest.mark.parametrize("n", [2, 4])
def test_attention_over_head_shards_equals_full_attention_with_its_gradients(n):
    torch.manual_seed(0)
    q = torch.randn(2, 8, 4 * n, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 4 * n, 6, dtype=torch.float64, requires_grad=True)    # grouped-query: 2 query heads per kv
    v = torch.randn(2, 4, 4 * n, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 4 * n, 8, 6, dtype=torch.float64)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    expected = torch.autograd.grad((full * weights).sum(), (q, k, v))
    split = ulysses_attention(q, k, v, n)
    assert torch.allclose(split, full, atol=1e-12)
    for got, want in zip(torch.autograd.grad((split * weights).sum(), (q, k, v)), expected):
        assert torch.allclose(got, want, atol=1e-12)


def test_each_rank_takes_its_block_of_the_padded_positions():
    x = torch.arange(14).reshape(2, 7)
    blocks = [SequenceParallel(None, 3, r).columns(x, pad_value=-1) for r in range(3)]
    assert [tuple(b.shape) for b in blocks] == [(2, 3)] * 3
    assert torch.equal(torch.cat(blocks, 1), torch.cat([x, torch.full((2, 2), -1)], 1))
    assert SequenceParallel(None, 4, 0).padded(9) == 12 and SequenceParallel(None, 4, 0).padded(8) == 8


def test_sequence_parallel_ranks_share_a_data_replica():
    dists = [Dist(rank=r, world=4, launched=True, sp=2) for r in range(4)]
    assert [(d.data_rank, d.data_world) for d in dists] == [(0, 2), (0, 2), (1, 2), (1, 2)]
    assert [d.data_shard(list(range(5))) for d in dists] == [[0, 2, 4], [0, 2, 4], [1, 3], [1, 3]]
    assert SINGLE.data_rank == 0 and SINGLE.data_world == 1 and SINGLE.data_sum([3.0, 4.5]) == [3.0, 4.5]


def tiny(kv_heads: int) -> ModelConfig:
    return ModelConfig(path="random", tiny=TinyArchConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                          num_key_value_heads=kv_heads, intermediate_size=128))


def test_start_up_refuses_what_sequence_parallelism_cannot_run():
    launched = Dist(rank=0, world=4, launched=True)
    assert ulysses.init(SINGLE, 1, "train.sequence_parallel", tiny(2)) is SINGLE        # off: nothing to check
    with pytest.raises(ConfigError, match=r"train.sequence_parallel=2 .*torchrun"):
        ulysses.init(SINGLE, 2, "train.sequence_parallel", tiny(2))
    with pytest.raises(ConfigError, match=r"sft.sequence_parallel=3 does not divide the 4 ranks"):
        ulysses.init(launched, 3, "sft.sequence_parallel", tiny(2))
    with pytest.raises(ConfigError, match=r"train.sequence_parallel=2: the model has 4 attention heads and 1 key/value"):
        ulysses.init(Dist(rank=0, world=2, launched=True), 2, "train.sequence_parallel", tiny(1))
    with pytest.raises(ConfigError, match=r"train.sequence_parallel=4: the model has 4 attention heads and 2 key/value"):
        ulysses.init(launched, 4, "train.sequence_parallel", tiny(2))
    with pytest.raises(ConfigError, match=r"train.sequence_parallel=2 cannot be combined with model.lora"):
        ulysses.init(launched, 2, "train.sequence_parallel", tiny(2), {"model.lora": True, "other": False})


@pytest.mark.parametrize("command,key", [("rl", "train.sequence_parallel"), ("sft", "sft.sequence_parallel")])
def test_the_commands_exit_2_naming_the_key_without_torchrun(command, key, tmp_path, capsys, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main([command, "--config", SMOKE, "--out", str(tmp_path / "run"), f"{key}=2", "run.progress=none"]) == 2
    err = capsys.readouterr().err
    assert f"{key}=2" in err and "torchrun" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
