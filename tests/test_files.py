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
