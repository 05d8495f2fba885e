"""`longrl data synth|stats` end to end through main()."""

import json

from longrl.cli import main


def test_synth_twice_is_byte_identical(tmp_path):
    args = ["data", "synth", "--tasks", "docmath,choice", "--n", "4", "--length", "256", "--seed", "9"]
    assert main(args + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["docmath", "choice", "docmath", "choice"]


def test_synth_rejects_unknown_family(tmp_path, capsys):
    assert main(["data", "synth", "--tasks", "sudoku", "--n", "2", "--length", "100", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "unknown family 'sudoku'" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_stats_with_and_without_tokenizer(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    main(["data", "synth", "--n", "6", "--length", "300", "--out", str(path)])
    capsys.readouterr()
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "context_words" in out and "multihop" in out and "docmath" in out
    assert main(["data", "stats", str(path), "--tokenizer", "random"]) == 0
    assert "prompt_tokens" in capsys.readouterr().out


def test_stats_bad_file_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n')
    assert main(["data", "stats", str(path)]) == 2
    assert "line 1, field 'task': missing" in capsys.readouterr().err
