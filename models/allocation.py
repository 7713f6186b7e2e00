"""Allocation rules: which warehouse ships which line of an order.

Pure and sandbox-safe, like the carrier matrix. The activities read the stock and the
warehouses from the database and call ``plan_allocation``; the same function decides the
first reservation of an order and the later filling of its backordered lines when stock
arrives.

The rule of a channel (``[allocation]`` in the network config, see ``demo/network.toml``):

* ``rule = "single-warehouse-first"``: warehouses by priority (then code); the first that can
  ship the whole order ships it, else the order is split across them in that order.
* ``rule = "nearest"``: warehouses in the destination country first, then by priority; the
  same whole-order-first, else split.
* ``split = false``: never split; the order waits until one warehouse can ship all of it.
* ``partial_delivery``: when lines are backordered, ship the available part at once
  (``true``) or let the whole order wait for the missing lines (``false``).

What no warehouse has is *short*: the caller books it as a soft (backorder) reservation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AllocationConfig", "AllocationPlan", "AllocationRule", "Pick", "WarehouseInfo",
           "plan_allocation", "warehouse_order"]

Rule = Literal["single-warehouse-first", "nearest"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllocationRule(_Strict):
    rule: Rule = "single-warehouse-first"
    split: bool = True  # false: one warehouse ships everything, or the order waits
    partial_delivery: bool = True  # backorders: ship what is there at once


class AllocationConfig(_Strict):
    """The rule per order channel; channels not listed use ``default``."""

    default: AllocationRule = Field(default_factory=AllocationRule)
    channels: dict[str, AllocationRule] = Field(default_factory=dict)

    def for_channel(self, channel: str) -> AllocationRule:
        return self.channels.get(channel, self.default)


class WarehouseInfo(_Strict):
    code: str
    country: str = "DE"
    priority: int = 0


class Pick(_Strict):
    warehouse: str
    sku: str
    quantity: int


class AllocationPlan(_Strict):
    picks: list[Pick] = Field(default_factory=list)
    short: dict[str, int] = Field(default_factory=dict)  # sku -> quantity nobody has
    explanation: str = ""


def warehouse_order(warehouses: Sequence[WarehouseInfo], rule: AllocationRule,
                    destination: str) -> list[str]:
    """The warehouse codes in the order the rule tries them."""
    if rule.rule == "nearest":
        ranked = sorted(warehouses, key=lambda w: (w.country != destination, w.priority, w.code))
    else:
        ranked = sorted(warehouses, key=lambda w: (w.priority, w.code))
    return [w.code for w in ranked]


def plan_allocation(wanted: Mapping[str, int], available: Mapping[tuple[str, str], int],
                    warehouses: Sequence[WarehouseInfo], rule: AllocationRule,
                    destination: str) -> AllocationPlan:
    """Plan ``wanted`` (sku -> quantity) against ``available`` ((warehouse, sku) -> free
    units). Deterministic: the same input always gives the same plan."""
    order = warehouse_order(warehouses, rule, destination)
    wanted = {sku: qty for sku, qty in sorted(wanted.items()) if qty > 0}
    if not wanted:
        return AllocationPlan(explanation="nothing to allocate")
    for code in order:
        if all(available.get((code, sku), 0) >= qty for sku, qty in wanted.items()):
            return AllocationPlan(
                picks=[Pick(warehouse=code, sku=sku, quantity=qty) for sku, qty in wanted.items()],
                explanation=f"{rule.rule}: warehouse {code} ships the whole order")
    if not rule.split:
        return AllocationPlan(short=dict(wanted),
                              explanation=f"{rule.rule}, no split: no single warehouse can ship "
                                          "the whole order")
    picks: list[Pick] = []
    remaining = dict(wanted)
    for code in order:
        for sku, qty in remaining.items():
            take = min(qty, max(available.get((code, sku), 0), 0))
            if take:
                picks.append(Pick(warehouse=code, sku=sku, quantity=take))
                remaining[sku] = qty - take
        remaining = {sku: qty for sku, qty in remaining.items() if qty}
        if not remaining:
            break
    used = list(dict.fromkeys(pick.warehouse for pick in picks))
    text = f"{rule.rule}: split across {', '.join(used)}" if used else f"{rule.rule}: no stock"
    if remaining:
        text += "; short: " + ", ".join(f"{sku} x{qty}" for sku, qty in remaining.items())
    return AllocationPlan(picks=picks, short=remaining, explanation=text)
