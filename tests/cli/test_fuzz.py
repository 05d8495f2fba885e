"""Fuzz: generated malformed rows and configs go through the readers, the validators and `main`;
whatever they hold, the answer is a result or a UserError (exit 2), never a traceback.

A seeded generator (no extra dependency) mutates good inputs the way damaged files and careless
edits do: fields dropped or retyped, numbers NaN, infinite or thousands of digits long, containers
nested thousands deep, strings with lone surrogates, bytes flipped, truncated, or not UTF-8,
YAML with aliases, tags and bad indentation.
"""

from __future__ import annotations

import json
import random

import pytest

from longrl.cli import main
from longrl.config import load_config
from longrl.data.io import read_samples
from longrl.errors import UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.report import write_report
from longrl.tracking import read_metrics

SAMPLE = {"id": "s1", "task": "qa", "context": "The sky is blue.", "question": "What colour is the sky?",
          "answers": ["blue"], "choices": None, "meta": {"trace": "<think>blue</think>Therefore, the answer is blue."}}
SCORE_ROW = {"id": "r1", "task": "docmath", "question": "How much?", "response": "<think>4</think>The answer is 4.",
             "answers": ["4"], "response_tokens": 12, "max_response_tokens": 64}
FRAMES_ROW = {"id": "f1", "Prompt": "Who?", "Answer": "Rilu", "wiki_items": [{"title": "A", "text": "Rilu did it."}]}
CONFIG = {"run": {"seed": 1, "torch_threads": 1}, "rollout": {"group_size": 4, "temperature": 0.7},
          "data": {"train": [{"synth": {"tasks": ["docmath"], "n": 4, "length": 256}}]},
          "curriculum": {"phases": [{"name": "p1", "max_input_tokens": 512, "max_response_tokens": 32,
                                     "overrides": {"algo.clip_eps_high": 0.3}}]}}


def odd_value(rng: random.Random):
    """A value a careless or hostile file might hold where anything else was expected."""
    depth = rng.choice([3, 70, 3000])
    return rng.choice([
        None, True, -1, 0, 2**63, -(2**70), 10**30, 1e308, float("nan"), float("inf"), -0.0, "", " ",
        "x" * rng.choice([1, 5000]), "\ud800lone", "\x00\x1b[31m", "١٢٣", [], {}, [None], {"a": {"b": []}},
        [[1, [2, [3]]]], "*alias", "!!python/object/os.system", "${HOME}", "NaN", "1e99999",
        json.loads("[" * depth + "]" * depth) if depth < 900 else "deep",
    ])


def mutate_object(rng: random.Random, obj: dict) -> dict:
    out = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        keys = list(out) or ["x"]
        if kind < 0.3:
            out.pop(rng.choice(keys), None)
        elif kind < 0.8:
            out[rng.choice(keys)] = odd_value(rng)
        else:
            out[rng.choice(["extra", "ID", "", "answers\x00", "meta.trace"])] = odd_value(rng)
    return out


def encode_row(rng: random.Random, obj) -> bytes:
    """One JSON line, sometimes damaged at the byte level, sometimes nested far past any bound."""
    try:
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    except (ValueError, RecursionError):
        text = "{}"
    data = text.encode("utf-8", "surrogatepass")
    kind = rng.random()
    if kind < 0.1:
        data = data[: rng.randint(0, len(data))]
    elif kind < 0.2:
        pos = rng.randint(0, len(data))
        data = data[:pos] + bytes([rng.choice([0xFF, 0xC3, 0x80, 0x00, 0x0A, 0x22, 0x5C])]) + data[pos:]
    elif kind < 0.25:
        data = b"[" * 50_000 + b"]" * 50_000
    elif kind < 0.3:
        data = b'{"id": "n", "task": "qa", "meta": ' + b"{\"a\": " * 2000 + b"1" + b"}" * 2000 + b"}"
    elif kind < 0.33:
        data = b"1" + b"0" * 6000
    return data


def rows_file(rng: random.Random, path, good: dict, n: int = 3) -> None:
    lines = [encode_row(rng, mutate_object(rng, good) if rng.random() < 0.8 else good) for _ in range(n)]
    path.write_bytes(b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b""))


