"""The error table: each bad input, through `main`, its exit code and the message it prints.

One row per case that once ended in a traceback (exit 1) or was silently accepted, and the ones
added with them. Every refusal exits 2 with one `longrl CMD: error: ...` line that names the
file (with the line or row and the field where there is one), and leaves no output behind.
Paths in messages are written `{d}` (the test's folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from longrl.cli import main
from longrl.models.tokenizer import assets_dir

SMOKE = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")
TINY_RL = ["train.steps=1", "data.train.0.synth.n=2", "rollout.group_size=2", "rollout.max_new_tokens=4",
           "reward.overlong.buffer=2", "run.save_every=1"]
SYNTH = ["data", "synth", "--n", "2", "--length", "128"]
BOMB = "model:\n  rope_scaling:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    {b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdef", "bcdefg"))
SAMPLE = {"id": "a", "task": "qa", "context": "The sky is blue.", "question": "Colour?", "answers": ["blue"],
          "meta": {"trace": "<think>The sky is blue.</think>Therefore, the answer is blue."}}


def parquet_bomb() -> bytes:
    """A ~50 KB parquet file of 20,000 rows that all hold one 1 MiB string: ~20 GB once decoded."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 20_000
    context = pa.DictionaryArray.from_arrays(pa.array([0] * rows, type=pa.int32()), pa.array(["x" * (1 << 20)]))
    table = pa.table({"id": [str(i) for i in range(rows)], "task": ["qa"] * rows, "context": context,
                      "question": ["q"] * rows, "answers": [["a"]] * rows})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


