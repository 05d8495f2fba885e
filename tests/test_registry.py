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


def test_import_spec():
    reg = Registry("function")
    import os.path

    assert reg.get("os.path:join") is os.path.join
    with pytest.raises(KeyError, match="cannot import module"):
        reg.get("no_such_module_xyz:f")
    with pytest.raises(KeyError, match="has no attribute"):
        reg.get("os.path:no_such_attr")
