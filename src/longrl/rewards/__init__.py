"""Rewards: answer extraction, rule verifiers, the LLM judge, the hybrid reward, `longrl score`.

    from longrl.rewards.hybrid import HybridReward, RewardInput, summarize
    results = HybridReward(cfg.reward).score([RewardInput(task, question, answers, response)])

Modules: extract (final answer of a response), text / numbers (normalisation, safe number
parsing), verifiers (VERIFIERS registry: qa, numeric, choice), judge + cache (OpenAI-compatible
judge client, on-disk verdict cache), hybrid (the reward the RL loop and the evaluation use),
compat (verl and TRL reward functions), custom (`reward.custom`: your function from a file the
config names), bench (`longrl bench judge|verifiers`); `longrl score` is `longrl.cli.score`.
Importing this package stays light (no HTTP client); import the modules you need.
"""