SURROGATE_ROW = '{"id": "s", "task": "qa", "question": "q", "response": "<think>a</think>Therefore, the answer is \\ud800", "answers": ["blue"]}'
SURROGATE_SAMPLE = '{"id": "b", "task": "qa", "context": "The sky is \\udfff blue.", "question": "Colour?", "answers": ["blue"]}'
TOKENIZER = {f"ad/{name}": (assets_dir() / "tiny-base" / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")}
HUGE_ROLLOUT = ["rollout.group_size=1024", "rollout.groups_per_batch=4096", "train.prompts_per_step=4096",
                "rollout.max_new_tokens=4000"]


@dataclass
class Case:
    name: str
    argv: list[str]
    code: int
    message: str                                        # regex on stderr; {d} = the test folder
    files: dict[str, bytes | str] = field(default_factory=dict)  # written before the run ("dir/" = a folder)
    absent: list[str] = field(default_factory=list)    # outputs that must not exist afterwards


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


CASES = [
    # Output paths: a file where a folder belongs, a folder where a file belongs.
    Case("synth --out under a file", [*SYNTH, "--out", "{d}/afile/x.jsonl"], 2,
         r"longrl data: error: cannot write {d}/afile/x.jsonl: {d}/afile is a file, not a directory", {"afile": "x"}),
    Case("synth --out is a folder", [*SYNTH, "--out", "{d}/adir"], 2,
         r"longrl data: error: cannot write {d}/adir: it is a directory; name a file", {"adir/": ""}),
    Case("score --output under a file", ["score", "--input", "{d}/in.jsonl", "--output", "{d}/afile/o.jsonl"], 2,
         r"longrl score: error: cannot write {d}/afile/o.jsonl: {d}/afile is a file, not a directory",
         {"afile": "x", "in.jsonl": jsonl({"id": "r", "task": "qa", "question": "q", "response": "<think>a</think>blue", "answers": ["blue"]})}),
    Case("score --output is a folder", ["score", "--input", "{d}/in.jsonl", "--output", "{d}/adir"], 2,
         r"longrl score: error: cannot write {d}/adir: it is a directory; name a file",
         {"adir/": "", "in.jsonl": jsonl({"id": "r", "task": "qa", "question": "q", "response": "<think>a</think>blue", "answers": ["blue"]})}),
    Case("rl --out is a file", ["rl", "--config", SMOKE, "--out", "{d}/afile", *TINY_RL], 2,
         r"longrl rl: error: cannot write {d}/afile: a file of that name exists; name a directory", {"afile": "x"}),
    Case("rl --out under a file", ["rl", "--config", SMOKE, "--out", "{d}/afile/run", *TINY_RL], 2,
         r"longrl rl: error: cannot write {d}/afile/run: {d}/afile is a file, not a directory", {"afile": "x"}),
    Case("eval --out under a file", ["eval", "--model", "random", "--benchmarks", "synthetic-128", "--out", "{d}/afile/ev",
                                     "eval.synthetic.n=1", "eval.max_new_tokens=2"], 2,
         r"longrl eval: error: cannot write {d}/afile/ev: {d}/afile is a file, not a directory", {"afile": "x"}),
    Case("model tiny --out is a file", ["model", "tiny", "--out", "{d}/afile"], 2,
         r"longrl model: error: cannot write {d}/afile: a file of that name exists; name a directory", {"afile": "x"}),
    Case("distill --out is a folder", ["distill", "--config", SMOKE, "--from-traces", "--input", "{d}/s.jsonl", "--out", "{d}/adir"], 2,
         r"longrl distill: error: cannot write {d}/adir: it is a directory; name a file", {"adir/": "", "s.jsonl": jsonl(SAMPLE)}),
    # Encodings and nesting.
    Case("validate: config not UTF-8", ["validate", "--config", "{d}/c.yaml"], 2,
         r"longrl validate: error: {d}/c.yaml, line 2: not UTF-8 text \(invalid start byte at byte 21\)",
         {"c.yaml": b"run: {seed: 1}\nname: \xff\n"}),
    Case("report: metrics line not UTF-8 is skipped", ["report", "{d}/run"], 0, r"^$",
         {"run/metrics.jsonl": b'{"step": 1, "reward/mean": 0.5}\n\xff\xfe\n{"step": 2, "reward/mean": 0.7}\n'}),
    Case("report: summary.json not JSON", ["report", "{d}/run"], 2,
         r"longrl report: error: {d}/run/eval/m/summary.json, file: not readable JSON \(Expecting property name",
         {"run/eval/m/summary.json": "{oops"}, ["run/report.md"]),
    Case("data stats: JSON nested 100,000 deep", ["data", "stats", "{d}/s.jsonl"], 2,
         r"longrl data: error: {d}/s.jsonl, line 2: refused: JSON nested deeper than 64 levels",
         {"s.jsonl": jsonl(SAMPLE, "[" * 100_000 + "]" * 100_000)}),
    Case("score: JSON nested 50,000 deep", ["score", "--input", "{d}/in.jsonl", "--output", "{d}/o.jsonl"], 2,
         r"longrl score: error: {d}/in.jsonl, line 1: refused: JSON nested deeper than 64 levels",
         {"in.jsonl": '{"id": "a", "answers": ' + "[" * 50_000 + "]" * 50_000 + "}\n"}, ["o.jsonl"]),
    Case("data stats: integer of 5,000 digits", ["data", "stats", "{d}/s.jsonl"], 2,
         r"longrl data: error: {d}/s.jsonl, line 1: refused: JSON holds an integer of more than 4300 digits",
         {"s.jsonl": '{"id": "a", "meta": {"n": 1' + "0" * 5000 + "}}\n"}),
    Case("validate: YAML alias bomb", ["validate", "--config", "{d}/c.yaml"], 2,
         r"longrl validate: error: {d}/c.yaml: refused: the YAML expands to more than 100,000 values", {"c.yaml": BOMB}),
    Case("rl: YAML alias bomb, before any work", ["rl", "--config", "{d}/c.yaml", "--out", "{d}/run"], 2,
         r"{d}/c.yaml: refused: the YAML expands", {"c.yaml": BOMB}, ["run"]),
    Case("validate: recursive alias in an override", ["validate", "--config", SMOKE, "model.rope_scaling=&a {k: *a}"], 2,
         r"bad override model.rope_scaling=...: refused: the value a YAML alias refers to a block that contains it"),
    # `longrl config`: an unknown section, a folder that is no run directory, files it cannot read.
    Case("config keys: unknown section", ["config", "keys", "rollout.sever"], 2,
         r"longrl config: error: no config section or key 'rollout.sever' \(did you mean rollout.server, .*\); "
         r"sections: run, model, data, reward, rollout, algo, optim, train, sft, curriculum, eval, pretrain$"),
    Case("config diff: a folder without config.yaml", ["config", "diff", "{d}/adir", SMOKE], 2,
         r"longrl config: error: {d}/adir: a directory without config.yaml; name a config file or a run directory",
         {"adir/": ""}),
    Case("config diff: no such file", ["config", "diff", SMOKE, "{d}/nope.yaml"], 2,
         r"longrl config: error: cannot read config file {d}/nope.yaml: No such file or directory"),
    Case("config show: config not UTF-8", ["config", "show", "--config", "{d}/c.yaml"], 2,
         r"longrl config: error: {d}/c.yaml, line 2: not UTF-8 text", {"c.yaml": b"run: {seed: 1}\nname: \xff\n"}),
    Case("config show: a misspelt override", ["config", "show", "run.sede=1"], 2,
         r"longrl config: error: invalid config \(<defaults>\):\n  run.sede \(from run.sede=1\): unknown key; accepted keys here: "),
    Case("config diff: a run directory with a key this longrl does not know", ["config", "diff", "{d}/run", SMOKE], 2,
         r"invalid config \({d}/run/config.yaml\):\n  run.retired: unknown key", {"run/config.yaml": "run: {retired: 1}\n"}),
    # Values out of range, refused by validation before any work.
    Case("synth --hops -3", [*SYNTH, "--hops", "-3", "--out", "{d}/x.jsonl"], 2,
         r"longrl data: error: synthetic hops -3 must be at least 1", absent=["x.jsonl"]),
    Case("synth --distractors -3 (was accepted)", [*SYNTH, "--distractors", "-3", "--out", "{d}/x.jsonl"], 2,
         r"longrl data: error: synthetic distractors -3 must be 0 or more", absent=["x.jsonl"]),
    Case("synth --length 100000000", ["data", "synth", "--n", "1", "--length", "100000000", "--out", "{d}/x.jsonl"], 2,
         r"longrl data: error: synthetic length 100000000 is out of range: use 32\.\.1048576 prompt tokens", absent=["x.jsonl"]),
    Case("synth --hops 10000", [*SYNTH, "--tasks", "multihop", "--hops", "10000", "--out", "{d}/x.jsonl"], 2,
         r"synthetic family 'multihop' cannot chain 10000 hops: its world has 4,900 names", absent=["x.jsonl"]),
    Case("synth --hops 1000 in 128 tokens", [*SYNTH, "--tasks", "multihop", "--hops", "1000", "--out", "{d}/x.jsonl"], 2,
         r"synthetic family 'multihop': a 128-token prompt cannot hold 1000 hops and 0 distractors", absent=["x.jsonl"]),
    Case("synth --n 0", ["data", "synth", "--n", "0", "--length", "64", "--out", "{d}/x.jsonl"], 2, r"--n 0: must be at least 1"),
    Case("validate run.torch_threads=99999999999999999999", ["validate", "--config", SMOKE, "run.torch_threads=99999999999999999999"], 2,
         r"run.torch_threads \(from run.torch_threads=99999999999999999999\): Input should be less than or equal to 4096"),
    Case("rl run.torch_threads=99999999999999999999, before any work", ["rl", "--config", SMOKE, "--out", "{d}/run",
                                                                        "run.torch_threads=99999999999999999999"], 2,
         r"run.torch_threads .*less than or equal to 4096", absent=["run"]),
    Case("validate rollout.temperature=.inf", ["validate", "--config", SMOKE, "rollout.temperature=.inf"], 2,
         r"rollout.temperature \(from rollout.temperature=.inf\): Input should be a finite number \(got inf\)"),
    Case("rl rollout.temperature=.inf (a run finished), before any work", ["rl", "--config", SMOKE, "--out", "{d}/run",
                                                                           "rollout.temperature=.inf"], 2,
         r"rollout.temperature .*finite number", absent=["run"]),
    Case("validate run.seed past int64", ["validate", "--config", SMOKE, "run.seed=99999999999999999999"], 2,
         r"run.seed .*99999999999999999999 does not fit in 64 bits"),
    Case("validate NaN inside model.rope_scaling", ["validate", "--config", SMOKE, "model.rope_scaling={factor: .nan}"], 2,
         r"model.rope_scaling .*nan is not a finite number"),
    Case("validate optim.betas=[0.9, 1.5]", ["validate", "--config", SMOKE, "optim.betas=[0.9, 1.5]"], 2,
         r"optim.betas.1: Input should be less than 1"),
    Case("validate a misspelt key in a phase's overrides", ["validate", "--config", SMOKE,
         "curriculum.phases=[{name: p1, max_input_tokens: 512, max_response_tokens: 8, overrides: {algo.clip_eps_hihg: 0.3}}]"], 2,
         r"curriculum.phases.0.overrides \(phase 'p1'\)\):\n  algo.clip_eps_hihg .*unknown key"),
    Case("validate synth decoys no document can hold", ["validate", "--config", SMOKE, "data.train.0.synth.distractors=5000"], 2,
         r"synth: synthetic family 'choice' places at most 2449 distractors at 1 hops"),
    Case("bench --threads 99999999999", ["bench", "verifiers", "--threads", "99999999999"], 2,
         r"longrl bench: error: --threads 99999999999: use 0 \(torch's default\) to 4096"),
    Case("bench --threads -1", ["bench", "verifiers", "--threads", "-1"], 2, r"--threads -1: use 0"),
    # reward.custom: the user's reward file, checked before any work.
    Case("rl reward.custom.path: no such file, before any work", ["rl", "--config", SMOKE, "--out", "{d}/run",
                                                                 "reward.custom.path={d}/my_reward.py"], 2,
         r"longrl rl: error: reward.custom.path: no such file: {d}/my_reward.py$", absent=["run"]),
    Case("rl reward.custom: a file that does not load, before any work", ["rl", "--config", SMOKE, "--out", "{d}/run",
                                                                         "reward.custom.path={d}/r.py"], 2,
         r"longrl rl: error: reward.custom.path: {d}/r.py failed to load \(line 1\): SyntaxError", {"r.py": "def f(:\n"},
         absent=["run"]),
    Case("rl reward.custom.name: not in the file, before any work", ["rl", "--config", SMOKE, "--out", "{d}/run",
                                                                    "reward.custom.path={d}/r.py", "reward.custom.name=score"], 2,
         r"longrl rl: error: reward.custom.name: {d}/r.py defines no 'score'; functions it defines: compute_score",
         {"r.py": "def compute_score(a, b, c, d=None):\n    return 1.0\n"}, absent=["run"]),
    Case("validate reward.custom: a function of the wrong shape",
         ["validate", "--config", SMOKE, "reward.custom.path={d}/r.py"], 2,
         r"longrl validate: error: reward.custom: compute_score\(text\) in {d}/r.py cannot be called as",
         {"r.py": "def compute_score(text):\n    return 1.0\n"}),
    Case("score: a custom reward that raises", ["score", "--input", "{d}/in.jsonl", "--output", "{d}/o.jsonl",
                                               "reward.custom.path={d}/r.py"], 2,
         r"longrl score: error: reward.custom: compute_score from {d}/r.py failed on 1 of 1 responses .*"
         r"first, on task 'qa': ZeroDivisionError: division by zero",
         {"r.py": "def compute_score(a, b, c, d=None):\n    return 1 / 0\n",
          "in.jsonl": jsonl({"id": "r", "task": "qa", "question": "q", "response": "<think>a</think>blue", "answers": ["blue"]})},
         ["o.jsonl"]),
    # Sizes (issue 25, case 8): refused by validation, or at start-up against the model and the machine.
    Case("validate rollout.max_new_tokens=1000000000 (was ok; a 2 TB allocation at start)",
         ["validate", "--config", SMOKE, "rollout.max_new_tokens=1000000000"], 2,
         r"rollout.max_new_tokens \(from rollout.max_new_tokens=1000000000\): Input should be less than or equal to 1048576"),
    Case("rl rollout.group_size=1000000 (7.3 GB then a traceback), before any work",
         ["rl", "--config", SMOKE, "--out", "{d}/run", "rollout.group_size=1000000"], 2,
         r"rollout.group_size .*less than or equal to 1024", absent=["run"]),
    Case("validate train.prompts_per_step=100000000", ["validate", "--config", SMOKE, "train.prompts_per_step=100000000"], 2,
         r"train.prompts_per_step .*less than or equal to 65536"),
    Case("validate a response longer than the model's context", ["validate", "--config", SMOKE, "rollout.max_new_tokens=5000"],
         2, r"longrl validate: error: rollout.max_new_tokens=5000 is longer than the model's context \(4096 tokens"),
    Case("rl a rollout no machine of this kind holds, before the run directory is written",
         ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, *HUGE_ROLLOUT], 2,
         r"longrl rl: error: the rollout needs about [\d,.]+ GiB \(4096 prompts decoded together .* x 1024 samples "
         r"\(rollout.group_size\) of up to 4000 new tokens.*more than this machine's", absent=["run"]),
    # Models.
    Case("eval: a model with a layer removed (was scored 0.0 with random weights, exit 0)",
         ["eval", "--model", "{d}/m", "--benchmarks", "synthetic-128", "--out", "{d}/ev", "eval.synthetic.n=1",
          "eval.max_new_tokens=2"], 2,
         r"longrl eval: error: {d}/m: incomplete weights \(12 tensor\(s\) the model needs are missing: "
         r"model.layers.1.input_layernorm.weight, .*never fills missing weights with random values", {"m/": "tiny-base-no-layer"},
         ["ev"]),
    Case("rl model.path: an empty model.safetensors (was trained from random weights)",
         ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, "model.path={d}/m"], 2,
         r"longrl rl: error: {d}/m: incomplete weights \(\d+ tensor\(s\) the model needs are missing", {"m/": "tiny-base-empty"},
         ["run"]),
    Case("serve: an adapter folder without its weights (was 'cannot listen on 127.0.0.1:0')",
         ["serve", "--model", "{d}/ad", "--port", "0"], 2, r"longrl serve: error: {d}/ad: no adapter_model.safetensors",
         {"ad/adapter_config.json": '{"base_model_name_or_path": "builtin:tiny-base", "peft_type": "LORA", "r": 4}', **TOKENIZER}),
    Case("serve: a malformed adapter_config.json", ["serve", "--model", "{d}/ad", "--port", "0"], 2,
         r"longrl serve: error: {d}/ad/adapter_config.json: not a readable adapter config \(JSONDecodeError",
         {"ad/adapter_config.json": '{"base_model_name_or_path": ', "ad/adapter_model.safetensors": "x", **TOKENIZER}),
    # Text no UTF-8 can carry, and files that are no files (issue 25, case 9).
    Case("score: a lone surrogate in a row (crashed after scoring: output lost)",
         ["score", "--input", "{d}/in.jsonl", "--output", "{d}/o.jsonl"], 2,
         r"longrl score: error: {d}/in.jsonl, line 2: refused: JSON holds a lone surrogate \\ud800",
         {"in.jsonl": jsonl({"id": "r", "task": "qa", "question": "q", "response": "x", "answers": ["blue"]}, SURROGATE_ROW)},
         ["o.jsonl"]),
    Case("data export: a lone surrogate in a sample", ["data", "export", "--format", "trl", "{d}/s.jsonl", "--out", "{d}/x.jsonl"],
         2, r"longrl data: error: {d}/s.jsonl, line 2: refused: JSON holds a lone surrogate \\udfff",
         {"s.jsonl": jsonl(SAMPLE, SURROGATE_SAMPLE)}, ["x.jsonl"]),
    Case("data stats --tokenizer: a lone surrogate in a sample", ["data", "stats", "{d}/s.jsonl", "--tokenizer", "builtin:tiny-base"],
         2, r"longrl data: error: {d}/s.jsonl, line 2: refused: JSON holds a lone surrogate", {"s.jsonl": jsonl(SAMPLE, SURROGATE_SAMPLE)}),
    Case("data import: a 50 KB parquet that decodes to 20 GB (was MemoryError)",
         ["data", "import", "--format", "docqa-rl", "{d}/bomb.parquet", "--out", "{d}/x.jsonl"], 2,
         r"longrl data: error: {d}/bomb.parquet, file: it decodes to 19.5 GiB of values .* more than the 4 GiB longrl reads",
         {"bomb.parquet": "parquet-bomb"}, ["x.jsonl"]),
    Case("data stats: a parquet that decodes to 20 GB", ["data", "stats", "{d}/bomb.parquet"], 2,
         r"{d}/bomb.parquet, file: it decodes to 19.5 GiB", {"bomb.parquet": "parquet-bomb"}),
    Case("validate: --config linked to /dev/zero", ["validate", "--config", "{d}/c.yaml"], 2,
         r"longrl validate: error: {d}/c.yaml: refused: the config file is not a regular file", {"c.yaml": "symlink:/dev/zero"}),
    Case("rl: the run's config.yaml linked to /dev/zero", ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL], 2,
         r"longrl rl: error: {d}/run/config.yaml: the recorded config of this run is unreadable \(is not a regular file",
         {"run/config.yaml": "symlink:/dev/zero"}),
    Case("data stats: a data file that is /dev/zero", ["data", "stats", "{d}/s.jsonl"], 2,
         r"longrl data: error: {d}/s.jsonl, file: not a regular file", {"s.jsonl": "symlink:/dev/zero"}),
    Case("rl model.path: folder with nothing in it", ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, "model.path={d}/empty"], 2,
         r"longrl rl: error: {d}/empty: no tokenizer files \(tokenizer.json, .*\); set model.tokenizer", {"empty/": ""}),
    Case("rl model.path: folder without weights", ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, "model.path={d}/m"], 2,
         r"longrl rl: error: {d}/m: no \*.safetensors weights \(longrl loads safetensors only\)", {"m/": "tiny-base-no-weights"}),
    Case("rl model.path: weights cut short", ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, "model.path={d}/m"], 2,
         r"longrl rl: error: cannot load model weights from '{d}/m': Error while deserializing header", {"m/": "tiny-base-cut"}),
    Case("rl model.attn_implementation=nope", ["rl", "--config", SMOKE, "--out", "{d}/run", *TINY_RL, "model.attn_implementation=nope"], 2,
         r"longrl rl: error: model.attn_implementation='nope': Specified `attn_implementation=\"nope\"` is not supported"),
    # Data.
    Case("eval: an empty benchmark file (was scored 0.0 and averaged in)",
         ["eval", "--model", "random", "--benchmarks", "frames", "--data-dir", "{d}/bench", "--out", "{d}/ev"], 2,
         r"longrl eval: error: {d}/bench/frames.jsonl, file: no items: benchmark 'frames' would score 0", {"bench/frames.jsonl": "\n"}),
    Case("distill --from-traces with overlong shaping on (was ValueError)",
         ["distill", "--config", SMOKE, "--from-traces", "--input", "{d}/s.jsonl", "--out", "{d}/demos.jsonl"], 0,
         r"distill: 1 demonstrations written", {"s.jsonl": jsonl(SAMPLE)}),
    Case("score: a row's field has the wrong type", ["score", "--input", "{d}/in.jsonl", "--output", "{d}/o.jsonl"], 2,
         r"longrl score: error: {d}/in.jsonl, line 2, field 'answers': expected a non-empty list of non-empty strings",
         {"in.jsonl": jsonl({"id": "r", "task": "qa", "question": "q", "response": "x", "answers": ["blue"]},
                            {"id": "s", "task": "qa", "question": "q", "response": "x", "answers": [1]})}, ["o.jsonl"]),
]


