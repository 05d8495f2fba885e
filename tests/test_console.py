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
