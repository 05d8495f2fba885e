"""tracking.py: run directories, metrics.jsonl exactly once per step on resume, timers, progress line."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longrl.config import load_config
from longrl.errors import ConfigError
from longrl.tracking import (
    LOCK,
    MetricsLog,
    RunDirBusy,
    StepProgress,
    Timers,
    check_run_dir,
    dump_samples,
    format_progress,
    holds_run_dir,
    prepare_run_dir,
    read_metrics,
    release_run_dir,
)


def test_prepare_run_dir_writes_config_and_refuses_a_changed_one(tmp_path):
    cfg = load_config(None, ["run.seed=3"])
    out = prepare_run_dir(tmp_path / "run", cfg)
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["seed"] == 3
    assert prepare_run_dir(out, cfg) == out                               # same config: resume
    (out / "metrics.jsonl").write_text('{"step": 1}\n')                  # the run made progress
    with pytest.raises(ConfigError, match=r"different config \(changed: algo.kl_coef, run.seed\)"):
        prepare_run_dir(out, load_config(None, ["run.seed=4", "algo.kl_coef=0.1"]))


def test_a_run_that_made_no_progress_takes_the_new_config(tmp_path):
    """Issue 25, case 8: a start that failed at its first step left config.yaml, and the corrected command was refused."""
    out = prepare_run_dir(tmp_path / "run", load_config(None, ["rollout.group_size=512"]))
    for name in ("metrics.jsonl", "item_scores.jsonl", "log.txt"):
        (out / name).write_text("" if name != "log.txt" else "12:00:00 $ longrl rl ...\n")
    (out / "checkpoints").mkdir()
    prepare_run_dir(out, load_config(None, ["rollout.group_size=8"]))
    assert yaml.safe_load((out / "config.yaml").read_text())["rollout"]["group_size"] == 8
    (out / "checkpoints" / "step-00000001").mkdir()
    (out / "checkpoints" / "step-00000001" / "state.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"different config \(changed: rollout.group_size\)"):
        prepare_run_dir(out, load_config(None, ["rollout.group_size=4"]))


def test_prepare_run_dir_accepts_settings_added_by_a_newer_version(tmp_path):
    cfg = load_config(None)
    out = prepare_run_dir(tmp_path, cfg)
    old = yaml.safe_load((out / "config.yaml").read_text())
    del old["algo"]["track_kl"]                                           # as written by an older longrl
    (out / "config.yaml").write_text(yaml.safe_dump(old))
    prepare_run_dir(out, cfg)
    assert "track_kl" in yaml.safe_load((out / "config.yaml").read_text())["algo"]


def test_prepare_run_dir_clears_what_a_killed_run_left(tmp_path):
    cfg = load_config(None)
    out = prepare_run_dir(tmp_path / "run", cfg)
    leftovers = [out / "checkpoints" / ".step-00000004.x1.tmp", out / ".final.x2.tmp", out / "samples" / ".step-00000002.jsonl.x3.tmp"]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.mkdir() if "jsonl" not in path.name else path.write_text("{")
    (out / "checkpoints" / "step-00000002").mkdir()
    prepare_run_dir(out, cfg)
    assert not any(path.exists() for path in leftovers)
    assert (out / "checkpoints" / "step-00000002").is_dir()


def test_prepare_run_dir_refuses_an_unreadable_recorded_config(tmp_path):
    out = prepare_run_dir(tmp_path, load_config(None))
    (out / "config.yaml").write_bytes(b"run: {seed: \xff}\n")
    with pytest.raises(ConfigError, match=r"config.yaml: the recorded config of this run is unreadable"):
        prepare_run_dir(out, load_config(None))


def test_read_metrics_skips_lines_that_are_not_utf8_or_too_deep(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n\xff\xfe\n' + b"[" * 5000 + b"]" * 5000 + b'\n{"step": 2}\n{"step": 3}\n{"step": 4')
    assert read_metrics(path) == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_metrics_log_keeps_each_step_once_across_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.log({"step": step, "loss": float(step), "nan": math.nan})
    log.close()
    with open(path, "a") as fh:
        fh.write('{"step": 4, "lo')                                       # torn by a kill
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert read_metrics(path)[0]["nan"] is None                           # NaN is written as null

    log = MetricsLog(path, resume_step=2)                                 # checkpoint after step 2
    log.log({"step": 3, "loss": 30.0})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    MetricsLog(path).close()                                              # no checkpoint at all: start over
    assert read_metrics(path) == []


def test_timers_accumulate_and_reset():
    timers = Timers()
    for _ in range(2):
        with timers.time("rollout"):
            pass
    out = timers.pop()
    assert list(out) == ["time/rollout"] and out["time/rollout"] >= 0
    assert timers.pop() == {}


def test_dump_samples_writes_one_file_per_step(tmp_path):
    path = dump_samples(tmp_path, 12, [{"id": "a", "response": "ünïcode"}])
    assert path == tmp_path / "samples" / "step-00000012.jsonl"
    assert json.loads(path.read_text(encoding="utf-8")) == {"id": "a", "response": "ünïcode"}


def test_format_progress_shows_present_finite_fields():
    row = {"reward/mean": 0.25, "accuracy": 0.5, "entropy": None, "kl": math.nan, "response_len/mean": 41.6}
    assert format_progress(row) == "reward 0.250  acc 0.50  len 42"


ROW = {"reward/mean": 0.938, "accuracy": 0.94, "entropy": 0.02, "kl": 1e-5, "response_len/mean": 3400.2,
       "filtered_groups_frac": 0.75, "loss/total": 1e-5, "tokens_per_s": 16122, "time/step": 123.4}


def test_format_progress_drops_the_least_useful_fields_to_fit_a_width():
    full = format_progress(ROW)
    assert len(full) > 80 and format_progress(ROW, width=200) == full
    assert format_progress(ROW, width=80) == "reward 0.938  acc 0.94  len 3400  filtered 0.75  tok/s 16122  s/step 123.4"
    assert format_progress(ROW, width=10) == "tok/s 16122  s/step 123.4"              # never dropped


def test_rich_progress_on_an_80_column_terminal_keeps_tok_s_and_s_step(monkeypatch):
    import io
    import re

    from rich.console import Console

    import longrl.tracking

    monkeypatch.delenv("LONGRL_NO_PROGRESS", raising=False)
    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(longrl.tracking, "stderr_console", lambda: console)
    with StepProgress(total=1000, mode="rich", description="phase1") as progress:
        progress.update(10, ROW)
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).replace("\r", "\n").splitlines()
             if line.strip()]
    assert all(len(line) <= 80 for line in lines)
    assert lines[-2].startswith("phase1") and "10/1000" in lines[-2]              # the bar, then the metrics below it
    assert lines[-1] == "reward 0.938  acc 0.94  len 3400  filtered 0.75  tok/s 16122  s/step 123.4"


def test_step_progress_plain_prints_every_n_steps(capsys, monkeypatch):
    monkeypatch.delenv("LONGRL_NO_PROGRESS", raising=False)
    with StepProgress(total=4, start=0, mode="plain", description="rl p1", every=2) as progress:
        for step in range(1, 5):
            progress.update(step, {"reward/mean": step / 10})
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["rl p1 step 2/4  reward 0.200", "rl p1 step 4/4  reward 0.400"]


def test_step_progress_is_silent_when_disabled(capsys, monkeypatch):
    monkeypatch.setenv("LONGRL_NO_PROGRESS", "1")
    with StepProgress(total=2, mode="plain") as progress:
        progress.update(1, {"reward/mean": 1.0})
    monkeypatch.delenv("LONGRL_NO_PROGRESS")
    with StepProgress(total=2, mode="none") as progress:
        progress.update(1, {"reward/mean": 1.0})
    assert capsys.readouterr().err == ""
    with StepProgress(total=2, mode="auto") as progress:                 # not a terminal: plain lines
        progress.update(1, {"reward/mean": 1.0})
    assert capsys.readouterr().err == "train step 1/2  reward 1.000\n"


def test_metrics_log_names_its_file_when_the_disk_is_full(tmp_path):
    """RLIMIT_FSIZE fails appends the way a full disk does; the error names metrics.jsonl (an fd write has no name)."""
    import subprocess
    import sys

    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
            "from longrl.errors import OutputError\n"
            "from longrl.tracking import MetricsLog\n"
            "log = MetricsLog(sys.argv[1])\n"
            "try:\n"
            "    for step in range(1000):\n"
            "        log.log({'step': step, 'reward/mean': 0.5})\n"
            "except OutputError as exc:\n"
            "    print(exc)\n")
    path = tmp_path / "metrics.jsonl"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"cannot write {path}: File too large"


HOLDER = """
import sys, time
from longrl.config import load_config
from longrl.tracking import prepare_run_dir
prepare_run_dir(sys.argv[1], load_config(None, sys.argv[2:]))
print("held", flush=True)
time.sleep(600)
"""
ROOT = Path(__file__).resolve().parents[1]


def hold_in_another_process(out: Path, *overrides: str) -> subprocess.Popen:
    """A process that starts a run in `out` (prepare_run_dir) and stays, as a long run does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), *overrides], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_second_command_on_a_running_directory_exits_2_at_once_and_touches_nothing(tmp_path, capsys):
    """Issue 25, case 7: a second identical command on one --out rewrote the running one's metrics."""
    from longrl.cli import main

    out = tmp_path / "run"
    smoke = str(ROOT / "configs" / "smoke.yaml")
    holder = hold_in_another_process(out)
    try:
        (out / "metrics.jsonl").write_text('{"step": 1}\n')
        before = files_of(out)
        record = json.loads((out / LOCK).read_text())
        assert record["pid"] == holder.pid and record["command"].startswith("longrl")
        with pytest.raises(RunDirBusy, match=rf"run is in use by another longrl process \(pid {holder.pid} on "):
            check_run_dir(out, load_config(None))
        assert main(["rl", "--config", smoke, "--out", str(out), "train.steps=1"]) == 2
        err = capsys.readouterr().err
        assert f"longrl rl: error: {out} is in use by another longrl process (pid {holder.pid}" in err
        assert "or use another --out" in err and len(err.strip().splitlines()) == 1
        assert files_of(out) == before                                      # not a byte, not a timestamp
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder was killed: its lock died with it, and the next command takes the directory over
    assert check_run_dir(out, load_config(None)) == out
    prepare_run_dir(out, load_config(None))
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    release_run_dir(out)


