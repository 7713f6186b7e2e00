"""Small factories and waiters shared by the workflow tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client

from activities.db import make_engine
from activities.masterdata import load_master_data
from models.orders import OrderIn, OrderStatus, OrderView
from settings import Settings
from starter import service
from worker import build_worker
from workflows.order import OrderWorkflow

CATALOG = """
[[warehouses]]
code = "MAIN"
name = "Hauptlager"
country = "DE"
priority = 1

[[warehouses]]
code = "NORD"
name = "Lager Hamburg"
country = "DE"
priority = 2

[[products]]
sku = "LAMP-N"
name = "Stirnlampe (nur im Lager Nord)"
weight_g = 200
length_mm = 100
width_mm = 80
height_mm = 60
price = "29.90"

[[stock]]
warehouse = "NORD"
sku = "LAMP-N"
on_hand = 1000

[[products]]
sku = "TENT-2P"
name = "Trekkingzelt 2P"
weight_g = 2400
length_mm = 550
width_mm = 180
height_mm = 180
price = "229.00"

[[products]]
sku = "STOVE-1"
name = "Gaskocher"
weight_g = 300
length_mm = 120
width_mm = 100
height_mm = 90
price = "39.90"

[[products]]
sku = "RARE-1"
name = "Seltene Laterne"
weight_g = 500
length_mm = 200
width_mm = 100
height_mm = 100
price = "59.00"

[[stock]]
warehouse = "MAIN"
sku = "TENT-2P"
on_hand = 1000

[[stock]]
warehouse = "MAIN"
sku = "STOVE-1"
on_hand = 1000

[[stock]]
warehouse = "MAIN"
sku = "RARE-1"
on_hand = 1
"""

FAST = {
    "payment_reminder_after": timedelta(seconds=2),
    "cancel_unpaid_after": timedelta(seconds=4),
    "ship_confirmation_timeout": timedelta(seconds=2),
    "review_request_after": timedelta(seconds=1),
    "activity_timeout": timedelta(seconds=10),
}


def order_payload(*, method: str = "paid", external_id: str | None = None,
                  lines: list[tuple[str, int, str]] | None = None, total: str | None = "233.90",
                  comment: str | None = None, email: str | None = None,
                  name: str = "Anna Berg") -> dict[str, Any]:
    lines = lines or [("TENT-2P", 1, "229.00")]
    return {
        "channel": "webshop",
        "external_id": external_id or uuid.uuid4().hex[:12],
        "placed_at": "2026-11-25T09:14:00+01:00",
        "currency": "EUR",
        "customer": {"email": email or f"anna-{uuid.uuid4().hex[:6]}@example.de",
                     "first_name": "Anna", "last_name": "Berg", "type": "b2c"},
        "billing_address": {"name": name, "street": "Lindenweg 4", "postal_code": "94032",
                            "city": "Passau", "country": "DE"},
        "shipping_address": None,
        "lines": [{"sku": s, "name": s.title(), "quantity": q, "unit_price": p, "tax_rate": "19"}
                  for s, q, p in lines],
        "shipping": {"method": "standard", "price": "4.90"},
        "payment": {"method": method, "provider": None, "reference": None},
        "comment": comment,
        "total": total,
    }


def make_order(**kwargs: Any) -> OrderIn:
    return OrderIn.model_validate(order_payload(**kwargs))


@dataclass
class Stack:
    client: Client
    settings: Settings
    engine: Engine
    task_queue: str

    async def submit(self, order: OrderIn) -> tuple[str, bool]:
        return await service.submit_order(self.client, order, settings=self.settings,
                                          task_queue=self.task_queue)

    async def view(self, order_id: str) -> OrderView:
        return await service.get_order(self.client, order_id)

    async def wait_status(self, order_id: str, *statuses: OrderStatus,
                          timeout: float = 30, query: bool = True) -> OrderView | None:
        """Poll the ``OrderStatus`` search attribute (answers without a worker), then return
        the full view from the ``status`` query."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        status = None
        while status not in statuses:
            if loop.time() > deadline:
                raise AssertionError(f"{order_id} did not reach {statuses}; last: {status}")
            await asyncio.sleep(0.1)
            try:
                status = await service.order_status(self.client, order_id)
            except service.OrderNotFound:
                status = None
        return await self.view(order_id) if query else None

    async def result(self, order_id: str, timeout: float = 60) -> str:
        handle = self.client.get_workflow_handle_for(OrderWorkflow.run, order_id)
        return await asyncio.wait_for(handle.result(), timeout)


def seed(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG, encoding="utf-8")
    load_master_data(engine, path)


@asynccontextmanager
async def running_stack(client: Client, settings: Settings, task_queue: str,
                        ) -> AsyncIterator[Stack]:
    engine = make_engine(settings.database_url)
    worker = build_worker(client, settings, task_queue=task_queue)
    async with worker:
        yield Stack(client=client, settings=settings, engine=engine, task_queue=task_queue)
    engine.dispose()


def money(value: str) -> Decimal:
    return Decimal(value)


async def ship_and_invoice(stack: Stack, order: OrderIn) -> OrderView:
    """Submit an order, confirm its (one) shipment as the partner would, and return it once
    it is invoiced."""
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF, query=False)
    await stack.client.get_workflow_handle(order.order_id).signal(
        "shipment_confirmed", {"carrier": "DHL", "tracking_number": f"JJD{uuid.uuid4().hex[:8]}"})
    view = await stack.wait_status(order.order_id, OrderStatus.INVOICED)
    assert view is not None
    return view
