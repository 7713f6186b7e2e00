"""The allocation rules (models/allocation.py): a pure function, tested by a table."""

from __future__ import annotations

import pytest

from models.allocation import AllocationConfig, AllocationRule, WarehouseInfo, plan_allocation

WAREHOUSES = [WarehouseInfo(code="PAS", country="DE", priority=1),
              WarehouseInfo(code="HAM", country="DE", priority=2),
              WarehouseInfo(code="VIE", country="AT", priority=3)]
FIRST = AllocationRule()
NEAREST = AllocationRule(rule="nearest")
NO_SPLIT = AllocationRule(split=False)


def stock(**levels: dict[str, int]) -> dict[tuple[str, str], int]:
    return {(warehouse, sku): qty for warehouse, skus in levels.items()
            for sku, qty in skus.items()}


def picks(plan: object) -> set[tuple[str, str, int]]:
    return {(p.warehouse, p.sku, p.quantity) for p in plan.picks}  # type: ignore[attr-defined]


CASES = [
    # (name, rule, destination, wanted, available, picks, short)
    ("first warehouse has all", FIRST, "DE", {"A": 1, "B": 2},
     stock(PAS={"A": 5, "B": 5}, HAM={"A": 5, "B": 5}),
     {("PAS", "A", 1), ("PAS", "B", 2)}, {}),
    ("priority skips a warehouse that lacks a line", FIRST, "DE", {"A": 1, "B": 2},
     stock(PAS={"A": 5, "B": 1}, HAM={"A": 5, "B": 5}),
     {("HAM", "A", 1), ("HAM", "B", 2)}, {}),
    ("nobody has all: split by priority", FIRST, "DE", {"A": 1, "B": 2},
     stock(PAS={"A": 5}, HAM={"B": 5}),
     {("PAS", "A", 1), ("HAM", "B", 2)}, {}),
    ("one line split across two warehouses", FIRST, "DE", {"A": 4},
     stock(PAS={"A": 3}, HAM={"A": 3}),
     {("PAS", "A", 3), ("HAM", "A", 1)}, {}),
    ("short line is backordered, the rest reserved", FIRST, "DE", {"A": 1, "B": 3},
     stock(PAS={"A": 1, "B": 1}),
     {("PAS", "A", 1), ("PAS", "B", 1)}, {"B": 2}),
    ("nearest takes the delivery country first", NEAREST, "AT", {"A": 1},
     stock(PAS={"A": 5}, VIE={"A": 5}),
     {("VIE", "A", 1)}, {}),
    ("nearest falls back to priority", NEAREST, "AT", {"A": 1, "B": 1},
     stock(PAS={"A": 5, "B": 5}, VIE={"A": 5}),
     {("PAS", "A", 1), ("PAS", "B", 1)}, {}),
    ("first rule ignores the country", FIRST, "AT", {"A": 1},
     stock(PAS={"A": 5}, VIE={"A": 5}),
     {("PAS", "A", 1)}, {}),
    ("no split: one warehouse with all", NO_SPLIT, "DE", {"A": 1, "B": 1},
     stock(PAS={"A": 1}, HAM={"A": 1, "B": 1}),
     {("HAM", "A", 1), ("HAM", "B", 1)}, {}),
    ("no split: nobody has all, everything waits", NO_SPLIT, "DE", {"A": 1, "B": 1},
     stock(PAS={"A": 1}, HAM={"B": 1}),
     set(), {"A": 1, "B": 1}),
    ("nothing anywhere", FIRST, "DE", {"A": 2}, {}, set(), {"A": 2}),
]


@pytest.mark.parametrize(("rule", "destination", "wanted", "available", "expected", "short"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan(rule: AllocationRule, destination: str, wanted: dict[str, int],
              available: dict[tuple[str, str], int], expected: set[tuple[str, str, int]],
              short: dict[str, int]) -> None:
    plan = plan_allocation(wanted, available, WAREHOUSES, rule, destination)
    assert picks(plan) == expected
    assert plan.short == short
    assert plan.explanation  # says what it did, for the timeline


def test_plan_is_deterministic_and_never_takes_more_than_free() -> None:
    available = stock(PAS={"A": 2, "B": 1}, HAM={"A": 1, "B": 7}, VIE={"A": 9})
    plans = [plan_allocation({"A": 10, "B": 3}, available, WAREHOUSES, FIRST, "DE")
             for _ in range(3)]
    assert plans[0] == plans[1] == plans[2]
    for pick in plans[0].picks:
        assert pick.quantity <= available[pick.warehouse, pick.sku]
    assert sum(p.quantity for p in plans[0].picks if p.sku == "A") == 10
    assert plans[0].short == {}


def test_channel_rules() -> None:
    config = AllocationConfig(channels={"amazon": NEAREST})
    assert config.for_channel("amazon") == NEAREST
    assert config.for_channel("webshop") == config.default == FIRST
