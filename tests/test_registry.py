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
