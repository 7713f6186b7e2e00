"""The shipping network as one config file (``ORDERS_SHIPPING_CONFIG``, ``demo/network.toml``):
the allocation rules per channel, packaging, boxes and carriers. Validated when the worker
starts (``activities.shipping.load_shipping_config``); the errors name entry and field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.allocation import AllocationConfig
from models.carriers import Box, Carrier

__all__ = ["ShippingConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShippingConfig(_Strict):
    """The shipping network (``ORDERS_SHIPPING_CONFIG``): allocation rules per channel,
    packaging, boxes and carriers."""

    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    packaging_weight_g: int = Field(default=0, ge=0)
    boxes: list[Box] = Field(default_factory=list)
    carriers: list[Carrier] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_codes(self) -> ShippingConfig:
        for kind, items in (("carriers", self.carriers), ("boxes", self.boxes)):
            codes = [item.code for item in items]
            if duplicates := sorted({code for code in codes if codes.count(code) > 1}):
                raise ValueError(f"{kind}: duplicate code {', '.join(duplicates)}")
        return self

    def carrier(self, code: str) -> Carrier | None:
        return next((c for c in self.carriers if c.code == code), None)
