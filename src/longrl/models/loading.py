"""Load any Hugging Face causal LM and its tokenizer as the config says.

    policy = load_policy(cfg.model, device=resolve_device(cfg.run.device))
    tokenizer = load_tokenizer(cfg.model)

`model.path` is a hub name, a local folder, `builtin:NAME` for a model shipped inside
longrl (`builtin:tiny-base`, the embedded default) or in an optional extra (`builtin:smollm2-135m`,
`longrl[real]`: dequantized once into the user's cache, `models/packaged.py`), or `random`: a seeded random-init tiny
Qwen2 model of shape `model.tiny` with the default tokenizer (tests and smoke runs). dtype, attention implementation,
`rope_scaling` (YaRN and friends) and the context window come from config. Weights load
with safetensors only, and completely: a checkpoint missing a tensor the model needs (an empty
`model.safetensors`, a layer cut out) is an error naming the missing tensors, never a model whose
gaps transformers filled with random values. A LoRA adapter folder (`final/` of a run with `model.lora.final: adapter`)
loads as its base model with the adapter merged in. `model.lora` itself is applied by the training
loops (`models/lora.py`), not here: evaluation and references load plain models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from longrl.config.model import ModelConfig, TinyArchConfig
from longrl.console import hub_bars_enabled
from longrl.errors import ConfigError
from longrl.models.lora import (
    ADAPTER_CONFIG,
    adapter_base,
    check_adapter_weights,
    is_adapter_folder,
    load_adapter_into,
)
from longrl.models.packaged import PACKAGED, materialize
from longrl.models.tiny import build_tiny_model
from longrl.models.tokenizer import assets_dir, load_default_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Config attributes that change logits after the LM head; longrl's chunked head does not apply them.
UNSUPPORTED_HEAD_CONFIG = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_logits_scale")
BUILTIN = "builtin:"
RANDOM = "random"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")  # any one will do


def looks_local(name: str) -> bool:
    """A name that can only be a local path: absolute, ./ ../ ~, a trailing slash, or 2+ slashes.

    A hub id is `repo` or `namespace/repo`; anything else the hub would reject with "Repo id must be
    in the form ...", which is no help to someone who mistyped a folder.
    """
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith("/") or name.count("/") >= 2 or "\\" in name


def resolve_path(name: str, key: str = "model.path") -> str:
    """`builtin:NAME` -> the shipped folder; a local folder (checked: it must exist); a hub name unchanged."""
    if not name.startswith(BUILTIN):
        local = Path(name).expanduser()
        if local.exists():
            return str(local)
        if looks_local(name):
            raise ConfigError(f"{key}={name!r}: no such local folder (a hub model is named 'namespace/repo')")
        return name
    short = name[len(BUILTIN):]
    if short in PACKAGED:                       # shipped by another package: made once into the user's cache
        return str(materialize(short))
    folder = assets_dir() / short
    if not short or not folder.is_dir():
        raise ConfigError(f"unknown builtin model {name!r}; known: {', '.join(builtin_names())}")
    return str(folder)


def builtin_names() -> list[str]:
    """Every `builtin:NAME`: the models inside longrl and those of packaged extras (installed or not)."""
    shipped = {p.name for p in assets_dir().iterdir() if p.is_dir() and (p / "config.json").exists()}
    return [BUILTIN + n for n in sorted(shipped | set(PACKAGED))]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but no CUDA device is available; use run.device=cpu or auto")
    return torch.device(name)


def load_tokenizer(cfg: ModelConfig):
    follow_progress_setting()
    if (cfg.tokenizer or cfg.path) == RANDOM:
        return load_default_tokenizer()
    path = resolve_path(cfg.tokenizer or cfg.path, "model.tokenizer" if cfg.tokenizer else "model.path")
    if Path(path).is_dir() and not any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        raise ConfigError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                          "set model.tokenizer to the folder that has them")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:  # transformers says "no files" or "cannot build one" with either
        raise ConfigError(f"cannot load tokenizer from {path!r}: {_one_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def compute_dtype(cfg: ModelConfig) -> torch.dtype:
    """The dtype a training stage computes in: `model.dtype`, or the checkpoint's own dtype for "auto".

    Training keeps fp32 master weights and optimizer state whatever this is (autocast on one
    device, FSDP2's mixed precision under torchrun). float16 is refused: without loss scaling,
    small gradients underflow.
    """
    if cfg.dtype != "auto":
        dtype = DTYPES[cfg.dtype]
    elif cfg.path == RANDOM:
        dtype = torch.float32
    else:
        try:
            config = AutoConfig.from_pretrained(resolve_path(cfg.path), trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load model config from {cfg.path!r}: {exc}") from None
        stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        dtype = DTYPES.get(str(stored).replace("torch.", ""), torch.float32)
    if dtype == torch.float16:
        raise ConfigError("model.dtype=float16 cannot train (no loss scaling: small gradients underflow); "
                          "use bfloat16 (fp32 master weights, bf16 math) or float32")
    return dtype


def load_policy(cfg: ModelConfig, device: torch.device | str = "cpu", dtype: str | None = None):
    """An `AutoModelForCausalLM` on `device`, in `dtype` (default `cfg.dtype`), with config overrides applied.

    Training stages load fp32 master weights (`dtype="float32"`) and compute in `compute_dtype(cfg)`.
    """
    follow_progress_setting()
    cfg = cfg if dtype is None else cfg.model_copy(update={"dtype": dtype})
    if cfg.path == RANDOM:
        model = build_tiny_model(cfg.tiny or TinyArchConfig(), load_tokenizer(cfg))
        try:
            model.set_attn_implementation(cfg.attn_implementation)
        except ValueError as exc:  # transformers lists the implementations it knows
            raise ConfigError(f"model.attn_implementation={cfg.attn_implementation!r}: {_one_line(exc)}") from None
        return model.to(device=device, dtype=torch.float32 if cfg.dtype == "auto" else DTYPES[cfg.dtype])
    path = resolve_path(cfg.path)
    if is_adapter_folder(path):                 # a LoRA run's `final: adapter`: its base, with the adapter merged in
        return load_adapted(cfg, path, device)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model config from {path!r}: {exc}") from None
    problems = unsupported_features(config)
    if problems:        # refused here, before any run directory: the engine would fail at the first rollout
        raise ConfigError(f"model.path={cfg.path!r} ({config.model_type}): longrl's engine does not implement "
                          f"{'; '.join(problems)}; use a model without them")
    if cfg.rope_scaling:
        params = dict(getattr(config, "rope_parameters", None) or {})
        params.update(cfg.rope_scaling)
        config.rope_parameters = params
        check_rope(config)
    if cfg.max_position_embeddings:
        config.max_position_embeddings = cfg.max_position_embeddings
    dtype = "auto" if cfg.dtype == "auto" else DTYPES[cfg.dtype]
    if Path(path).is_dir() and not any(Path(path).glob("*.safetensors")):
        raise ConfigError(f"{path}: no *.safetensors weights (longrl loads safetensors only)")
    try:
        model, report = AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype=dtype, attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code, use_safetensors=True, output_loading_info=True,
        )
    except (OSError, ValueError, SafetensorError) as exc:  # missing, truncated or mismatched weight files
        raise ConfigError(f"cannot load model weights from {path!r}: {_one_line(exc)}") from None
    check_complete(path, report)
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model.to(device)


MAX_ADAPTER_CHAIN = 8   # adapters on adapters: more is a loop or a mistake


def load_adapted(cfg: ModelConfig, path: str, device, chain: tuple[str, ...] = ()):
    """An adapter folder's base model (itself possibly an adapter folder) with the adapter merged in.

    ConfigError for a base that leads back to a folder already on the way (an adapter naming itself
    as its base), a chain longer than MAX_ADAPTER_CHAIN, or a folder without its adapter weights.
    """
    here = str(Path(path).resolve())
    key = f"{path}/{ADAPTER_CONFIG} base_model_name_or_path"
    if here in chain or len(chain) >= MAX_ADAPTER_CHAIN:
        route = " -> ".join((*chain, here))
        why = "leads back to an adapter folder already on the way" if here in chain else f"chains more than {MAX_ADAPTER_CHAIN} adapters"
        raise ConfigError(f"{key}: {why} ({route}); name the base model the adapter was trained on")
    check_adapter_weights(path)                 # before the base loads: a folder without weights fails at once
    base = adapter_base(path)
    base_path = resolve_path(base, key) if base != RANDOM else base
    if base_path != RANDOM and is_adapter_folder(base_path):
        model = load_adapted(cfg, base_path, device, (*chain, here))
    else:
        model = load_policy(cfg.model_copy(update={"path": base, "lora": None}), device)
    return load_adapter_into(model, path)


def check_complete(path: str, report: dict) -> None:
    """ConfigError naming the tensors the checkpoint lacks (or holds in another shape).

    transformers fills a parameter missing from the files with a fresh random initialisation and
    only logs it; a model evaluated or trained that way gives plausible-looking garbage. Tied
    copies (an LM head tied to the embeddings) are not reported missing by transformers.
    """
    missing = sorted(report.get("missing_keys") or [])
    mismatched = [str(entry[0]) if isinstance(entry, tuple | list) else str(entry)
                  for entry in report.get("mismatched_keys") or []]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) the model needs are missing: {_names(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) have another shape: {_names(sorted(mismatched))}")
    if problems:
        raise ConfigError(f"{path}: incomplete weights ({'; '.join(problems)}); longrl never fills missing "
                          "weights with random values: point model.path at a complete checkpoint")


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def unsupported_features(config) -> list[str]:
    """What in a model config the engine (cascade attention, chunked LM head) cannot compute; [] when nothing.

    Sliding-window layers are supported; attention soft-capping (Gemma 2), attention sinks (gpt-oss)
    and logits scaled after the LM head are not.
    """
    problems = []
    value = getattr(config, "attn_logit_softcapping", None)
    if value not in (None, 0, 0.0):
        problems.append(f"attention soft-capping (attn_logit_softcapping={value!r})")
    if getattr(config, "model_type", None) == "gpt_oss":
        problems.append("attention sinks")
    for name in UNSUPPORTED_HEAD_CONFIG:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            problems.append(f"logits changed after the LM head ({name}={value!r})")
    return problems


def follow_progress_setting() -> None:
    """transformers' and the hub's tqdm bars ("Loading weights", downloads) follow `run.progress`:
    shown only where longrl draws rich bars (a terminal), never as carriage-return noise in logs."""
    if hub_bars_enabled():
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()


def check_rope(config) -> None:
    """ConfigError for a `model.rope_scaling` transformers cannot build (it fails later with a bare KeyError)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # lazy: only configs with rope_scaling need it

    params = config.rope_parameters
    rope_type = params.get("rope_type", params.get("type", "default"))
    known = sorted({"default", *ROPE_INIT_FUNCTIONS})
    if rope_type not in known:
        raise ConfigError(f"model.rope_scaling: unknown rope_type {rope_type!r}; known: {', '.join(known)}")
    try:
        config.validate_rope()
    except (KeyError, ValueError, TypeError) as exc:  # KeyError: "Missing required keys ... for 'rope_type'='yarn'"
        raise ConfigError(f"model.rope_scaling: {exc.args[0] if exc.args else type(exc).__name__}") from None


def _one_line(exc: Exception) -> str:
    """The library's message on one line (some span a page)."""
    text = " ".join(str(exc).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(exc).__name__


def enable_activation_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward (non-reentrant checkpointing).

    transformers renamed `gradient_checkpointing_enable` to `activation_checkpointing_enable` in 5.x;
    the older name is used where the new one does not exist yet.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
