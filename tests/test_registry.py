"""The one registry type: duplicate policy, look-up, aliases, suggestions, listing."""

import pytest

from rmpsnn.errors import ConfigError, InputError
from rmpsnn.registry import Registry


def test_register_get_and_list():
    reg = Registry("widget")

    @reg.register("alpha", aliases=("a",), color="red")
    class Alpha:
        """The first widget.

        More text."""

    reg.register("beta", int, help="the second")
    assert reg.get("alpha") is Alpha and reg.get("ALPHA") is Alpha and reg.get("a") is Alpha
    assert reg.names() == ["alpha", "beta"] and list(reg) == ["alpha", "beta"] and len(reg) == 2
    assert reg.entry("alpha").meta == {"color": "red"} and reg.entry("alpha").help == "The first widget."
    assert "a" in reg and "gamma" not in reg and 3 not in reg
    assert reg.resolve("beta") is int and reg.resolve(float) is float
    assert reg.describe().splitlines() == ["alpha  The first widget.", "beta   the second"]


def test_duplicates_raise_unless_replaced_or_same_definition():
    reg = Registry("widget")
    reg.register("alpha", int)
    reg.register("alpha", int)  # the same object again (a module imported twice): no change
    with pytest.raises(InputError, match=r"widget 'alpha' is already registered .*replace=True"):
        reg.register("alpha", float)
    reg.register("alpha", float, replace=True)
    assert reg.get("alpha") is float
    reg.unregister("alpha")
    assert "alpha" not in reg


def test_unknown_name_suggests_and_lists():
    reg = Registry("neuron", error=ConfigError)
    reg.register("plif", int)
    reg.register("lif", float)
    with pytest.raises(
        ConfigError, match=r"unknown neuron 'plf'; did you mean 'plif'\? Valid names: plif, lif"
    ):
        reg.get("plf")
    with pytest.raises(ConfigError, match=r"unknown neuron 'xyz'; valid names: plif, lif$"):
        reg.get("xyz")
    with pytest.raises(ConfigError, match="chosen by name"):
        reg.get(3)
    with pytest.raises(InputError, match="non-empty name"):
        reg.register("", int)
