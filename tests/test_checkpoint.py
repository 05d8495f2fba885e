"""checkpoint.py: atomic save, exact restore of weights, optimizer and RNG streams, pruning."""

from __future__ import annotations

import random
import re

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
    assert path.name == "step-00000003" and {p.name for p in path.iterdir()} == {"model.safetensors", "trainer.pt", "state.json", "manifest.json"}
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


def damage_weights(path):
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short


def damage_state(path):
    (path / "state.json").write_text('{"step": 6, "state": {"cursor": 6}, "rng"')  # a broken state.json


@pytest.mark.parametrize("damage", [damage_weights, damage_state])
def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_which(tmp_path, damage):
    net, opt = trained()
    checkpoint.save(tmp_path, 4, net, opt, None, {"cursor": 4})
    net4 = {k: v.clone() for k, v in net.state_dict().items()}
    later, later_opt = trained(seed=5)
    newest = checkpoint.save(tmp_path, 6, later, later_opt, None, {"cursor": 6})
    damage(newest)
    assert "does not match" in checkpoint.verify(newest) or "bytes" in checkpoint.verify(newest)

    said = []
    fresh, fresh_opt = trained(seed=9, steps=1)
    state = checkpoint.resume(tmp_path, fresh, fresh_opt, say=said.append)
    assert state == {"step": 4, "cursor": 4}
    assert all(torch.equal(net4[k], v) for k, v in fresh.state_dict().items())
    assert said[0].startswith("checkpoint step-00000006 is damaged (") and said[0].endswith("moved aside to step-00000006.damaged")
    assert said[1] == f"resuming from {tmp_path / 'checkpoints' / 'step-00000004'} (step 4)"
    # Set aside, so pruning after the next save cannot delete the intact one in its favour.
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4]
    assert (tmp_path / "checkpoints" / "step-00000006.damaged" / "trainer.pt").exists()


def test_resume_with_no_intact_checkpoint_stops_instead_of_starting_over(tmp_path):
    net, opt = trained()
    damage_weights(checkpoint.save(tmp_path, 2, net, opt, None, {}))
    damage_state(checkpoint.save(tmp_path, 4, net, opt, None, {}))
    with pytest.raises(checkpoint.CheckpointError, match=r"no intact checkpoint to resume from \(step-00000004: .*; step-00000002: "):
        checkpoint.resume(tmp_path, net, opt, say=lambda message: None)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [2, 4]  # nothing moved: the user decides


def test_checkpoints_without_a_manifest_still_resume_and_fall_back(tmp_path):
    """Checkpoints saved before manifests existed: loaded as before; an unreadable one is skipped."""
    net, opt = trained()
    for step in (2, 4):
        (checkpoint.save(tmp_path, step, net, opt, None, {"cursor": step}) / "manifest.json").unlink()
    assert checkpoint.verify(tmp_path / "checkpoints" / "step-00000004") is None
    damage_weights(tmp_path / "checkpoints" / "step-00000004")
    said = []
    assert checkpoint.resume(tmp_path, net, opt, say=said.append) == {"step": 2, "cursor": 2}
    assert "unreadable model.safetensors" in said[0]


def rewrite_state(path, **changes):
    """Edit a checkpoint's state.json and record the edit in its manifest, as a deliberate tamper would."""
    import json

    state_file = path / "state.json"
    payload = json.loads(state_file.read_text())
    for key, value in changes.items():
        if key == "cursor":
            payload["state"]["cursor"] = value
        else:
            payload[key] = value
    state_file.write_text(json.dumps(payload))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["state.json"] = {"bytes": state_file.stat().st_size, "sha256": checkpoint.sha256(state_file)}
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change,message", [
    ({"step": -5}, r"field 'step': -5 is not a step number"),
    ({"step": 10**30}, r"field 'step': 10{30} is not a step number"),
    ({"step": 7}, r"field 'step': 7 is not the step of the folder step-00000003"),
    ({"step": True}, r"field 'step': True is not a step number"),
    ({"cursor": -1}, r"field 'state.cursor': -1 is not a data position"),
    ({"cursor": "12"}, r"field 'state.cursor': '12' is not a data position"),
    ({"cursor": 2.5}, r"field 'state.cursor': 2.5 is not a data position"),
    ({"state": []}, r"field 'state': expected an object, got list"),
])
def test_a_tampered_state_json_is_refused_not_trusted(tmp_path, change, message):
    """Issue 25, case 9: a negative or huge step, or a bad cursor, was trusted (manifest updated to match)."""
    net, opt = trained()
    checkpoint.save(tmp_path, 2, net, opt, None, {"cursor": 8, "phase": "p1"})
    path = checkpoint.save(tmp_path, 3, net, opt, None, {"cursor": 12, "phase": "p1"})
    rewrite_state(path, **change)
    said = []
    state = checkpoint.resume(tmp_path, *trained(seed=9, steps=1), say=said.append)   # falls back to step 2
    assert state["step"] == 2 and state["cursor"] == 8
    assert re.search(message, said[0]) and "moved aside to step-00000003.damaged" in said[0]
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(tmp_path / "checkpoints" / "step-00000003.damaged", *trained(seed=9, steps=1))
