"""The shipping-advice import: the partner's DISPATCHNOTIFICATION files on its real FTP server
become shipping confirmations; hostile files are refused; the Schedule exists and runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from activities.dispatch import build_dispatch_notification
from activities.tickets import list_tickets
from models.orders import OrderStatus
from settings import Settings
from starter.schedules import apply_schedules
from tests.helpers import FAST, Stack, make_order, running_stack, seed
from tests.test_order_workflow import mails_for
from workflows.jobs import ShippingAdviceImportWorkflow

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<DISPATCHNOTIFICATION>&e;</DISPATCHNOTIFICATION>"""


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "ship_confirmation_timeout": timedelta(seconds=60)})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


def drop(ftp_drop: Any, name: str, content: bytes) -> Path:
    """The partner uploads a file into its outbox."""
    outbox = Path(ftp_drop.root) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / name
    path.write_bytes(content)
    return path


def advice(order_id: str, tracking: str) -> bytes:
    return build_dispatch_notification(
        notification_id=f"DN-{uuid.uuid4().hex[:8]}", order_id=order_id,
        shipment_id=f"{order_id}-1", carrier="DHL", tracking_number=tracking,
        shipped_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC), lines=[("TENT-2P", 1)])


async def run_import(stack: Stack) -> dict[str, int]:
    return await stack.client.execute_workflow(
        ShippingAdviceImportWorkflow.run, id=f"advice-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue, execution_timeout=timedelta(seconds=60))


async def test_advice_confirms_orders_once_and_archives(stack: Stack, ftp_drop: Any,
                                                        mail_catcher: Any) -> None:
    orders = [make_order(), make_order()]
    await asyncio.gather(*(stack.submit(o) for o in orders))
    for order in orders:
        await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    first = advice(orders[0].order_id, "JJD000111")
    drop(ftp_drop, "DN-0001.xml", first)
    drop(ftp_drop, "DN-0002.xml", advice(orders[1].order_id, "JJD000222"))

    summary = await run_import(stack)
    assert (summary["files"], summary["confirmed"], summary["rejected"]) == (2, 2, 0)
    for order, tracking in zip(orders, ("JJD000111", "JJD000222"), strict=True):
        assert await stack.result(order.order_id) == "completed"
        view = await stack.view(order.order_id)
        assert view.shipments[0].tracking_number == tracking
    root = Path(ftp_drop.root)
    assert sorted(p.name for p in (root / "archive").iterdir()) == ["DN-0001.xml",
                                                                    "DN-0002.xml"]
    assert list((root / "outbox").iterdir()) == []

    drop(ftp_drop, "DN-0001-again.xml", first)  # the partner sends the same file again
    again = await run_import(stack)
    assert (again["files"], again["skipped"], again["confirmed"]) == (1, 1, 0)
    assert list((root / "outbox").iterdir()) == []  # the copy went to the archive too
    assert len(list((root / "archive").iterdir())) == 3
    for order in orders:
        assert len(mails_for(mail_catcher, str(order.customer.email))) == 4


async def test_hostile_and_unknown_advice_become_tickets(stack: Stack, ftp_drop: Any) -> None:
    drop(ftp_drop, "evil.xml", XXE)
    drop(ftp_drop, "stranger.xml", advice("webshop-nobody", "JJD000999"))
    summary = await run_import(stack)
    assert (summary["rejected"], summary["unknown_orders"]) == (1, 1)
    root = Path(ftp_drop.root)
    assert [p.name for p in (root / "error").iterdir()] == ["evil.xml"]
    assert b"root:" not in (root / "error" / "evil.xml").read_bytes()
    assert [p.name for p in (root / "archive").iterdir()] == ["stranger.xml"]
    titles = [t["title"] for t in list_tickets(stack.engine, status="open")
              if t["kind"] == "import"]
    assert any("evil.xml rejected" in t for t in titles)
    assert any("webshop-nobody" in t for t in titles)


async def test_schedule_runs_the_import(stack: Stack, ftp_drop: Any) -> None:
    order = make_order()
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    drop(ftp_drop, "DN-s.xml", advice(order.order_id, "JJD000555"))
    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    settings = stack.settings.model_copy(
        update={"shipping_advice_interval": timedelta(hours=1)})
    ids = await apply_schedules(stack.client, settings, task_queue=stack.task_queue,
                                prefix=prefix)
    assert ids == [f"{prefix}bank-statements", f"{prefix}collective-invoices",
                   f"{prefix}datev-export", f"{prefix}order-export",
                   f"{prefix}shipping-advice-import", f"{prefix}stock-sync"]
    bank = await stack.client.get_schedule_handle(ids[0]).describe()
    assert bank.schedule.spec.intervals[0].every == settings.bank_statement_interval
    collective = (await stack.client.get_schedule_handle(ids[1]).describe()).schedule.spec
    assert (collective.calendars[0].day_of_month[0].start, collective.calendars[0].hour[0]
            .start, collective.time_zone_name) == (1, 2, "Europe/Berlin")
    datev = (await stack.client.get_schedule_handle(ids[2]).describe()).schedule.spec
    assert (datev.calendars[0].day_of_month[0].start, datev.time_zone_name) == (
        1, "Europe/Berlin")
    export = await stack.client.get_schedule_handle(ids[3]).describe()
    calendar = export.schedule.spec.calendars[0]
    assert (calendar.hour[0].start, calendar.minute[0].start) == (0, 30)
    assert export.schedule.spec.time_zone_name == "Europe/Berlin"
    handle = stack.client.get_schedule_handle(ids[4])
    try:
        desc = await handle.describe()
        assert desc.schedule.spec.intervals[0].every == timedelta(hours=1)
        assert await apply_schedules(stack.client, settings, task_queue=stack.task_queue,
                                     prefix=prefix) == ids  # updated, not copied
        await handle.trigger()
        assert await stack.result(order.order_id, timeout=60) == "completed"
    finally:
        for schedule_id in ids:
            await stack.client.get_schedule_handle(schedule_id).delete()


async def test_csv_advice_confirms_orders(stack: Stack, ftp_drop: Any) -> None:
    order = make_order()
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    drop(ftp_drop, "versand-2026-11-25.csv", (
        "\ufefforder_id;shipment_id;carrier;tracking_number;shipped_at\n"
        f"{order.order_id};{order.order_id}-1;DPD;01234567890123;2026-11-25T12:00:00+01:00\n"
    ).encode())
    drop(ftp_drop, "kaputt.csv", b"order_id;carrier\nwebshop-x;DHL\n")
    summary = await run_import(stack)
    assert (summary["confirmed"], summary["rejected"]) == (1, 1)
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert (view.shipments[0].carrier, view.shipments[0].tracking_number) == \
        ("DPD", "01234567890123")
    root = Path(ftp_drop.root)
    assert [p.name for p in (root / "error").iterdir()] == ["kaputt.csv"]
    titles = [t["title"] for t in list_tickets(stack.engine, status="open")]
    assert any("kaputt.csv rejected" in t and "tracking_number" in t for t in titles)


async def test_each_partner_gets_its_shipment_and_sends_its_own_advice(
        stack: Stack, ftp_drop: Any) -> None:
    from decimal import Decimal

    from sqlmodel import Session

    from models.tables import Product, Stock, Warehouse
    from tests.fixtures_partners import SECOND_3PL

    code, sku = f"P{uuid.uuid4().hex[:6].upper()}", f"ONLY-{uuid.uuid4().hex[:6].upper()}"
    with Session(stack.engine) as session:
        session.add(Warehouse(code=code, name="Lager des zweiten 3PL", priority=9,
                              partner=SECOND_3PL))
        session.add(Product(sku=sku, name="Nur dort", weight_g=300, length_mm=100,
                            width_mm=100, height_mm=100, price=Decimal("9.90")))
        session.flush()
        session.add(Stock(warehouse=code, sku=sku, on_hand=5))
        session.commit()
    order = make_order(lines=[("TENT-2P", 1, "229.00"), (sku, 1, "9.90")], total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    root = Path(ftp_drop.root)
    for _ in range(300):
        if (root / "nord" / "inbox" / f"{order.order_id}-2.xml").exists():
            break
        await asyncio.sleep(0.1)
    assert (root / "inbox" / f"{order.order_id}-1.xml").exists()
    assert (root / "nord" / "inbox" / f"{order.order_id}-2.xml").exists()
    assert not (root / "inbox" / f"{order.order_id}-2.xml").exists()
    view = await stack.view(order.order_id)
    assert [s.partner for s in view.shipments] == [None, SECOND_3PL]
    first = build_dispatch_notification(
        notification_id="DN-A", order_id=order.order_id, shipment_id=f"{order.order_id}-1",
        carrier="DHL", tracking_number="JJD-MAIN", shipped_at=None, lines=[("TENT-2P", 1)])
    second = build_dispatch_notification(
        notification_id="DN-B", order_id=order.order_id, shipment_id=f"{order.order_id}-2",
        carrier="DPD", tracking_number="DPD-NORD", shipped_at=None, lines=[(sku, 1)])
    drop(ftp_drop, "dn-main.xml", first)
    (root / "nord" / "outbox").mkdir(parents=True, exist_ok=True)
    (root / "nord" / "outbox" / "dn-nord.xml").write_bytes(second)
    summary = await run_import(stack)
    assert summary["confirmed"] == 2
    assert (root / "nord" / "archive" / "dn-nord.xml").exists()
    assert (root / "archive" / "dn-main.xml").exists()
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert [s.tracking_number for s in view.shipments] == ["JJD-MAIN", "DPD-NORD"]
