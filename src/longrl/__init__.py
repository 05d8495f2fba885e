"""longrl: reinforcement learning for long-context reasoning models.

The QwenLong-L1 recipe (warm-up SFT, curriculum-guided phased GRPO/DAPO, difficulty-aware
retrospective sampling, hybrid rule + LLM-judge reward) with shared-prompt rollout and
training. Start with `longrl --help`, `make demo` and README.md.
"""

__version__ = "0.1.0"