def test_a_stage_gives_its_lock_up_when_it_returns_and_nested_stages_do_not_deadlock(tmp_path):
    cfg = load_config(None)
    parent = tmp_path / "pipeline"

    @holds_run_dir
    def stage(folder):
        prepare_run_dir(folder, cfg)
        prepare_run_dir(folder, cfg)                     # this process again: no deadlock
        return folder

    @holds_run_dir
    def pipeline():
        prepare_run_dir(parent, cfg)
        stage(parent / "phase1")                         # a stage inside the pipeline's directory
        stage(parent)                                    # even the same directory
        assert lock_elsewhere(parent) == 3 and lock_elsewhere(parent / "phase1") == 0  # the pipeline's still held
        return stage(parent / "phase2")

    pipeline()
    assert [lock_elsewhere(f) for f in (parent, parent / "phase1", parent / "phase2")] == [0, 0, 0]  # all given up


def lock_elsewhere(folder: Path) -> int:
    """Exit status of another process that tries to take `folder`: 0 taken, 3 busy."""
    code = ("import sys\nfrom longrl.tracking import RunDirBusy, lock_run_dir\n"
            "try:\n    lock_run_dir(sys.argv[1])\nexcept RunDirBusy:\n    sys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", code, str(folder)], env=env, timeout=120).returncode
