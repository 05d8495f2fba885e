"""One full RL step of longrl vs TRL's GRPOTrainer: same model, data, G, lengths, objective, CPU.

    .venv/bin/pip install -c .venv/constraints.txt trl        # benchmark-only peer (the `bench` extra)
    .venv/bin/python benchmarks/vs_trl.py --threads 2 --json runs/vs_trl.json
    .venv/bin/python benchmarks/vs_trl.py --quick              # small sizes: checks that both sides run
    .venv/bin/python benchmarks/vs_trl.py --model builtin:smollm2-135m --prompt-len 1024   # a real model (`real` extra)

Both sides train the same random-init tiny Qwen2 (the embedded default's shape: hidden 256,
4 layers, GQA 4/2 heads, longrl's 1.3K-vocabulary tokenizer; `--model` another, e.g. SmolLM2-135M-Instruct
with its own tokenizer and chat template) on the same synthetic long-document
items (prompts of ~2K tokens, chat template included), with G=8 samples per prompt, 64 new tokens
at temperature 1.0, DAPO token-mean loss with clip 0.2/0.28, no KL term (no reference model),
one optimizer update per step, rule-based reward (longrl's, through its TRL adapter), and no vLLM.
Each side runs `--steps` steps (default 2) and the figure is its fastest step after the first
(warm-up: allocator, kernel choice). A step is rollout + reward + update, measured inside each
trainer (longrl: `time/step` of metrics.jsonl; TRL: a callback's on_step_begin -> on_step_end),
as wall time (`speedup`) and as the process's CPU time (`cpu_time_ratio`: steadier on a busy machine).

Where the time goes: TRL generates with `model.generate` on the P*G prompt copies (each prompt is
prefilled G times and its keys and values kept G times) and trains on P*G full sequences; longrl
prefills each prompt once, decodes its G samples against one copy of its KV (cascade attention),
and runs each prompt once in the training forward. Figures and the machine: benchmarks/vs_trl.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=4, help="prompts per step (P)")
    p.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    p.add_argument("--prompt-len", type=int, default=2048, help="prompt length in tokens (chat template included)")
    p.add_argument("--new", type=int, default=64, help="max new tokens per sample")
    p.add_argument("--steps", type=int, default=2, help="RL steps per side; the fastest after the first counts")
    p.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that both sides run")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="a real model for both sides (builtin:smollm2-135m, a folder, a hub name); default: a random tiny Qwen2")
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.group, args.prompt_len, args.new = 2, 4, 256, 8
    return args


def build_inputs(args: argparse.Namespace, root: Path):
    """The model folder and the items, shared by both sides."""
    from longrl.data.synthetic import synthesize
    from longrl.config.model import ModelConfig, TinyArchConfig
    from longrl.models.loading import load_tokenizer, resolve_path
    from longrl.models.tiny import build_tiny_model, save_pretrained
    from longrl.models.tokenizer import load_default_tokenizer

    if args.model:          # a real model: its folder (builtin:smollm2-135m is made once into longrl's cache)
        model_dir = Path(resolve_path(args.model))
        tokenizer = load_tokenizer(ModelConfig(path=args.model))
    else:
        tokenizer = load_default_tokenizer()
        model_dir = root / "model"
        save_pretrained(build_tiny_model(TinyArchConfig(), tokenizer), tokenizer, model_dir)
    items = synthesize(["docmath", "multihop", "choice"], n=args.prompts * args.steps, length=args.prompt_len, seed=0,
                       tokenizer=tokenizer)
    return model_dir, items


def run_longrl(args: argparse.Namespace, model_dir: Path, items, out: Path) -> dict:
    from longrl.config import load_config
    from longrl.rl.trainer import train
    from longrl.tracking import read_metrics

    budget = args.prompts * (args.prompt_len + 64 + args.group * args.new)   # the whole step in one micro-batch
    cfg = load_config(None, [
        f"model.path={model_dir}", f"run.torch_threads={args.threads}", "run.progress=none", "run.dump_samples_every=0",
        f"run.save_every={args.steps + 1}", f"train.steps={args.steps}", f"train.prompts_per_step={args.prompts}",
        f"rollout.group_size={args.group}", f"rollout.max_new_tokens={args.new}", "rollout.temperature=1.0",
        "rollout.top_p=1.0", f"rollout.groups_per_batch={args.prompts}", "algo.dynamic_sampling=false",
        "algo.loss_agg=token-mean", "algo.kl_coef=0", "algo.track_kl=false", "algo.entropy_coef=0",
        "algo.clip_eps_low=0.2", "algo.clip_eps_high=0.28", "optim.lr=1e-5", "optim.weight_decay=0",
        f"train.micro_batch_tokens={budget}", "train.mini_batches=1", "train.ppo_epochs=1",
    ])
    train(cfg, out, items=items)
    rows = read_metrics(out / "metrics.jsonl")
    warm = rows[1:] or rows
    best = min(warm, key=lambda r: r["time/step"])
    return {"step_s": best["time/step"], "steps_s": [r["time/step"] for r in rows],
            "step_cpu_s": min(r["time/step_cpu"] for r in warm),
            "rollout_s": best["time/rollout"], "reward_s": best["time/reward"], "update_s": best["time/update"],
            "completion_len_mean": best["response_len/mean"]}


def run_trl(args: argparse.Namespace, model_dir: Path, items, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from longrl.data.prompt import user_message
    from longrl.rewards.compat import make_trl_reward

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps, self.cpu, self.logs, self._start = [], [], [], (0.0, 0.0)

        def on_step_begin(self, *a, **k):
            self._start = (time.perf_counter(), time.process_time())

        def on_step_end(self, *a, **k):
            self.steps.append(time.perf_counter() - self._start[0])
            self.cpu.append(time.process_time() - self._start[1])

        def on_log(self, _args, _state, _control, logs=None, **k):
            self.logs.append(dict(logs or {}))

    rows = [{"prompt": [{"role": "user", "content": user_message(s)}], "answers": s.answers, "task": s.task,
             "question": s.question} for s in items]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    config = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, seed=0, report_to="none", save_strategy="no",
        logging_steps=1, max_steps=args.steps, learning_rate=1e-5, weight_decay=0.0, lr_scheduler_type="constant",
        per_device_train_batch_size=args.prompts * args.group, gradient_accumulation_steps=1, num_iterations=1,
        num_generations=args.group, max_completion_length=args.new, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.0, loss_type="dapo", epsilon=0.2, epsilon_high=0.28, scale_rewards="group", shuffle_dataset=False,
        dataloader_num_workers=0, log_completions=False, disable_dropout=True,
        gradient_checkpointing=False,     # TRL's default is on (memory for time); longrl's default is off
    )
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=[make_trl_reward(max_completion_length=args.new)],
                          args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[timer])
    trainer.train()
    first = 1 if len(timer.steps) > 1 else 0
    lengths = [log["completions/mean_length"] for log in timer.logs if "completions/mean_length" in log]
    return {"step_s": round(min(timer.steps[first:]), 4), "steps_s": [round(s, 4) for s in timer.steps],
            "step_cpu_s": round(min(timer.cpu[first:]), 4), "completion_len_mean": lengths[-1] if lengths else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers
    import trl

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="longrl-vs-trl-") as tmp:
        root = Path(tmp)
        model_dir, items = build_inputs(args, root)
        ours = run_longrl(args, model_dir, items, root / "longrl")
        torch.set_num_threads(args.threads)
        theirs = run_trl(args, model_dir, items, root / "trl")
        shape = transformers.AutoConfig.from_pretrained(str(model_dir))
    result = {
        "benchmark": "vs_trl", "speedup": round(theirs["step_s"] / ours["step_s"], 2),
        "cpu_time_ratio": round(theirs["step_cpu_s"] / ours["step_cpu_s"], 2),
        "longrl": ours, "trl": theirs,
        "model": args.model or "random tiny Qwen2",
        "sizes": {"prompts": args.prompts, "group": args.group, "prompt_tokens": args.prompt_len,
                  "new_tokens": args.new, "hidden": shape.hidden_size, "layers": shape.num_hidden_layers,
                  "vocab": shape.vocab_size, "steps": args.steps},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "trl": trl.__version__,
                    "platform": platform.platform(), "threads": args.threads},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        from longrl.files import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
