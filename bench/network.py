"""Fulfillment-network figures for `make bench` (no Temporal: the activities' own cost).

- allocation + carrier selection per order: a catalog of 10,000 SKUs in 5 warehouses
  (random stock, some SKUs only in some warehouses), orders of 1-5 random lines; per order
  ``reserve_stock`` (the allocation rule), ``allocate_shipments`` and, per shipment,
  ``choose_carrier`` (packing + carrier matrix), each its own transaction as in the worker;
- stock-sync throughput: one 100,000-row stock list (100,000 SKUs), parsed safely, validated
  against the schema and applied in batches of 1,000 rows.

Run alone: ``python -m bench.network [--orders N] [--skus N] [--rows N] [--database-url U]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from activities.db import make_engine, migrate
from activities.shipping import ShippingActivities, load_shipping_config
from activities.stock import StockRow, apply_stock_list, build_stock_list, parse_stock_list
from activities.store import StoreActivities
from models.activities import (
    AllocateShipmentInput,
    ChooseCarrierInput,
    ReserveStockInput,
    StockLine,
)
from models.carriers import ShipmentNeeds
from models.tables import Product, Stock, Warehouse
from settings import PROJECT_DIR

WAREHOUSES = [("W1", "DE", 1), ("W2", "DE", 2), ("W3", "AT", 3), ("W4", "DE", 4),
              ("W5", "PL", 5)]


def seed_catalog(engine: Engine, skus: int, *, prefix: str, warehouses: bool = True,
                 rng: random.Random) -> list[str]:
    """``skus`` products; each stocked in 1-5 warehouses (bulk inserts)."""
    codes = [f"{prefix}{i:06d}" for i in range(skus)]
    with engine.begin() as conn:
        if warehouses:
            conn.execute(insert(Warehouse), [
                {"code": code, "name": f"Lager {code}", "country": country, "priority": prio}
                for code, country, prio in WAREHOUSES])
        conn.execute(insert(Product), [
            {"sku": sku, "name": f"Artikel {sku}", "weight_g": rng.randint(100, 8000),
             "length_mm": rng.randint(50, 700), "width_mm": rng.randint(50, 400),
             "height_mm": rng.randint(20, 300), "price": Decimal("19.90"),
             "hazardous": False, "age_check": False} for sku in codes])
        rows = []
        for sku in codes:
            for code, _, _ in rng.sample(WAREHOUSES, rng.randint(1, len(WAREHOUSES))):
                rows.append({"warehouse": code, "sku": sku, "on_hand": rng.randint(0, 50),
                             "reserved": 0})
        conn.execute(insert(Stock), rows)
    return codes


def measure_allocation(engine: Engine, skus: list[str], orders: int,
                       rng: random.Random) -> dict[str, Any]:
    network = load_shipping_config(PROJECT_DIR / "demo" / "network.toml")
    store = StoreActivities(engine, network.allocation)
    shipping = ShippingActivities(engine, network)
    per_order: list[float] = []
    shipments = backordered = 0
    for n in range(orders):
        order_id = f"bench-{n}"
        lines = [StockLine(sku=sku, quantity=rng.randint(1, 3))
                 for sku in rng.sample(skus, rng.randint(1, 5))]
        country = rng.choice(["DE", "DE", "DE", "AT"])
        start = time.perf_counter()
        state = store.reserve_stock(ReserveStockInput(order_id=order_id, lines=lines,
                                                      channel="webshop", country=country))
        made = store.allocate_shipments(AllocateShipmentInput(order_id=order_id))
        for shipment in made:
            shipping.choose_carrier(ChooseCarrierInput(
                order_id=order_id, shipment_id=shipment.shipment_id,
                needs=ShipmentNeeds(country=country, express=False, cod=False)))
        per_order.append(time.perf_counter() - start)
        shipments += len(made)
        backordered += bool(state.backordered)
    per_order.sort()
    return {"orders": orders, "p50": statistics.median(per_order),
            "p95": per_order[int(len(per_order) * 0.95) - 1], "mean": statistics.fmean(per_order),
            "shipments": shipments, "backordered": backordered}


def measure_stock_sync(engine: Engine, rows: int, rng: random.Random) -> dict[str, Any]:
    skus = seed_catalog(engine, rows, prefix="SYNC-", warehouses=False, rng=rng)
    data = build_stock_list("W1", [StockRow(sku=sku, on_hand=rng.randint(0, 500))
                                   for sku in skus], generated_at=datetime.now(UTC))
    start = time.perf_counter()
    stock = parse_stock_list(data, max_bytes=50 * 1024 * 1024)
    parsed = time.perf_counter()
    summary = apply_stock_list(engine, stock, batch_size=1000)
    done = time.perf_counter()
    return {"rows": rows, "bytes": len(data), "parse_s": parsed - start,
            "apply_s": done - parsed, "total_s": done - start,
            "applied": summary.updated + summary.created}


def run(*, orders: int = 500, skus: int = 10_000, rows: int = 100_000,
        database_url: str | None = None) -> dict[str, Any]:
    rng = random.Random(42)
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'network.db'}"
        migrate(url)
        engine = make_engine(url)
        catalog = seed_catalog(engine, skus, prefix="SKU-", rng=rng)
        allocation = measure_allocation(engine, catalog, orders, rng)
        sync = measure_stock_sync(engine, rows, rng)
        engine.dispose()
    return {"allocation": allocation, "sync": sync, "skus": skus}


def report(result: dict[str, Any]) -> None:
    alloc, sync = result["allocation"], result["sync"]
    print(f"allocation + carrier ms/order p50 {alloc['p50'] * 1000:6.1f}   ({alloc['orders']} "
          f"orders, {result['skus']} SKUs, {len(WAREHOUSES)} warehouses, SQLite)")
    print(f"allocation + carrier ms/order p95 {alloc['p95'] * 1000:6.1f}   "
          f"({alloc['shipments']} shipments, {alloc['backordered']} orders with backorders)")
    print(f"stock sync rows/s               {sync['rows'] / sync['total_s']:8.0f}   "
          f"({sync['rows']} rows, {sync['bytes'] / 1e6:.1f} MB: parse+validate "
          f"{sync['parse_s']:.1f} s, apply {sync['apply_s']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    report(run(orders=args.orders, skus=args.skus, rows=args.rows,
               database_url=args.database_url))


if __name__ == "__main__":
    main()
