"""Shipping master data and the carrier choice activity against a real database."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from activities.db import make_engine, migrate
from activities.masterdata import load_master_data
from activities.shipping import ShippingActivities, ShippingConfigError, load_shipping_config
from models.activities import ChooseCarrierInput
from models.carriers import ShipmentNeeds
from models.tables import Product, Shipment
from settings import PROJECT_DIR


def test_demo_shipping_config_loads() -> None:
    config = load_shipping_config(PROJECT_DIR / "demo" / "network.toml")
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
    path = tmp_path / "network.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ShippingConfigError) as caught:
        load_shipping_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_duplicate_carrier_codes_are_refused(tmp_path: Path) -> None:
    demo = (PROJECT_DIR / "demo" / "network.toml").read_text(encoding="utf-8")
    first = demo.index("[[carriers]]")
    dhl = demo[first:demo.index("[[carriers]]", first + 1)]
    path = tmp_path / "network.toml"
    path.write_text(demo + "\n" + dhl, encoding="utf-8")
    with pytest.raises(ShippingConfigError, match="duplicate code DHL"):
        load_shipping_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ShippingConfigError, match="cannot read"):
        load_shipping_config(tmp_path / "nope.toml")


def _shipment_of(engine: Engine, **flags: bool) -> str:
    """A product with ``flags`` and a one-line shipment of it; returns the shipment id."""
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    shipment_id = f"o-{uuid.uuid4().hex[:8]}-1"
    with Session(engine) as session:
        session.add(Product(sku=sku, name="Kartusche", weight_g=370, length_mm=110,
                            width_mm=110, height_mm=95, price=Decimal("6.90"), **flags))
        session.add(Shipment(shipment_id=shipment_id, order_id=shipment_id[:-2],
                             warehouse="MAIN",
                             lines=json.dumps([{"sku": sku, "quantity": 2}])))
        session.commit()
    return shipment_id


@pytest.mark.parametrize(("flags", "express", "chosen", "reason"), [
    ({}, False, "DHL", None),
    ({"hazardous": True}, False, None, "DHL: excluded, no hazardous goods"),
    ({"hazardous": True}, True, "GO", None),
    ({"age_check": True}, False, "DHL", "DPD: excluded, no age check"),
])
def test_catalog_flags_reach_the_carrier_matrix(engine: Engine, flags: dict[str, bool],
                                                express: bool, chosen: str | None,
                                                reason: str | None) -> None:
    shipping = ShippingActivities(engine, load_shipping_config(
        PROJECT_DIR / "demo" / "network.toml"))
    shipment_id = _shipment_of(engine, **flags)
    choice = shipping.choose_carrier(ChooseCarrierInput(
        order_id=shipment_id[:-2], shipment_id=shipment_id,
        needs=ShipmentNeeds(country="DE", express=express)))
    assert (choice.decision.chosen.carrier if choice.decision.chosen else None) == chosen
    assert choice.parcel.weight_g == 2 * 370 + 150 + 150  # items, box S, packaging
    if reason:
        assert reason in choice.explanation
    if chosen:
        assert choice.tracking_url and "{tracking_number}" in choice.tracking_url


def test_demo_gas_cartridge_is_hazardous(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    migrate(url)
    engine = make_engine(url)
    load_master_data(engine, PROJECT_DIR / "demo" / "masterdata.toml")
    with Session(engine) as session:
        gas = session.get(Product, "GAS-230")
        tent = session.get(Product, "TENT-2P")
    assert gas is not None and gas.hazardous and not gas.age_check
    assert tent is not None and not tent.hazardous
    engine.dispose()
