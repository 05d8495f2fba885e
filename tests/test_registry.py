import pytest

from longrl.registry import Registry


def test_register_get_and_errors():
    reg = Registry("widget")

    @reg.register("b")
    def b():
        return "b"

    reg.add("a", 1)
    assert reg.get("b") is b and reg.get("a") == 1
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(KeyError, match="unknown widget 'c'; known: a, b"):
        reg.get("c")


def test_module_attribute_names_are_unknown_names_never_imports():
    """"module:attr" resolves like any unregistered name: KeyError, and the module is not imported."""
    import sys

    reg = Registry("function")
    reg.add("join", 1)
    for name in ["os.path:join", "this:nothing", "antigravity:fly", ":", "join:"]:
        assert name not in reg
        with pytest.raises(KeyError, match="unknown function"):
            reg.get(name)
    assert "this" not in sys.modules and "antigravity" not in sys.modules
    with pytest.raises(KeyError):
        reg.get(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty strings"):
        reg.add("", 2)


def test_declared_names_reads_decorators_without_importing(tmp_path, monkeypatch):
    import sys

    from longrl.registry import declared_names

    (tmp_path / "fake_registering_mod.py").write_text(
        "import no_such_heavy_dependency\n"                     # importing the module would fail
        "@WIDGETS.register('b')\ndef b(): pass\n"
        "@WIDGETS.register('a')\nclass A: pass\n"
        "@OTHER.register('x')\ndef x(): pass\n"
        "@WIDGETS.register(name_from_variable)\ndef y(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert declared_names("fake_registering_mod", "WIDGETS") == ["a", "b"]
    assert "fake_registering_mod" not in sys.modules
    with pytest.raises(KeyError, match="cannot find module"):
        declared_names("no_such_module_xyz", "WIDGETS")
