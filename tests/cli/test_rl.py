"""`longrl rl` as a scheduler runs it: plain progress lines, DIR/log.txt, and a run directory that a
failed start or a refused rerun leaves as it was."""

from __future__ import annotations

from pathlib import Path

from longrl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_start_that_fails_writes_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["rl", "--config", SMOKE, "--out", str(out), "model.path=/no/such/model"]) == 2
    assert "model.path='/no/such/model': no such local folder" in capsys.readouterr().err
    assert not out.exists()                      # no config.yaml, no log.txt: the corrected rerun is not refused
    assert main(["sft", "--config", SMOKE, "--out", str(out), "model.path=runs/missing/final",
                 "sft.data=[{path: nowhere.jsonl}]"]) == 2
    assert not out.exists()


def test_log_file_plain_progress_and_a_refused_rerun(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LONGRL_NO_PROGRESS", raising=False)    # run.progress auto, stderr not a terminal
    out = tmp_path / "run"
    argv = ["rl", "--config", SMOKE, "--out", str(out), "train.steps=2", "data.train.0.synth.n=3", "run.save_every=1",
            "run.progress=auto"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "rl step 1/2  reward" in err and "rl step 2/2  reward" in err      # plain lines, not silence
    log = (out / "log.txt").read_text().splitlines()
    assert log[0].endswith(f"$ longrl rl --config {SMOKE} --out {out} train.steps=2 data.train.0.synth.n=3 "
                           "run.save_every=1 run.progress=auto")
    assert any("rl step 2/2  reward" in line for line in log) and any("final policy:" in line for line in log)
    assert all(line[:4].isdigit() for line in log)                           # every line time-stamped
    before = snapshot(out)
    assert main(argv[:-1] + ["run.progress=auto", "run.seed=5"]) == 2         # a different config: refused
    assert "different config (changed: run.seed)" in capsys.readouterr().err
    assert snapshot(out) == before                                           # ... and nothing changed
    assert main(argv) == 0                                                   # the same command: already finished
    assert snapshot(out) == before
