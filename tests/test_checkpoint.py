"""checkpoint.py: atomic save, exact restore of weights, optimizer and RNG streams, pruning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from longrl import checkpoint
from longrl.errors import CheckpointError


class Net(torch.nn.Module):
    """Two layers sharing one weight (like tied embeddings)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 4)
        self.head = torch.nn.Linear(4, 7, bias=False)
        self.head.weight = self.emb.weight
        self.mid = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.mid(self.emb(x))))


def trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.tensor([1, 2, 3])).logsumexp(-1).sum().backward()
        opt.step()
    return net, opt


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_roundtrip_restores_weights_optimizer_rng_and_state(tmp_path):
    net, opt = trained()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = checkpoint.save(tmp_path, 3, net, opt, None, {"cursor": 12, "phase": "p1"})
    assert path.name == "step-00000003" and {p.name for p in path.iterdir()} == {"model.safetensors", "trainer.pt", "state.json"}
    expected = draws()

    fresh, fresh_opt = trained(seed=9, steps=1)
    state = checkpoint.resume(tmp_path, fresh, fresh_opt)
    assert state == {"step": 3, "cursor": 12, "phase": "p1"}
    assert draws() == expected                                    # python, numpy and torch streams restored
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh.head.weight is fresh.emb.weight                  # the tie survives
    # The optimizer continues identically.
    for model, optimizer in [(net, opt), (fresh, fresh_opt)]:
        optimizer.zero_grad()
        model(torch.tensor([4])).sum().backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), fresh.parameters()))


def test_fresh_run_resumes_to_empty_state(tmp_path):
    net, opt = trained()
    assert checkpoint.resume(tmp_path, net, opt) == {}
    assert checkpoint.latest_checkpoint(tmp_path) is None


def test_keeps_newest_checkpoints_and_ignores_incomplete_ones(tmp_path):
    net, opt = trained()
    for step in (2, 4, 6):
        checkpoint.save(tmp_path, step, net, opt, None, {}, keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 6]
    (tmp_path / "checkpoints" / ".step-00000008.abc.tmp").mkdir()   # a save killed half-way
    (tmp_path / "checkpoints" / "step-00000009").mkdir()             # no state.json: not complete
    assert checkpoint.latest_checkpoint(tmp_path).name == "step-00000006"


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    net, opt = trained()
    checkpoint.save(tmp_path, 1, net, opt, None, {"cursor": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, 2, net, opt, None, {"cursor": 2})
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000001"]


def test_loading_into_a_different_model_is_an_error(tmp_path):
    net, opt = trained()
    path = checkpoint.save(tmp_path, 1, net, opt, None, {})
    with pytest.raises(CheckpointError, match="does not match the model"):
        checkpoint.load(path, torch.nn.Sequential(torch.nn.Linear(4, 4)))
