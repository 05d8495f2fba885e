"""The shipped base model (`builtin:tiny-base`): small, unchanged since it was made, and loadable by plain transformers."""

import json

import torch

from longrl.checkpoint import sha256
from longrl.models.tokenizer import assets_dir

BASE = assets_dir() / "tiny-base"
MAX_BYTES = 10 * 1024 * 1024


def provenance() -> dict:
    return json.loads((BASE / "PROVENANCE.json").read_text())


def test_files_match_recorded_hashes():
    recorded = provenance()["files"]
    assert "model.safetensors" in recorded and "tokenizer.json" in recorded
    on_disk = {p.name for p in BASE.iterdir() if p.is_file() and p.name != "PROVENANCE.json"}
    assert on_disk == set(recorded), "files added to or removed from the shipped model since it was made"
    for name, digest in recorded.items():
        assert sha256(BASE / name) == digest, f"{name} changed since `longrl pretrain` wrote it"


def test_artifact_is_small_and_records_how_it_was_made():
    total = sum(p.stat().st_size for p in BASE.iterdir() if p.is_file())
    assert total <= MAX_BYTES, f"tiny-base is {total / 2**20:.1f} MiB; the limit is 10 MiB"
    record = provenance()
    assert record["git"]["commit"] and len(record["git"]["commit"]) == 40
    assert record["config"]["pretrain"]["steps"] >= 1
    assert record["accuracy"]["n"] > 0


def test_loads_through_plain_transformers():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32)
    ids = tokenizer("The mentor of Gire is Tamo.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_no_pickles_shipped():
    assert not list(BASE.glob("*.bin")) and not list(BASE.glob("*.pt")), "weights ship as safetensors only"
