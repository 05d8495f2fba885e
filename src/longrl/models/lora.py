"""LoRA adapters through `peft` (optional: `pip install 'longrl[lora]'`), as `model.lora` says.

    model:
      path: Qwen/Qwen3-8B
      lora: {rank: 16, alpha: 32, target_modules: [q_proj, k_proj, v_proj, o_proj], dropout: 0.05, final: merged}

    policy = attach_adapters(load_policy(cfg.model, device), cfg.model.lora)  # base frozen, adapters trainable
    with adapters_disabled(policy): ...                     # the starting model (the RL reference), no copy in memory
    save_model_folder(policy, tokenizer, folder, cfg.model)  # final/: merged weights, or the PEFT adapter folder

The adapters are injected in place with peft's functional API (`inject_adapter_in_model`), so the
policy stays the Hugging Face model class every engine function runs (decoder `base_model`, LM head);
only the adapter weights require grad, so the optimizer and the checkpoints hold them alone
(`longrl.checkpoint` saves the trainable parameters when some are frozen). LoRA's B matrices start at
zero: at step 0 the policy equals the base model, which is why the reference of the KL term is the
policy with its adapters switched off. `final: merged` folds the adapters into the weights (a plain
model folder any tool loads); `final: adapter` writes `adapter_config.json` + `adapter_model.safetensors`
(+ tokenizer), loadable by `peft.PeftModel.from_pretrained`, vLLM's `--lora-modules`, and by longrl itself
(`model.path` may name such a folder: its base is loaded and the adapter merged in).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from longrl.config.model import LoraSettings, ModelConfig
from longrl.errors import ConfigError
from longrl.limits import load_json, read_small_file

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _peft():
    try:
        import peft  # optional: only LoRA runs need it
    except ImportError:
        raise ConfigError("model.lora needs the `peft` package: pip install 'longrl[lora]'") from None
    return peft


def check_available(cfg: LoraSettings | None) -> None:
    """ConfigError when `model.lora` is set and peft is not installed (nothing is imported)."""
    if cfg is not None and importlib.util.find_spec("peft") is None:
        raise ConfigError("model.lora needs the `peft` package: pip install 'longrl[lora]'")


def peft_config(cfg: LoraSettings, base: str | None = None):
    """The `peft.LoraConfig` of `model.lora` (task CAUSAL_LM, no bias training)."""
    peft = _peft()
    return peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.target_modules),
                           lora_dropout=cfg.dropout, bias="none", task_type="CAUSAL_LM", base_model_name_or_path=base)


def attach_adapters(model: torch.nn.Module, cfg: LoraSettings | None) -> torch.nn.Module:
    """Inject fresh LoRA adapters into `model` in place (base weights frozen); `cfg` None = unchanged."""
    if cfg is None:
        return model
    peft = _peft()
    try:
        peft.inject_adapter_in_model(peft_config(cfg), model)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"model.lora.target_modules: {exc}") from None
    device = next(p for p in model.parameters()).device
    return model.to(device)


def adapter_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules peft wrapped with adapters (none for a plain model)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer  # optional: without peft no model has adapters
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def has_adapters(model: torch.nn.Module) -> bool:
    return bool(adapter_layers(model))


@contextlib.contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model as it was before its adapters (a no-op for a model without adapters)."""
    layers = adapter_layers(model)
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)   # peft also marks the adapter weights trainable again


def merge_adapters(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into its base weight and put the plain layer back (in place): a plain model."""
    layers = {id(m) for m in adapter_layers(model)}
    for name, module in list(model.named_modules()):
        if id(module) in layers:
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights in PEFT's file layout (`base_model.model.<module>.lora_A.weight`, ...)."""
    from peft.utils import get_peft_model_state_dict  # optional dependency, present when adapters are

    state = get_peft_model_state_dict(model)
    return {f"base_model.model.{k}": v.detach().contiguous() for k, v in state.items()}


def save_model_folder(model: torch.nn.Module, tokenizer, folder: Path, cfg: ModelConfig) -> None:
    """A model folder in `folder` (which exists and is empty): config + weights + tokenizer.

    With adapters: `model.lora.final` "merged" merges them into the model first (in place: call this
    last); "adapter" writes the PEFT adapter folder whose base is `model.path`.
    """
    if has_adapters(model) and cfg.lora is not None and cfg.lora.final == "adapter":
        base = cfg.path if cfg.path.startswith("builtin:") or not Path(cfg.path).exists() else str(Path(cfg.path).resolve())
        peft_config(cfg.lora, base).save_pretrained(str(folder))
        save_file(adapter_state(model), str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    else:
        merge_adapters(model)
        model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def is_adapter_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def read_adapter_config(path: str | Path) -> dict:
    """The adapter folder's adapter_config.json as a dict; ConfigError naming the file when unreadable."""
    file = Path(path) / ADAPTER_CONFIG
    try:
        config = load_json(read_small_file(file))
    except (OSError, ValueError) as exc:   # ValueError: not UTF-8, not JSON, or past a bound of longrl.limits
        raise ConfigError(f"{file}: not a readable adapter config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{file}: not a readable adapter config (a JSON object is expected, got {type(config).__name__})")
    return config


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (its `base_model_name_or_path`)."""
    base = read_adapter_config(path).get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise ConfigError(f"{path}/{ADAPTER_CONFIG}: no base_model_name_or_path; load the base model and the adapter with peft")
    return base


def check_adapter_weights(path: str | Path) -> Path:
    """The adapter weights file of folder `path`; ConfigError when it is not there."""
    file = Path(path) / ADAPTER_WEIGHTS
    if not file.is_file():
        other = [p.name for p in Path(path).glob("adapter_model.*")]
        hint = f" (found {', '.join(other)}: longrl loads safetensors only)" if other else ""
        raise ConfigError(f"{path}: no {ADAPTER_WEIGHTS}, the adapter's weights{hint}")
    return file


def load_adapter_into(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Inject the adapter of folder `path` into `model`, load its weights and merge them (a plain model).

    Every failure (a config peft cannot read, weights that are unreadable or fit no module) is a
    ConfigError naming the folder.
    """
    peft = _peft()
    file = check_adapter_weights(path)
    try:
        config = peft.LoraConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as exc:   # unknown or mistyped fields
        raise ConfigError(f"{path}/{ADAPTER_CONFIG}: peft cannot read this adapter config ({_one_line(exc)})") from None
    try:
        peft.inject_adapter_in_model(config, model)
    except (ValueError, TypeError) as exc:            # "Target modules {...} not found in the base model"
        raise ConfigError(f"{path}/{ADAPTER_CONFIG}: the adapter does not fit its base model ({_one_line(exc)})") from None
    try:
        weights = {k.removeprefix("base_model.model."): v for k, v in load_file(str(file)).items()}
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"{file}: unreadable adapter weights ({_one_line(exc)})") from None
    try:
        result = peft.set_peft_model_state_dict(model, weights)
    except RuntimeError as exc:                       # a tensor of another shape (another rank or base)
        raise ConfigError(f"{file}: adapter weights that do not fit the base model ({_one_line(exc)})") from None
    if getattr(result, "unexpected_keys", None):
        raise ConfigError(f"{path}: adapter weights that fit no module of the base model: {result.unexpected_keys[:3]}")
    return merge_adapters(model)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(exc).__name__
