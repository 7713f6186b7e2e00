"""Dropship / pre-order SKUs: routed to the supplier partner as a shipment of its own, by the
supplier's channel, with the supplier's SLA as that shipment's confirmation timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from temporalio.client import Client

from models.orders import OrderStatus, ShipmentConfirmation
from models.tables import Product, Warehouse
from settings import Settings
from tests.fixtures_partners import SUPPLIER
from tests.helpers import FAST, Stack, make_order, running_stack, seed
from worker import build_worker
from workflows.order import OrderWorkflow

SUPPLIER_DESK = "auftrag@lieferant.example"


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    # our own parcels get a minute; the supplier's SLA (3 s, partner_settings) is shorter
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "ship_confirmation_timeout": timedelta(seconds=60)})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


def dropship_sku(stack: Stack, partner: str = SUPPLIER) -> str:
    sku = f"PRE-{uuid.uuid4().hex[:8].upper()}"
    with Session(stack.engine) as session:
        session.add(Product(sku=sku, name="Vorbestell-Kocher", weight_g=900, length_mm=200,
                            width_mm=200, height_mm=150, price=Decimal("149.00"),
                            dropship_partner=partner))
        session.commit()
    return sku


async def test_dropship_line_goes_to_the_supplier_with_its_sla(stack: Stack,
                                                               mail_catcher: Any) -> None:
    sku = dropship_sku(stack)  # no stock anywhere: the supplier ships it
    order = make_order(lines=[("TENT-2P", 1, "229.00"), (sku, 2, "149.00")], total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    for _ in range(300):
        view = await stack.view(order.order_id)
        if len(view.shipments) == 2 and all(s.status == "handed_off" for s in view.shipments):
            break
        await asyncio.sleep(0.1)
    own, supplier = view.shipments
    assert (own.warehouse, own.partner, own.carrier) == ("MAIN", None, "DHL")
    assert (supplier.warehouse, supplier.partner) == (f"@{SUPPLIER}", SUPPLIER)
    assert supplier.carrier is None  # the supplier picks its carrier
    assert [(ln.sku, ln.quantity) for ln in supplier.lines] == [(sku, 2)]
    # the supplier's order desk got a mail with the delivery note only (format "pdf")
    mails = [m for m in mail_catcher.messages() if SUPPLIER_DESK in str(m["To"])
             and supplier.shipment_id in str(m["Subject"])]
    assert len(mails) == 1
    assert [a.get_content_type() for a in mails[0].iter_attachments()] == ["application/pdf"]
    body = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert sku in body and "TENT-2P" not in body
    handle = stack.client.get_workflow_handle(order.order_id)
    await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
        carrier="DHL", tracking_number="OWN-1", shipment_id=own.shipment_id))
    # the supplier's SLA (3 s) runs out long before our own timeout (60 s)
    for _ in range(300):
        view = await stack.view(order.order_id)
        if any(t.kind == "escalation" for t in view.tickets):
            break
        await asyncio.sleep(0.1)
    escalation = [t for t in view.tickets if t.kind == "escalation"]
    assert len(escalation) == 1 and supplier.shipment_id in escalation[0].title
    assert view.status == OrderStatus.PARTIALLY_SHIPPED
    await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
        carrier="Hermes", tracking_number="SUP-7", shipment_id=supplier.shipment_id))
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert {t.status for t in view.tickets if t.kind == "escalation"} == {"resolved"}
    assert [s.tracking_number for s in view.shipments] == ["OWN-1", "SUP-7"]


async def test_worker_refuses_master_data_with_an_unknown_partner(
        client: Client, partner_settings: Settings, tmp_path: Path) -> None:
    from activities.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'own.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(Warehouse(code="FAR", name="Fremdlager", partner="nobody"))
        session.add(Product(sku="X-1", name="X", weight_g=1, length_mm=1, width_mm=1,
                            height_mm=1, price=Decimal("1.00"), dropship_partner="ghost"))
        session.commit()
    settings = partner_settings.model_copy(update={"database_url": url})
    with pytest.raises(ValueError) as caught:
        build_worker(client, settings, task_queue="unused")
    assert "warehouse FAR: unknown partner 'nobody'" in str(caught.value)
    assert "product X-1: unknown dropship partner 'ghost'" in str(caught.value)
    engine.dispose()
