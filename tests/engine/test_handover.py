"""The weights hand-over to a rollout server: the shard plan against a naive reference, the served dtype
(no fp32 file for a bf16 server), sharded folders with an index, and loading them back (transformers, `longrl serve`)."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch
from safetensors import safe_open

from longrl.engine.handover import INDEX, plan_shards, shard_file_names, write_served
from longrl.errors import OutputError
from longrl.models.weights import load_weights, read_tensors

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_plan(sizes, max_bytes):
    """Start a new shard whenever the next tensor would overflow a non-empty one."""
    shards, current, used = [], [], 0
    for name, size in sizes:
        if current and used + size > max_bytes:
            shards.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    return shards + ([current] if current else [])


def test_plan_shards_matches_a_naive_reference():
    rng = random.Random(0)
    assert plan_shards([("a", 6), ("b", 5), ("c", 4)], 10) == [["a"], ["b", "c"]]
    assert plan_shards([("big", 50), ("x", 1)], 10) == [["big"], ["x"]]        # an oversized tensor alone
    assert plan_shards([], 10) == []
    for _ in range(200):
        sizes = [(f"t{i}", rng.randint(1, 40)) for i in range(rng.randint(1, 30))]
        cap = rng.randint(1, 100)
        plan = plan_shards(sizes, cap)
        assert plan == naive_plan(sizes, cap)
        assert [n for shard in plan for n in shard] == [n for n, _ in sizes]   # every tensor once, in order
    with pytest.raises(ValueError):
        plan_shards([("a", 1)], 0)


def test_shard_file_names_follow_hugging_face():
    assert shard_file_names(1) == ["model.safetensors"]
    assert shard_file_names(3) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]


def dtypes_in(folder):
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            found.update({name: fh.get_slice(name).get_dtype() for name in fh.keys()})
    return found


def test_a_bf16_hand_over_writes_bf16_only_and_its_bytes(tiny_model, tmp_path):
    expected = {k: v.to(torch.bfloat16) for k, v in tiny_model.state_dict().items()}
    written = write_served(tiny_model, tmp_path / "step-1", torch.bfloat16)
    assert written.files == ["model.safetensors"] and not (tmp_path / "step-1" / INDEX).exists()
    assert set(dtypes_in(tmp_path / "step-1").values()) == {"BF16"}               # no fp32 tensor anywhere
    saved = read_tensors(tmp_path / "step-1")
    fp32_bytes = sum(v.numel() * 4 for v in saved.values())
    assert written.bytes == sum(v.numel() * 2 for v in saved.values()) == fp32_bytes // 2
    assert all(torch.equal(saved[k], expected[k]) for k in saved)
    # Tied parameters once, as save_pretrained writes them; the file's size is the tensors' plus a header.
    assert len(saved) == len({id(p) for p in tiny_model.parameters()})
    assert 0 < os.path.getsize(tmp_path / "step-1" / "model.safetensors") - written.bytes < 64 << 10
    config = json.loads((tmp_path / "step-1" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and (tmp_path / "step-1" / "generation_config.json").is_file()
    assert next(tiny_model.parameters()).dtype == torch.float32      # the masters stay fp32


def test_a_sharded_hand_over_has_an_index_and_loads_back(tiny_model, tiny_arch, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from longrl.models.tiny import build_tiny_model

    written = write_served(tiny_model, tmp_path / "step-2", torch.float32, max_shard_bytes=64 << 10)
    folder = tmp_path / "step-2"
    assert len(written.files) > 2 and sorted(p.name for p in folder.glob("*.safetensors")) == written.files
    index = json.loads((folder / INDEX).read_text())
    assert index["metadata"]["total_size"] == written.bytes
    assert set(index["weight_map"].values()) == set(written.files)
    for file in written.files:                     # at most the cap (plus a header), unless one tensor is larger
        held = [n for n, f in index["weight_map"].items() if f == file]
        assert len(held) == 1 or os.path.getsize(folder / file) < (64 << 10) + (16 << 10), file
    # longrl serve's loader and transformers both read it back exactly.
    other = build_tiny_model(tiny_arch.model_copy(update={"init_seed": 7}), tokenizer)
    assert load_weights(other, folder) == len(index["weight_map"])
    loaded = AutoModelForCausalLM.from_pretrained(str(folder))
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor) and torch.equal(loaded.state_dict()[name], tensor), name


def test_a_failed_write_leaves_no_folder_and_says_why(tiny_model, tmp_path):
    (tmp_path / "taken").write_text("a file where the folder goes")
    with pytest.raises(OutputError, match="taken"):
        write_served(tiny_model, tmp_path / "taken", torch.bfloat16)
    assert (tmp_path / "taken").is_file() and not list(tmp_path.glob(".taken.*"))


@pytest.mark.gpu
def test_a_hand_over_from_cuda_weights_is_the_cpu_one(tiny_model, tmp_path):
    """CUDA masters: each tensor is cast on the GPU and written from the CPU, bit for bit the CPU hand-over."""
    cpu = write_served(tiny_model, tmp_path / "cpu", torch.bfloat16)
    cuda = write_served(tiny_model.to("cuda"), tmp_path / "cuda", torch.bfloat16)
    assert cuda.bytes == cpu.bytes and cuda.files == cpu.files
    a, b = read_tensors(tmp_path / "cpu"), read_tensors(tmp_path / "cuda")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