def mutate_config(rng: random.Random) -> str:
    """YAML text of a config, damaged in the value, the structure or the bytes."""
    cfg = json.loads(json.dumps(CONFIG))
    paths = [("run", "seed"), ("run", "torch_threads"), ("rollout", "group_size"), ("rollout", "temperature"),
             ("optim", "lr"), ("optim", "betas"), ("model", "rope_scaling"), ("eval", "pass_k"), ("data", "train"),
             ("curriculum", "phases"), ("algo", "nope"), ("nope", "x"), ("model", "path"), ("sft", "epochs")]
    for _ in range(rng.randint(1, 3)):
        section, key = rng.choice(paths)
        node = cfg.setdefault(section, {})
        if isinstance(node, dict):
            node[key] = odd_value(rng)
    try:
        text = json.dumps(cfg, allow_nan=True).replace("NaN", ".nan").replace("-Infinity", "-.inf").replace("Infinity", ".inf")
    except (ValueError, RecursionError):
        text = "{}"
    kind = rng.random()
    if kind < 0.1:
        text = text[: rng.randint(0, len(text))]
    elif kind < 0.2:
        text = "base: &a [" + ", ".join(["x"] * 9) + "]\n" + "".join(
            f"l{i}: &l{i} [{', '.join(['*' + ('a' if i == 0 else f'l{i - 1}')] * 9)}]\n" for i in range(7))
    elif kind < 0.25:
        text = "run: &r {seed: 1, more: *r}\n"
    elif kind < 0.3:
        text = "run:\n\tseed: 1\n"
    elif kind < 0.35:
        text = "run: !!python/object/apply:os.system ['echo pwned']\n"
    elif kind < 0.4:
        text = "run: {seed: " + "[" * 300 + "]" * 300 + "}\n"
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        pos = rng.randint(0, len(data))
        data = data[:pos] + b"\xff\xfe" + data[pos:]
    return data


def call(argv: list[str]) -> int:
    """`main(argv)`; an exception escaping it is the traceback a user would see."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors: exit 2 with a usage line, not a traceback
        return int(exc.code)


@pytest.mark.parametrize("seed", range(4))
def test_malformed_sample_and_score_rows_never_escape_the_cli(tmp_path, seed, capsys):
    rng = random.Random(seed)
    codes = []
    for i in range(30):
        samples, scores = tmp_path / f"s{i}.jsonl", tmp_path / f"r{i}.jsonl"
        rows_file(rng, samples, SAMPLE)
        rows_file(rng, scores, SCORE_ROW)
        codes.append(call(["data", "stats", str(samples), *(["--skip-bad"] if i % 3 == 0 else [])]))
        codes.append(call(["score", "--input", str(scores), "--output", str(tmp_path / f"o{i}.jsonl")]))
    err = capsys.readouterr().err
    assert set(codes) <= {0, 2} and 2 in codes
    assert "Traceback" not in err
    assert err.count("error: ") == codes.count(2)  # every failure says what and where, on its line


@pytest.mark.parametrize("seed", range(4))
def test_malformed_configs_never_escape_validate(tmp_path, seed, capsys):
    rng = random.Random(100 + seed)
    codes = []
    for i in range(40):
        path = tmp_path / f"c{i}.yaml"
        path.write_bytes(mutate_config(rng))
        key = rng.choice(["run.seed", "rollout.temperature", "optim.betas", "model.rope_scaling", "eval.pass_k", "x"])
        value = rng.choice(["1e400", ".nan", "99999999999999999999", "[1, .inf]", "&a [*a]", "{a: [[[[1]]]]}", "", "-3"])
        codes.append(call(["validate", "--config", str(path), *([f"{key}={value}"] if i % 2 else [])]))
    assert set(codes) <= {0, 2} and 2 in codes
    assert "Traceback" not in capsys.readouterr().err


def test_readers_raise_only_user_errors(tmp_path):
    """The library readers behind the commands, fed the same generated damage, directly."""
    rng = random.Random(7)
    outcomes = {"ok": 0, "refused": 0}
    frames = BENCHMARKS.get("frames")
    for i in range(40):
        rows_file(rng, tmp_path / f"s{i}.jsonl", SAMPLE)
        (tmp_path / "bench").mkdir(exist_ok=True)
        rows_file(rng, tmp_path / "bench" / "frames.jsonl", FRAMES_ROW, n=2)
        (tmp_path / f"c{i}.yaml").write_bytes(mutate_config(rng))
        run = tmp_path / f"run{i}"
        (run / "eval" / "m").mkdir(parents=True)
        rows_file(rng, run / "metrics.jsonl", {"step": 1, "reward/mean": 0.5, "phase": "p1"})
        (run / "eval" / "m" / "summary.json").write_bytes(encode_row(rng, mutate_object(
            rng, {"benchmarks": {"frames": {"score": 50.0, "n": 2}}, "average": 50.0})))
        for read in (lambda: read_samples(tmp_path / f"s{i}.jsonl", skip_bad=i % 2 == 0),
                     lambda: frames.load(tmp_path / "bench"),
                     lambda: load_config(tmp_path / f"c{i}.yaml"),
                     lambda: read_metrics(run / "metrics.jsonl"),
                     lambda: write_report(run) if i % 4 == 0 else None):  # plotting is slow; a quarter suffices
            try:
                read()
                outcomes["ok"] += 1
            except UserError:
                outcomes["refused"] += 1
    assert outcomes["ok"] > 30 and outcomes["refused"] > 20, outcomes
