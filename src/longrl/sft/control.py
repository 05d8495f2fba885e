"""The SFT-long control arm: is RL's gain the method, or just more training on longer documents?

    items = traced_items(phase_items)                         # the RL phases' items, once each, with traces
    long_cfg = long_control_config(cfg, sft_weights, steps)   # SFT continued from the SFT checkpoint
    final = train_sft(long_cfg, out / "sft_long", examples=items)

The pipeline (`sft.long_control: true`) trains "sft-long" after the RL phases: SFT from the warm-up
SFT checkpoint on the same items the RL phases trained on (their programmatic gold traces,
`meta.trace`), for as many optimizer steps as the RL phases made (`optim/updates` summed over their
metrics), with the `sft` section's learning rate, schedule and batch size; then evaluates it on the
same held-out items as the SFT and RL policies. RL beating SFT-long means the gain is not explained
by the extra optimizer steps on longer documents alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from longrl.config import Config, apply_overrides
from longrl.data.schema import Sample
from longrl.errors import ConfigError


def traced_items(items: Iterable[Sample]) -> list[Sample]:
    """Each item once (first occurrence), all with a `meta.trace` to imitate; ConfigError otherwise."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            out.append(item)
    missing = [s.id for s in out if not isinstance(s.meta.get("trace"), str) or not s.meta["trace"]]
    if missing:
        raise ConfigError(f"sft.long_control: {len(missing)} of the RL phases' {len(out)} items have no meta.trace "
                          f"(first: {missing[0]!r}); the SFT-long control imitates programmatic gold traces. Give the "
                          "items traces (`longrl distill` writes them) or set sft.long_control=false")
    if not out:
        raise ConfigError("sft.long_control: the RL phases trained on no items")
    return out


def long_control_config(cfg: Config, start_weights: str, steps: int) -> Config:
    """The SFT config of the control: start from `start_weights`, exactly `steps` optimizer steps."""
    if steps < 1:
        raise ConfigError(f"sft.long_control: the RL phases made {steps} optimizer updates; nothing to match")
    return apply_overrides(cfg, {"model.path": start_weights, "sft.steps": steps, "sft.long_control": False},
                           source="sft.long_control")
