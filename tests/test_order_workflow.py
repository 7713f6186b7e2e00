"""The order lifecycle end to end: real dev server, real SMTP catcher, real FTP drop."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pypdf import PdfReader
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.db import migrate
from activities.documents import get_document
from activities.einvoice import xml_of_pdf
from models.orders import (
    CancelInput,
    OrderIn,
    OrderStatus,
    PaymentIn,
    PaymentStatus,
    ReleaseInput,
    ShipmentConfirmation,
)
from models.tables import Document, Product, Reservation, Stock, Ticket
from settings import PROJECT_DIR, Settings
from tests.helpers import FAST, Stack, make_order, order_payload, running_stack, seed
from workflows.order import OrderWorkflow

XSD = PROJECT_DIR / "schemas" / "opentrans-2.1" / "opentrans_2_1.xsd"


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={**FAST, "task_queue": task_queue})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


def mails_for(mail_catcher: Any, to: str) -> list[Any]:
    return [m for m in mail_catcher.messages() if to in str(m["To"])]


def subjects(mails: list[Any]) -> list[str]:
    return [str(m["Subject"]) for m in mails]


async def pay(stack: Stack, order_id: str, amount: str) -> None:
    await stack.client.get_workflow_handle(order_id).signal(
        OrderWorkflow.payment_received,
        PaymentIn(amount=Decimal(amount), reference=order_id, paid_at=datetime.now(UTC)))


async def ship(stack: Stack, order_id: str, tracking: str = "00340434161094042557",
               timeout: float = 30) -> None:
    await stack.wait_status(order_id, OrderStatus.HANDED_OFF, query=False, timeout=timeout)
    await stack.client.get_workflow_handle(order_id).signal(
        OrderWorkflow.shipment_confirmed,
        ShipmentConfirmation(carrier="DHL", tracking_number=tracking))


def stock_row(stack: Stack, sku: str) -> Stock:
    with Session(stack.engine) as session:
        return session.exec(select(Stock).where(Stock.sku == sku)).one()


@pytest.mark.parametrize("method", ["prepaid", "paid", "invoice", "cod"])
async def test_happy_path(stack: Stack, mail_catcher: Any, ftp_drop: Any, method: str) -> None:
    order = make_order(method=method)
    status, created = await stack.submit(order)
    assert (status, created) == ("received", True)
    if method == "prepaid":
        await stack.wait_status(order.order_id, OrderStatus.AWAITING_PAYMENT)
        await pay(stack, order.order_id, "233.90")
    await ship(stack, order.order_id)
    if method == "invoice":
        await stack.wait_status(order.order_id, OrderStatus.INVOICED)
        await pay(stack, order.order_id, "233.90")
    assert await stack.result(order.order_id) == "completed"

    view = await stack.view(order.order_id)
    assert view.status == OrderStatus.COMPLETED
    expected_payment = PaymentStatus.OPEN if method == "cod" else PaymentStatus.PAID
    assert view.payment_status == expected_payment
    assert view.totals.open == (Decimal("233.90") if method == "cod" else Decimal(0))
    assert view.shipments[0].tracking_number == "00340434161094042557"
    kinds = [e.kind for e in view.timeline]
    assert kinds.index("recorded") < kinds.index("reserved") < kinds.index("handed_off") \
        < kinds.index("invoiced") < kinds.index("completed")

    mails = mails_for(mail_catcher, str(order.customer.email))
    assert len(mails) == 4, subjects(mails)  # confirmation, shipping, invoice, review
    invoice_mail = next(m for m in mails if "Rechnung" in str(m["Subject"]))
    pdf = next(a for a in invoice_mail.iter_attachments()
               if a.get_content_type() == "application/pdf")
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.get_content())).pages)
    invoice = next(d for d in view.documents if d.kind == "invoice")
    assert invoice.number and invoice.number in text
    assert "Trekkingzelt" in text or "Tent-2P" in text
    assert "233,90" in text or "233.90" in text

    inbox = Path(ftp_drop.root) / "inbox"
    xml_files = [f for f in view.shipments[0].files if f.endswith(".xml")]
    assert len(xml_files) == 1
    xml_path = inbox / Path(xml_files[0]).name
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.parse(str(xml_path))), schema.error_log
    assert order.order_id.encode() in xml_path.read_bytes()


async def test_hold_and_release_by_signal(stack: Stack, mail_catcher: Any) -> None:
    order = make_order(comment="Bitte vor 10 Uhr liefern", total="999.00")
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.ON_HOLD)
    reasons = {h.reason.value for h in view.hold_reasons}
    assert reasons == {"customer_comment", "total_mismatch"}
    with Session(stack.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.order_id == order.order_id)).one()
    assert ticket.status == "open"
    assert mails_for(mail_catcher, str(order.customer.email)) == []  # nothing sent while held

    await stack.client.get_workflow_handle(order.order_id).signal(
        OrderWorkflow.release, ReleaseInput(by="maria", note="Kommentar geprüft"))
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    released = [e for e in view.timeline if e.kind == "released"]
    assert released and "maria" in released[0].text and "Kommentar geprüft" in released[0].text
    with Session(stack.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.order_id == order.order_id)).one()
    assert (ticket.status, ticket.resolved_by) == ("resolved", "maria")


async def test_unpaid_prepaid_order_is_reminded_then_cancelled(stack: Stack,
                                                               mail_catcher: Any) -> None:
    before = stock_row(stack, "STOVE-1")
    order = make_order(method="prepaid", lines=[("STOVE-1", 2, "39.90")], total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.AWAITING_PAYMENT)
    assert stock_row(stack, "STOVE-1").reserved == before.reserved + 2  # reserved before payment
    assert await stack.result(order.order_id) == "cancelled"

    after = stock_row(stack, "STOVE-1")
    assert (after.reserved, after.on_hand) == (before.reserved, before.on_hand)
    got = subjects(mails_for(mail_catcher, str(order.customer.email)))
    assert len(got) == 3, got  # confirmation, reminder, cancellation
    assert any("Zahlungserinnerung" in s for s in got)
    assert any("storniert" in s.lower() for s in got)


async def test_partial_payment_keeps_waiting(stack: Stack) -> None:
    order = make_order(method="prepaid", total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.AWAITING_PAYMENT)
    await pay(stack, order.order_id, "100.00")
    await asyncio.sleep(0.5)
    view = await stack.view(order.order_id)
    assert (view.status, view.payment_status) == (OrderStatus.AWAITING_PAYMENT,
                                                   PaymentStatus.PARTIALLY_PAID)
    assert view.totals.open == Decimal("133.90")
    await pay(stack, order.order_id, "133.90")
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)


async def test_overpayment_opens_a_ticket_and_goes_on(stack: Stack) -> None:
    order = make_order(method="prepaid")
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.AWAITING_PAYMENT)
    await pay(stack, order.order_id, "250.00")
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    assert view is not None and view.payment_status == PaymentStatus.PAID
    payment_tickets = [t for t in view.tickets if t.kind == "payment"]
    assert len(payment_tickets) == 1 and "16.10" in payment_tickets[0].title


async def test_express_order_goes_with_the_express_carrier(stack: Stack) -> None:
    payload = order_payload()
    payload["shipping"] = {"method": "express", "price": "4.90"}
    order = OrderIn.model_validate(payload)
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    assert view.shipments[0].carrier == "GO"
    desc = await stack.client.get_workflow_handle(order.order_id).describe()
    assert desc.search_attributes.get("Carrier") == ["GO"]
    carrier_event = next(e for e in view.timeline if e.kind == "carrier")
    assert "GO: chosen" in carrier_event.text and "DHL: excluded, no express service" \
        in carrier_event.text


async def test_no_carrier_holds_with_the_reasons_and_cancel_restocks(stack: Stack) -> None:
    before = stock_row(stack, "STOVE-1")
    payload = order_payload(lines=[("STOVE-1", 1, "39.90")], total=None)
    payload["billing_address"].update(country="US", postal_code="10001", city="New York")
    order = OrderIn.model_validate(payload)
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.ON_HOLD)
    assert [h.reason.value for h in view.hold_reasons] == ["no_carrier"]
    detail = view.hold_reasons[0].detail
    for reason in ("DHL: excluded, does not serve country US",
                   "DPD: excluded, does not serve country US",
                   "GO: excluded, no standard service"):
        assert reason in detail
    assert stock_row(stack, "STOVE-1").on_hand == before.on_hand - 1  # allocated
    assert any(t.kind == "no-carrier" and t.status == "open" for t in view.tickets)
    await stack.client.get_workflow_handle(order.order_id).signal(
        OrderWorkflow.cancel, CancelInput(by="maria", reason="kein Versand in die USA"))
    assert await stack.result(order.order_id) == "cancelled"
    after = stock_row(stack, "STOVE-1")
    assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)


async def test_ship_confirmation_timeout_escalates_and_late_confirmation_completes(
        stack: Stack) -> None:
    order = make_order()
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (view := await stack.view(order.order_id)).escalated:
        assert loop.time() < deadline, "no escalation"
        await asyncio.sleep(0.3)
    assert any(t.kind == "escalation" and t.status == "open" for t in view.tickets)
    desc = await stack.client.get_workflow_handle(order.order_id).describe()
    assert desc.search_attributes.get("Escalated") == [True]

    await ship(stack, order.order_id)
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert [t.status for t in view.tickets if t.kind == "escalation"] == ["resolved"]


async def test_cancel_releases_stock_and_tells_customer(stack: Stack, mail_catcher: Any) -> None:
    before = stock_row(stack, "TENT-2P")
    order = make_order(method="prepaid", total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.AWAITING_PAYMENT)
    await stack.client.get_workflow_handle(order.order_id).signal(
        OrderWorkflow.cancel, CancelInput(by="maria", reason="Kunde hat storniert"))
    assert await stack.result(order.order_id) == "cancelled"
    assert stock_row(stack, "TENT-2P").reserved == before.reserved
    got = subjects(mails_for(mail_catcher, str(order.customer.email)))
    assert any("storniert" in s.lower() for s in got)


def new_sku(stack: Stack, on_hand: int, warehouse: str = "MAIN") -> str:
    """A product of its own for one test (the catalog is shared by the session)."""
    sku = f"X-{uuid.uuid4().hex[:8].upper()}"
    with Session(stack.engine) as session:
        session.add(Product(sku=sku, name="Laterne", weight_g=500, length_mm=200,
                            width_mm=100, height_mm=100, price=Decimal("59.00")))
        session.flush()
        session.add(Stock(warehouse=warehouse, sku=sku, on_hand=on_hand))
        session.commit()
    return sku


async def test_out_of_stock_is_backordered_with_a_mail_and_can_be_cancelled(
        stack: Stack, mail_catcher: Any) -> None:
    sku = new_sku(stack, on_hand=0)
    order = make_order(lines=[(sku, 2, "59.00")], total=None)
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.BACKORDERED)
    assert view.hold_reasons[0].reason.value == "out_of_stock"
    assert sku in view.hold_reasons[0].detail and view.shipments == []
    assert "waiting for stock" in view.waiting_for
    mails = mails_for(mail_catcher, str(order.customer.email))
    notice = next(m for m in mails if "Lieferverzögerung" in str(m["Subject"]))
    body = notice.get_content()
    expected = (datetime.now(UTC) + timedelta(days=7)).strftime("%d.%m.%Y")
    assert "2 x" in body and sku in body and expected in body  # lead time: 7 days
    await stack.client.get_workflow_handle(order.order_id).signal(
        OrderWorkflow.cancel, CancelInput(by="maria", reason="nicht lieferbar"))
    assert await stack.result(order.order_id) == "cancelled"
    with Session(stack.engine) as session:
        states = set(session.exec(select(Reservation.state).where(
            Reservation.order_id == order.order_id)))
    assert states == {"released"}


async def test_split_order_ships_in_two_parcels_with_two_tracking_numbers(
        stack: Stack, mail_catcher: Any, ftp_drop: Any) -> None:
    order = make_order(lines=[("TENT-2P", 1, "229.00"), ("LAMP-N", 2, "29.90")], total=None)
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    for _ in range(300):  # the second parcel is handed off right after the first
        if all(s.status == "handed_off" for s in view.shipments):
            break
        await asyncio.sleep(0.1)
        view = await stack.view(order.order_id)
    main, nord = view.shipments
    assert (main.shipment_id, main.warehouse) == (f"{order.order_id}-1", "MAIN")
    assert (nord.shipment_id, nord.warehouse) == (f"{order.order_id}-2", "NORD")
    assert [(ln.sku, ln.quantity) for ln in main.lines] == [("TENT-2P", 1)]
    assert [(ln.sku, ln.quantity) for ln in nord.lines] == [("LAMP-N", 2)]
    # each parcel went to the partner as its own order XML with only its own lines
    inbox = Path(ftp_drop.root) / "inbox"
    xml = {path.name: path.read_bytes() for path in inbox.glob(f"{order.order_id}-*.xml")}
    assert sorted(xml) == [f"{order.order_id}-1.xml", f"{order.order_id}-2.xml"]
    assert b"LAMP-N" in xml[f"{order.order_id}-2.xml"]
    assert b"TENT-2P" not in xml[f"{order.order_id}-2.xml"]
    assert b"TENT-2P" in xml[f"{order.order_id}-1.xml"]
    handle = stack.client.get_workflow_handle(order.order_id)
    await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
        carrier="DPD", tracking_number="TRACK-NORD", shipment_id=nord.shipment_id))
    view = await stack.wait_status(order.order_id, OrderStatus.PARTIALLY_SHIPPED)
    assert [s.status for s in view.shipments] == ["handed_off", "shipped"]
    # the details line (the UI's current details) names every shipment
    assert f"{nord.shipment_id} (NORD): shipped with DPD TRACK-NORD" in view.waiting_for
    assert f"{main.shipment_id} (MAIN): waiting for the shipping confirmation" in \
        view.waiting_for
    await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
        carrier="DHL", tracking_number="TRACK-MAIN"))  # no shipment id: the open one
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert {s.shipment_id: s.tracking_number for s in view.shipments} == {
        main.shipment_id: "TRACK-MAIN", nord.shipment_id: "TRACK-NORD"}
    kinds = [e.kind for e in view.timeline]
    statuses = [e.text for e in view.timeline if e.kind == "status"]
    assert statuses.index("status partially_shipped") < statuses.index("status shipped")
    assert kinds.count("shipped") == 2
    shipped_mails = [m for m in mails_for(mail_catcher, str(order.customer.email))
                     if "unterwegs" in str(m["Subject"])]
    assert len(shipped_mails) == 2
    bodies = sorted(m.get_content() for m in shipped_mails)
    assert any("TRACK-NORD" in b and "LAMP-N" in b and "TENT-2P" not in b for b in bodies)
    assert any("TRACK-MAIN" in b and "TENT-2P" in b for b in bodies)
    # NORD shipped first: its partial invoice; the final one takes the rest and shipping
    partial, final = [d for d in view.documents if d.kind == "invoice"]
    assert (partial.document_id, partial.total) == (
        f"{order.order_id}-invoice-{nord.shipment_id}", Decimal("59.80"))
    assert partial.total + final.total == view.totals.total == Decimal("293.70")
    row = get_document(stack.engine, final.document_id)  # the final e-invoice names it (BG-3)
    assert row is not None and row.content is not None
    embedded = xml_of_pdf(row.content)
    assert embedded is not None
    assert etree.fromstring(embedded[1]).xpath(
        "//*[local-name()='InvoiceReferencedDocument']/*[local-name()='IssuerAssignedID']"
        "/text()") == [partial.number]
    invoice_mails = [m for m in mails_for(mail_catcher, str(order.customer.email))
                     if "Rechnung" in str(m["Subject"])]
    assert sorted(str(m["Subject"]).split()[2] for m in invoice_mails) == sorted(
        [partial.number, final.number])


async def test_duplicate_submission_starts_one_workflow(stack: Stack, mail_catcher: Any) -> None:
    order = make_order()
    first = await stack.submit(order)
    second = await stack.submit(order)
    assert first == ("received", True)
    assert second[1] is False
    await ship(stack, order.order_id)
    assert await stack.result(order.order_id) == "completed"
    assert (await stack.submit(order))[1] is False  # also after it closed
    assert len(mails_for(mail_catcher, str(order.customer.email))) == 4


# Twenty orders at once queue for the PDF renderer (one PDF at a time per worker, ~0.1-0.2 s
# each, more on a loaded machine): an activity may wait longer than FAST's 10 s for its turn,
# so these two tests give activities a minute, as the default settings do.
BURST = {**FAST, "activity_timeout": timedelta(seconds=60)}


async def test_twenty_concurrent_orders_get_gapless_invoice_numbers(
        client: Client, task_queue: str, partner_settings: Settings, tmp_path: Path) -> None:
    settings = partner_settings.model_copy(update={**BURST, "task_queue": task_queue})
    async with running_stack(client, settings, task_queue) as stack:
        seed(stack.engine, tmp_path)
        orders = [make_order() for _ in range(20)]
        await asyncio.gather(*(stack.submit(o) for o in orders))
        await asyncio.gather(*(ship(stack, o.order_id, timeout=120) for o in orders))
        await asyncio.gather(*(stack.result(o.order_id, timeout=180) for o in orders))
        assert_gapless(stack, [o.order_id for o in orders])


async def test_twenty_concurrent_orders_gapless_on_postgres(
        client: Client, task_queue: str, partner_settings: Settings, postgres_url: str,
        tmp_path: Path) -> None:
    migrate(postgres_url)
    settings = partner_settings.model_copy(update={**BURST, "task_queue": task_queue,
                                                   "database_url": postgres_url})
    async with running_stack(client, settings, task_queue) as pg:
        seed(pg.engine, tmp_path)
        orders = [make_order() for _ in range(20)]
        await asyncio.gather(*(pg.submit(o) for o in orders))
        await asyncio.gather(*(ship(pg, o.order_id, timeout=120) for o in orders))
        assert await asyncio.gather(*(pg.result(o.order_id, timeout=180) for o in orders)) \
            == ["completed"] * 20
        assert_gapless(pg, [o.order_id for o in orders])


def assert_gapless(stack: Stack, order_ids: list[str]) -> None:
    with Session(stack.engine) as session:
        docs = session.exec(select(Document).where(
            col(Document.kind).in_(["invoice", "collective_invoice"]))).all()
        # every invoice the workflows issued in this database, collective ones included
        # (other tests store fixtures with numbers of their own, outside RE-YYYY-NNNNNN)
        all_numbers = sorted(int(d.number.rsplit("-", 1)[1]) for d in docs
                             if d.number and re.fullmatch(r"RE-\d{4}-\d{6}", d.number))
        mine = [d for d in docs if d.order_id in order_ids]
    assert len(mine) == len(order_ids)
    assert all_numbers == list(range(all_numbers[0], all_numbers[0] + len(all_numbers)))