def materialise(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            if content.startswith("tiny-base"):
                shutil.copytree(assets_dir() / "tiny-base", path)
                weights = path / "model.safetensors"
                if content == "tiny-base-no-weights":
                    weights.unlink()
                elif content in ("tiny-base-no-layer", "tiny-base-empty"):
                    from safetensors.torch import load_file, save_file

                    kept = {k: v for k, v in load_file(str(weights)).items() if ".layers.1." not in k}
                    save_file(kept if content == "tiny-base-no-layer" else {}, str(weights), metadata={"format": "pt"})
                else:
                    weights.write_bytes(weights.read_bytes()[:1000])
            else:
                path.mkdir()
        elif isinstance(content, str) and content.startswith("symlink:"):
            os.symlink(content.removeprefix("symlink:"), path)
        elif content == "parquet-bomb":
            path.write_bytes(parquet_bomb())
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_table(case, tmp_path, capsys):
    materialise(tmp_path, case.files)
    d = str(tmp_path)
    code = main([arg.replace("{d}", d) for arg in case.argv])
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err
    assert re.search(case.message.replace("{d}", re.escape(d)), err), err
    if code == 2:
        assert len([line for line in err.splitlines() if ": error: " in line]) == 1
    for name in case.absent:
        assert not (tmp_path / name).exists(), name
    assert not [p for p in tmp_path.rglob(".*.tmp")], "a temporary was left behind"


def test_a_module_name_as_a_task_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text(jsonl({"id": "r", "task": "this:nothing", "question": "q", "response": "x", "answers": ["a"]}))
    assert main(["score", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "field 'task'" in capsys.readouterr().err


def test_a_full_disk_is_exit_2_and_leaves_no_output(tmp_path):
    """RLIMIT_FSIZE fails the write the way a full disk does (EFBIG), as any user; the CLI runs in a child."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from longrl.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    rows = tmp_path / "in.jsonl"
    rows.write_text(jsonl(*[{"id": f"r{i}", "task": "qa", "question": "q", "response": "<think>a</think>blue",
                             "answers": ["blue"]} for i in range(100)]))  # scored rows: ~20 KB, past the 4 KB limit
    out = tmp_path / "scored.jsonl"
    env = {**os.environ, "LONGRL_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "score", "--input", str(rows), "--output", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"longrl score: error: cannot write {out}: File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]


def test_a_read_only_folder_is_exit_2(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (tests run as root here); other refusals share the OutputError path")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main([*SYNTH, "--out", str(folder / "x.jsonl")]) == 2
        assert f"cannot write {folder / 'x.jsonl'}: Permission denied" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


@pytest.mark.slow
def test_resume_after_a_kill_uses_the_newest_intact_checkpoint_cleans_temporaries_and_follows_the_umask(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["rl", "--config", SMOKE, "--out", str(run), "train.steps=2", "data.train.0.synth.n=2", "rollout.group_size=2",
            "rollout.max_new_tokens=4", "reward.overlong.buffer=2", "run.save_every=1", "run.keep_checkpoints=3"]
    old_mask = os.umask(0o022)
    try:
        assert main(argv) == 0
        ckpts = run / "checkpoints"
        assert (run / "config.yaml").stat().st_mode & 0o777 == 0o644
        assert ckpts.stat().st_mode & 0o777 == 0o755 and (ckpts / "step-00000002").stat().st_mode & 0o777 == 0o755
        assert (ckpts / "step-00000002" / "model.safetensors").stat().st_mode & 0o777 == 0o644
        # Make it look killed late in step 2's writes: newest weights cut short, no final/, temporaries left.
        weights = ckpts / "step-00000002" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:4096])
        shutil.rmtree(run / "final")
        leftovers = [ckpts / ".step-00000003.k1.tmp", run / ".final.k2.tmp", run / "samples" / ".step-00000002.jsonl.k3.tmp"]
        for path in leftovers:
            path.mkdir(parents=True) if path.name.startswith((".step-00000003", ".final")) else path.write_text("{")
        capsys.readouterr()
        assert main(argv) == 0
    finally:
        os.umask(old_mask)
    flat = "".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "checkpoint step-00000002 is damaged (model.safetensors has 4096 bytes".replace(" ", "") in flat
    assert f"resuming from {ckpts / 'step-00000001'} (step 1)".replace(" ", "") in flat
    assert not any(path.exists() for path in leftovers)
    assert (run / "final").is_dir() and (ckpts / "step-00000002.damaged").is_dir()
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_full_disk_during_a_checkpoint_save_is_exit_2_and_the_run_resumes(tmp_path):
    """Issue 25, case 9: safetensors' and torch.save's own error types for a full disk were a traceback (exit 1)."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"   # the first checkpoint's weights are larger
            "from longrl.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    run = tmp_path / "run"
    argv = ["rl", "--config", SMOKE, "--out", str(run), "train.steps=2", "data.train.0.synth.n=2", "rollout.group_size=2",
            "rollout.max_new_tokens=4", "reward.overlong.buffer=2", "run.save_every=1"]
    env = {**os.environ, "LONGRL_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"longrl rl: error: cannot write {run}/checkpoints/step-00000001: File too large" in proc.stderr
    assert "Traceback" not in proc.stderr and not list((run / "checkpoints").iterdir())   # no half checkpoint
    assert main(argv) == 0                                            # room again: the run starts over and ends
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
