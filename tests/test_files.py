import pytest

from longrl.files import atomic_dir, atomic_open, atomic_write_json


def test_atomic_open_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_atomic_write_json(tmp_path):
    atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert (tmp_path / "a" / "b.json").read_text().strip() == '{\n  "x": 1\n}'


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text("2")
            raise RuntimeError("killed")
    assert (target / "f").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("3")
    assert (target / "f").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_output_in_the_way_is_an_output_error_naming_the_path(tmp_path):
    from longrl.errors import OutputError, UserError

    (tmp_path / "afile").write_text("keep")
    with pytest.raises(OutputError, match=r"cannot write .*afile/x.jsonl: .*afile is a file, not a directory"):
        atomic_write_json(tmp_path / "afile" / "x.jsonl", {})
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match=r"cannot write .*adir: it is a directory; name a file"):
        atomic_write_json(tmp_path / "adir", {})
    with pytest.raises(OutputError, match=r"cannot write .*afile: a file of that name exists"):
        with atomic_dir(tmp_path / "afile"):
            pass
    assert (tmp_path / "afile").read_text() == "keep"  # never replaced by the folder
    assert issubclass(OutputError, UserError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_a_full_disk_mid_write_leaves_nothing_half_written(tmp_path):
    """RLIMIT_FSIZE makes the write fail the way a full disk does (EFBIG), on any POSIX system, as any user."""
    import subprocess
    import sys

    target = tmp_path / "big.txt"
    target.write_text("previous")
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from longrl.errors import OutputError\n"
        "from longrl.files import atomic_write_text\n"
        "try:\n"
        "    atomic_write_text(sys.argv[1], 'x' * 1_000_000)\n"
        "except OutputError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True).stdout
    assert f"cannot write {target}: File too large" in out
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["big.txt"]


def test_read_only_location_is_an_output_error(tmp_path):
    import os

    from longrl.errors import OutputError

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the same OSError path is covered by the cases above")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*ro/x.json: Permission denied \(choose a location"):
            atomic_write_json(folder / "x.json", {})
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    import os

    old = os.umask(mask)
    try:
        atomic_write_json(tmp_path / "f.json", {})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").write_text("x")
            os.close(os.open(tmp / "weights", os.O_CREAT | os.O_WRONLY, 0o600))  # as safetensors writes them
            (tmp / "sub").mkdir(mode=0o700)
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "d").stat().st_mode & 0o777 == dir_mode
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "d").iterdir()} == {
        "inner": file_mode, "weights": file_mode, "sub": dir_mode}


def test_remove_leftovers_clears_only_what_killed_writes_leave(tmp_path):
    from longrl.files import remove_leftovers

    (tmp_path / ".step-00000004.k2j3.tmp").mkdir()          # a checkpoint save killed half-way
    (tmp_path / ".step-00000004.k2j3.tmp" / "model.safetensors").write_bytes(b"0" * 100)
    (tmp_path / ".final.abc.tmp").mkdir()
    (tmp_path / ".step-00000002.jsonl.x1.tmp").write_text("{")  # a sample dump killed mid-write
    (tmp_path / ".final.old").mkdir()
    for keep in ("step-00000002.jsonl", "notes.tmp", ".hidden", "config.yaml"):
        (tmp_path / keep).write_text("keep")
    removed = remove_leftovers(tmp_path)
    assert removed == [".final.abc.tmp", ".final.old", ".step-00000002.jsonl.x1.tmp", ".step-00000004.k2j3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "config.yaml", "notes.tmp", "step-00000002.jsonl"]
    assert remove_leftovers(tmp_path / "missing") == []


def test_write_failures_wrapped_by_libraries_are_recognised():
    """safetensors and torch.save report a full disk in their own error types (issue 25, case 9)."""
    import errno

    from longrl.files import write_failure

    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert write_failure(rust).errno == errno.ENOSPC and write_failure(rust).strerror == "No space left on device"
    torch_cut = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert "is the disk full?" in write_failure(torch_cut).strerror
    assert write_failure(OSError(errno.EFBIG, "File too large")).errno == errno.EFBIG
    assert write_failure(OSError(errno.ENOENT, "No such file")) is None            # the caller's own bug, not the disk
    assert write_failure(ValueError("bad value")) is None and write_failure(KeyboardInterrupt()) is None
