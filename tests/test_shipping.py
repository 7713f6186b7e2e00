"""Shipping master data: the demo file loads; a broken file is refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.shipping import ShippingConfigError, load_shipping_config
from settings import PROJECT_DIR


def test_demo_shipping_config_loads() -> None:
    config = load_shipping_config(PROJECT_DIR / "demo" / "carriers.toml")
    assert {c.code for c in config.carriers} == {"DHL", "DPD", "GO"}
    assert [b.code for b in config.boxes] == ["S", "M", "L"]
    assert config.carrier("DHL") is not None and config.carrier("UPS") is None


@pytest.mark.parametrize(("text", "message"), [
    ("carriers = [", "not valid TOML"),
    ("packaging_weight_g = 1", "carriers: Field required"),
    ('[[carriers]]\ncode = "X"', "carriers.0.name"),
    ("packaging_weight_g = -1\n[[carriers]]", "packaging_weight_g"),
])
def test_broken_shipping_config_names_the_problem(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "carriers.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ShippingConfigError) as caught:
        load_shipping_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_duplicate_carrier_codes_are_refused(tmp_path: Path) -> None:
    demo = (PROJECT_DIR / "demo" / "carriers.toml").read_text(encoding="utf-8")
    first = demo.index("[[carriers]]")
    dhl = demo[first:demo.index("[[carriers]]", first + 1)]
    path = tmp_path / "carriers.toml"
    path.write_text(demo + "\n" + dhl, encoding="utf-8")
    with pytest.raises(ShippingConfigError, match="duplicate code DHL"):
        load_shipping_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ShippingConfigError, match="cannot read"):
        load_shipping_config(tmp_path / "nope.toml")
