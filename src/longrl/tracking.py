"""Run directories: the resolved config, metrics.jsonl, sample dumps.

    out = prepare_run_dir("runs/x", cfg)   # creates runs/x, writes runs/x/config.yaml

Rerunning a command on the same directory resumes it, so a directory whose config.yaml differs
from the new config is refused (use a new --out, or delete the directory).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from longrl.errors import ConfigError
from longrl.files import atomic_write_text


def prepare_run_dir(out: str | Path, cfg) -> Path:
    from longrl.config import to_yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_yaml(cfg)
    existing = out / "config.yaml"
    if existing.exists():
        old = yaml.safe_load(existing.read_text())
        new = yaml.safe_load(text)
        if old != new:
            changed = sorted(_diff_keys(old, new))
            raise ConfigError(f"{out} holds a run with a different config (changed: {', '.join(changed[:8])}); "
                              "use another --out to start a new run, or the same config to resume")
    else:
        atomic_write_text(existing, text)
    return out


def _diff_keys(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = []
        for k in sorted(set(old) | set(new)):
            keys += _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return keys
    return [prefix.rstrip(".")] if old != new else []
