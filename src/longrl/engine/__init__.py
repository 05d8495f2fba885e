"""Running models: the one place every stage (RL, SFT, evaluation, pretraining) runs a model through.

- `attention.py`: cascade (shared-prompt) attention: a group's prompt keys/values kept once.
- `packed.py`: block-diagonal causal attention over packed rows (SFT, pretraining).
- `generate.py`: group generation (one prefill per prompt, G samples decoded against it) and sampling.
- `logprobs.py`: completion log-probs and entropy with the prompt shared and the LM head chunked.
- `nll.py`: the per-token loss of packed rows (chunked LM head).
- `bench.py`: benchmarks of the above against naive baselines (`longrl bench rollout|forward|logprobs`).

The engine imports `models` and the foundation only: no stage, no config beyond what it is handed.
"""
