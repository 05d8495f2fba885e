"""engine/distributed.py: one process is rank 0 of 1; torchrun's environment and the backend errors.

The collectives themselves run for real in `tests/rl/test_distributed.py` (2 processes, gloo).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as tdist

from longrl.engine import distributed
from longrl.engine.distributed import SINGLE, Dist, setup
from longrl.errors import ConfigError


def test_a_plain_process_is_rank_0_of_1_and_collectives_are_identities(monkeypatch):
    for name in distributed.LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    dist, device = setup("cpu")
    assert dist is SINGLE and device == torch.device("cpu") and not dist.launched and dist.is_main
    assert dist.shard([1, 2, 3]) == [1, 2, 3]
    assert dist.all_sum([1.5, 2.0]) == [1.5, 2.0] and dist.all_max(3) == 3
    assert dist.gather_json({"a": [1, 2]}) == [{"a": [1, 2]}] and dist.broadcast_json("x") == "x"


def test_shards_are_whole_items_every_world_th_from_the_rank():
    draws = list(range(7))
    shares = [Dist(rank=r, world=3, launched=True).shard(draws) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for s in shares for x in s) == draws


@pytest.fixture
def torchrun_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(tdist, "init_process_group", lambda *a, **k: pytest.fail("must fail before creating a group"))


def test_a_torch_build_without_the_backend_is_a_clear_error(torchrun_env, monkeypatch):
    monkeypatch.setattr(tdist, "is_gloo_available", lambda: False)
    with pytest.raises(ConfigError, match="no GLOO backend"):
        setup("cpu")


def test_cuda_without_a_gpu_or_with_an_index_is_a_clear_error(torchrun_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        setup("cuda")
    with pytest.raises(ConfigError, match="cuda:LOCAL_RANK"):
        setup("cuda:1")
    with pytest.raises(ConfigError, match="mps"):
        setup("mps")
