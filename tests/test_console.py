"""console.py: plain progress off a terminal, the run's log.txt, no hard wrapping, third-party bars."""

from __future__ import annotations

import pytest

from longrl import console
from longrl.console import command_log, info, progress_bar, progress_kind, start_run_log


@pytest.fixture()
def progress_on(monkeypatch):
    monkeypatch.delenv("LONGRL_NO_PROGRESS", raising=False)


def test_progress_kind(progress_on, monkeypatch):
    # pytest's stderr is not a terminal: auto means plain lines (nohup, Slurm), never silence
    assert [progress_kind(m) for m in ("auto", "rich", "plain", "none")] == ["plain", "rich", "plain", "none"]
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress_kind("auto") == "rich"
    monkeypatch.setenv("LONGRL_NO_PROGRESS", "1")
    assert progress_kind("rich") == "none"


def test_progress_bar_prints_about_ten_plain_lines(progress_on, capsys):
    with progress_bar(100, "eval") as advance:
        for _ in range(100):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("eval: 10/100 (10%), ") and lines[-1].startswith("eval: 100/100 (100%)")


def test_log_holds_the_lines_printed_before_and_after_the_run_starts(tmp_path, capsys):
    long_message = "a message of 300 characters " + "x" * 272
    with command_log("$ longrl rl --out run"):
        info("before the run started")
        assert not (tmp_path / "log.txt").exists()
        assert start_run_log(tmp_path) == tmp_path / "log.txt"
        assert start_run_log(tmp_path / "stage") is None       # the command's first run directory only
        info(long_message)
        with progress_bar(2, "distill", mode="none") as advance:   # silent on the console, still in the log
            advance(2)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [line[20:] for line in lines] == ["$ longrl rl --out run", "before the run started", long_message,
                                             "distill: 2/2 (100%), 0 s"]
    assert long_message in capsys.readouterr().err.splitlines()      # one line on stderr too: never hard-wrapped
    info("after the command")                                         # no command log active: nothing written
    assert len((tmp_path / "log.txt").read_text().splitlines()) == 4


def test_a_command_whose_run_never_starts_writes_no_log(tmp_path):
    with command_log("$ longrl rl"):
        info("failing before the run starts")
    assert list(tmp_path.iterdir()) == []


def test_transformers_bars_follow_run_progress(tiny_model_dir, monkeypatch, progress_on):
    from transformers.utils import logging as hf_logging

    from longrl.config.model import ModelConfig
    from longrl.models.loading import load_tokenizer

    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    with command_log("$ longrl sft"):
        console.set_progress_mode("auto")                      # a terminal: transformers may draw its bars
        load_tokenizer(ModelConfig(path=str(tiny_model_dir)))
        assert hf_logging.is_progress_bar_enabled()
        console.set_progress_mode("plain")                     # lines only: no carriage-return bars
        load_tokenizer(ModelConfig(path=str(tiny_model_dir)))
        assert not hf_logging.is_progress_bar_enabled()
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)   # auto off a terminal (the default mode)
    load_tokenizer(ModelConfig(path=str(tiny_model_dir)))
    assert not hf_logging.is_progress_bar_enabled()


def test_tables_off_a_terminal_keep_every_cell_whole(tmp_path, capsys):
    # 131,072-token documents make 6-digit figures in 9 columns: wider than 80, never cut to "1163…"
    row = ["multihop", 3, "context_words", *[116394 + i for i in range(6)]]
    with command_log("$ longrl data stats big.jsonl"):
        start_run_log(tmp_path)
        console.print_table("big.jsonl: 3 samples", ["task", "count", "length", "p0", "p10", "p50", "p90", "p99", "max"],
                            [row])
    printed = capsys.readouterr().out
    logged = (tmp_path / "log.txt").read_text()
    for text in (printed, logged):
        assert "…" not in text
        assert all(str(cell) in text for cell in row)
        assert sum("116394" in line for line in text.splitlines()) == 1     # one line per row: nothing folded


def sigterm_self() -> None:
    """SIGTERM to this process, and a moment for Python to run its handler (in this, the main thread)."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)


def test_sigterm_outside_a_training_loop_stops_the_command_at_once_and_the_handler_is_put_back(tmp_path, capsys):
    import signal

    from longrl.console import Terminated, sigterm_stops_the_command

    before = signal.getsignal(signal.SIGTERM)
    with command_log("$ longrl eval"), pytest.raises(Terminated, match=r"^stopped by SIGTERM; rerun the same command"):
        with sigterm_stops_the_command():
            start_run_log(tmp_path)
            sigterm_self()
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_in_a_training_loop_waits_for_the_checkpointed_end_of_the_step(tmp_path, capfd):
    from longrl.console import Terminated, sigterm_stops_the_command, step_boundaries, stop_at_step_end, stop_requested

    with command_log("$ longrl rl"), sigterm_stops_the_command(), step_boundaries():
        start_run_log(tmp_path)
        assert not stop_requested()
        sigterm_self()                                          # mid-step: nothing stops yet
        stop_at_step_end("rl step 3/8")                         # the loop has not seen it at its checkpoint: goes on
        assert stop_requested()                                 # step 4 sees it where it decides to checkpoint ...
        with pytest.raises(Terminated, match=r"^stopped by SIGTERM after rl step 4/8, its checkpoint saved; rerun"):
            stop_at_step_end("rl step 4/8")                     # ... and stops after the checkpoint
        assert not stop_requested()
    log = (tmp_path / "log.txt").read_text()
    assert "SIGTERM: stopping at the end of this step, after its checkpoint (at most 20 s" in log
    assert "SIGTERM: stopping at the end of this step" in capfd.readouterr().err


def test_a_step_that_outlasts_the_grace_period_or_a_second_sigterm_stops_at_once(monkeypatch):
    import time

    from longrl.console import Terminated, sigterm_stops_the_command, step_boundaries

    monkeypatch.setenv("LONGRL_STOP_GRACE_S", "0.2")
    began = time.perf_counter()
    with pytest.raises(Terminated, match=r"^stopped by SIGTERM: the step did not end within 0.2 s; rerun"):
        with sigterm_stops_the_command(), step_boundaries():
            sigterm_self()
            time.sleep(30)                                      # a long step
    assert time.perf_counter() - began < 5
    monkeypatch.setenv("LONGRL_STOP_GRACE_S", "30")
    with pytest.raises(Terminated, match=r"^stopped by SIGTERM; rerun"):
        with sigterm_stops_the_command(), step_boundaries():
            sigterm_self()
            sigterm_self()                                      # the second one stops now


def test_several_torchrun_ranks_stop_at_once(monkeypatch):
    from longrl.console import Terminated, sigterm_stops_the_command, step_boundaries

    monkeypatch.setenv("WORLD_SIZE", "2")                   # ranks would not agree on the step to stop after
    with pytest.raises(Terminated, match=r"^stopped by SIGTERM; rerun"):
        with sigterm_stops_the_command(), step_boundaries():
            sigterm_self()
