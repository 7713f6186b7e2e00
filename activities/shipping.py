"""Carrier choice for a shipment: pack the parcel from the catalog, apply the carrier matrix.

The rules are pure (``models.carriers``); this activity only reads the shipment's lines
and the products' weights and dimensions, and the shipping master data that the worker
loaded at start (``ORDERS_SHIPPING_CONFIG``).
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.activities import CarrierChoice, ChooseCarrierInput
from models.carriers import ParcelItem, explain, pack_parcel, select_carrier
from models.network import ShippingConfig
from models.tables import Product, Shipment

__all__ = ["ShippingActivities", "ShippingConfigError", "load_shipping_config"]


class ShippingConfigError(ValueError):
    """The shipping config file is missing, not TOML, or not valid; says which entry."""


def load_shipping_config(path: Path) -> ShippingConfig:
    """Read and validate the shipping master data; prices are read as ``Decimal``."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file, parse_float=Decimal)
    except OSError as err:
        raise ShippingConfigError(f"{path}: cannot read the shipping config: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ShippingConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        return ShippingConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ShippingConfigError(f"{path}: {problems}") from err


class ShippingActivities:
    def __init__(self, engine: Engine, config: ShippingConfig) -> None:
        self.engine = engine
        self.config = config

    @activity.defn
    def choose_carrier(self, input: ChooseCarrierInput) -> CarrierChoice:
        """Pack the shipment's parcel and pick the cheapest carrier that may take it."""
        items = self._items(input.shipment_id)
        parcel = pack_parcel(items, boxes=self.config.boxes,
                             packaging_weight_g=self.config.packaging_weight_g)
        decision = select_carrier(parcel, input.needs, self.config.carriers)
        chosen = decision.chosen and self.config.carrier(decision.chosen.carrier)
        return CarrierChoice(decision=decision, parcel=parcel, explanation=explain(decision),
                             tracking_url=chosen.tracking_url if chosen else None)

    def _items(self, shipment_id: str) -> list[ParcelItem]:
        with Session(self.engine) as session:
            shipment = session.get(Shipment, shipment_id)
            if shipment is None:
                raise ApplicationError(f"shipment {shipment_id} not found",
                                       type="ShipmentMissing", non_retryable=True)
            lines = json.loads(shipment.lines)
            skus = [line["sku"] for line in lines]
            products = {p.sku: p for p in session.exec(
                select(Product).where(col(Product.sku).in_(skus)))}
        missing = sorted(set(skus) - set(products))
        if missing:
            raise ApplicationError(f"shipment {shipment_id}: products missing: {missing}",
                                   type="ProductMissing", non_retryable=True)
        return [ParcelItem(sku=line["sku"], quantity=line["quantity"],
                           weight_g=products[line["sku"]].weight_g,
                           length_mm=products[line["sku"]].length_mm,
                           width_mm=products[line["sku"]].width_mm,
                           height_mm=products[line["sku"]].height_mm,
                           hazardous=products[line["sku"]].hazardous,
                           age_check=products[line["sku"]].age_check)
                for line in lines]
