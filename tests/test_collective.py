"""Collective invoices (Sammelrechnung) and XRechnung by mail: the figures (pure, EN 16931
schematron), and the whole path on the Temporal stack: orders of a flagged customer wait
after shipping, the monthly workflow issues one numbered invoice over them and mails it once,
the orders are invoiced under its number, and bank matching, credit notes and DATEV see it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from saxonche import PySaxonProcessor, PyXsltExecutable
from sqlmodel import Session
from temporalio.client import WorkflowFailureError

from activities.credit_notes import check_credit_note
from activities.datev import datev_bookings
from activities.documents import shop_date
from activities.einvoice import (
    INVOICE,
    RAM,
    RSM,
    XRECHNUNG,
    EinvoiceDocument,
    Party,
    build_cii,
    check_xsd,
    xml_of_pdf,
)
from activities.masterdata import load_master_data
from activities.payments import open_items
from activities.tickets import list_tickets
from models.billing import (
    CollectivePart,
    collective_figures,
    collective_totals,
    period_bounds,
    period_of,
    previous_period,
)
from models.credit import CreditNoteIn
from models.invoice import compute_invoice
from models.matching import Credit, OpenItem, match_credit
from models.orders import Address, OrderIn, OrderStatus
from models.workflow_io import german_duration
from settings import Settings
from tests.helpers import Stack, order_payload
from tests.test_credit_notes import wait_for_mail
from tests.test_documents import make_order as make_view
from tests.test_documents import pdf_text
from tests.test_einvoice import broken_rules, mixed_lines, schematron  # noqa: F401 (fixture)
from tests.test_order_workflow import stack  # noqa: F401 (fixture: worker, seeded catalog)
from workflows.collective import (
    CollectiveInvoiceInput,
    CollectiveInvoiceSummary,
    CollectiveInvoiceWorkflow,
)

NS = {"rsm": RSM, "ram": RAM}


# --- pure ----------------------------------------------------------------------------------


def test_periods() -> None:
    assert period_of(date(2026, 11, 30)) == "2026-11"
    assert previous_period(date(2026, 1, 1)) == "2025-12"
    assert period_bounds("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))
    assert period_bounds("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))


def test_collective_figures_are_the_sum_of_the_orders_and_pass_en16931(
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:  # noqa: F811
    settings = Settings()
    orders = [make_view(customer_type="b2b"),
              make_view(customer_type="b2b", lines=mixed_lines(), shipping="5.95"),
              make_view(customer_type="b2b", lines=mixed_lines()[1:], shipping="0.00")]
    parts = [CollectivePart(order=o, invoice=compute_invoice(o, settings.tax)) for o in orders]

    totals = collective_totals(parts)
    figures = collective_figures(parts)
    xml = build_cii(EinvoiceDocument(
        number="RE-2026-000100", type_code=INVOICE, issued_on=date(2026, 12, 1),
        delivered_on=date(2026, 11, 30), currency="EUR",
        seller=Party("Demo-Shop", Address(name="Demo-Shop", street="Hauptstraße 1",
                                          postal_code="94032", city="Passau", country="DE"),
                     vat_id="DE136695976"),
        buyer=Party("Bergsport GmbH", orders[0].billing_address), ship_to=orders[0].billing_address,
        figures=figures, order_reference="Sammelrechnung 2026-11", prepaid=Decimal(0),
        due_on=date(2026, 12, 31), iban="DE02120300000000202051"))

    assert sum((t.gross for t in totals), Decimal(0)) == sum(p.invoice.gross for p in parts)
    assert figures.grand_total == sum(p.invoice.gross for p in parts)
    assert {t.rate: t.tax for t in totals} == {
        Decimal(19): sum(a.tax for p in parts for a in p.invoice.taxes if a.rate == 19),
        Decimal(7): sum(a.tax for p in parts for a in p.invoice.taxes if a.rate == 7)}
    assert len(figures.lines) == sum(len(o.lines) for o in orders)
    assert all(f"(Bestellung {o.order_id})" in line.name
               for o in orders[:1] for line in figures.lines[:len(o.lines)])
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}


# --- on the stack --------------------------------------------------------------------------


def customer_order(email: str, *, method: str = "invoice", b2b: bool = True) -> OrderIn:
    payload = order_payload(method=method, email=email, total=None,
                            lines=[("TENT-2P", 1, "192.44"), ("STOVE-1", 1, "33.53")])
    if b2b:
        payload["customer"].update({"type": "b2b", "company": "Bergsport GmbH"})
        payload["billing_address"]["company"] = "Bergsport GmbH"
    return OrderIn.model_validate(payload)


def flag(on: Stack, tmp_path: Path, text: str) -> None:
    path = tmp_path / f"customers-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text, encoding="utf-8")
    load_master_data(on.engine, path)


def ended_period(months_back: int = 2) -> str:
    """A month that has ended, ``months_back`` before the current one (shop time)."""
    day = shop_date(datetime.now(UTC), Settings())
    for _ in range(months_back):
        day = period_bounds(previous_period(day))[0]
    return period_of(day)


def shipped_in(period: str) -> datetime:
    return datetime.combine(period_bounds(period)[0] + timedelta(days=1),
                            datetime.min.time(), UTC) + timedelta(hours=12)


async def ship(on: Stack, order: OrderIn, shipped_at: datetime | None = None) -> None:
    await on.submit(order)
    await on.wait_status(order.order_id, OrderStatus.HANDED_OFF, query=False)
    confirmation = {"carrier": "DHL", "tracking_number": f"JJD{uuid.uuid4().hex[:8]}"}
    if shipped_at is not None:
        confirmation["shipped_at"] = shipped_at.isoformat()
    await on.client.get_workflow_handle(order.order_id).signal("shipment_confirmed",
                                                               confirmation)


async def waiting_for_collective(on: Stack, order_id: str) -> None:
    for _ in range(300):
        view = await on.view(order_id)
        if "collective invoice" in view.waiting_for:
            assert view.status == OrderStatus.SHIPPED
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{order_id} does not wait for the collective invoice: {view}")


async def run_collective(on: Stack, period: str, **options: Any) -> CollectiveInvoiceSummary:
    return await on.client.execute_workflow(
        CollectiveInvoiceWorkflow.run, CollectiveInvoiceInput(period=period, **options),
        id=f"collective-{uuid.uuid4().hex[:8]}", task_queue=on.task_queue)


async def test_collective_invoice_over_a_month(stack: Stack, mail_catcher: Any,  # noqa: F811
                                               tmp_path: Path) -> None:
    email = f"einkauf-{uuid.uuid4().hex[:6]}@bergsport.example"
    flag(stack, tmp_path, f'[[customers]]\nemail = "{email}"\ncollective_invoice = true\n'
                          'payment_term_days = 30\n')
    first, second = customer_order(email), customer_order(email)
    prepaid = customer_order(email, method="paid")  # not on invoice terms: invoiced alone
    period = ended_period()
    for order in (first, second, prepaid):
        await ship(stack, order, shipped_in(period))
    await waiting_for_collective(stack, first.order_id)
    await waiting_for_collective(stack, second.order_id)
    alone = await stack.wait_status(prepaid.order_id, OrderStatus.INVOICED,
                                    OrderStatus.COMPLETED)
    assert alone is not None and alone.documents[-1].kind == "invoice"

    summary = await run_collective(stack, period)
    again = await run_collective(stack, period)

    assert len(summary.invoices) == 1 and summary.orders == 2
    assert again.invoices == [] and again.orders == 0
    number = summary.invoices[0]
    views = [await stack.wait_status(o.order_id, OrderStatus.INVOICED)
             for o in (first, second)]
    shares = []
    for view in views:
        assert view is not None
        invoice = [d for d in view.documents if d.kind == "invoice"]
        assert [d.number for d in invoice] == [number]
        shares.append(invoice[0].total)
        assert view.totals.open == view.totals.total == invoice[0].total
        assert view.waiting_for.endswith(f"due in {german_duration(timedelta(days=30))}")

    mail = await wait_for_mail(mail_catcher, email, f"Sammelrechnung {number}")
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == f"{number}.pdf"
    pdf = attachment.get_content()
    text = pdf_text(pdf)
    assert first.order_id in text and second.order_id in text and number in text
    found = xml_of_pdf(pdf)
    assert found is not None
    root = etree.fromstring(found[1])
    total = sum(shares, Decimal(0))
    assert Decimal(root.findtext(".//ram:GrandTotalAmount", namespaces=NS) or "0") == total
    assert root.findtext(".//ram:DueDateDateTime/*", namespaces=NS)
    assert len([m for m in mail_catcher.messages()
                if "Sammelrechnung" in str(m["Subject"]) and email in str(m["To"])]) == 1

    # bank matching: one transfer naming the number pays both orders
    listed = open_items(stack.engine, days=1)  # oldest first
    items = {i.order_id: i for i in listed}
    assert items[first.order_id].invoice_number == number
    assert items[second.order_id].invoice_number == number
    assert [i.order_id for i in listed].index(first.order_id) < \
        [i.order_id for i in listed].index(second.order_id)
    candidates = [OpenItem(order_id=i.order_id, invoice_number=i.invoice_number,
                           open_amount=i.open_amount, customer_name=i.customer_name)
                  for i in listed]
    result = match_credit(
        Credit(amount=total, payer="Bergsport GmbH", remittance=[number.replace("-", " ")]),
        candidates)
    assert result.outcome == "matched"
    assert sorted(m.order_id for m in result.matches) == sorted([first.order_id,
                                                                 second.order_id])
    short = match_credit(Credit(amount=total - 1, payer="Bergsport GmbH",
                                remittance=[number]), candidates)
    assert short.outcome == "partial"
    assert [(m.order_id, m.amount) for m in short.matches] == [
        (first.order_id, shares[0]), (second.order_id, shares[1] - 1)]

    # credit notes refer to the collective invoice; DATEV books each order under its number
    with Session(stack.engine) as session:
        invoice_row, credit = check_credit_note(
            session, first.order_id, CreditNoteIn(request_id="R1", reason="Rückgabe"),
            stack.settings)
    assert invoice_row.number == number and credit.totals.total == shares[0]
    start, end = period_bounds(period_of(shop_date(datetime.now(UTC), stack.settings)))
    bookings = [b for b in datev_bookings(stack.engine, stack.settings, start, end)
                if b.document == number]
    assert {b.order_id for b in bookings} == {first.order_id, second.order_id}
    assert sum(b.amount for b in bookings) == total

    # an order enlisted after its month's invoice waits for the next month's
    late = customer_order(email)
    await ship(stack, late, shipped_in(period))
    await waiting_for_collective(stack, late.order_id)
    assert (await run_collective(stack, period)).invoices == []
    following = period_of(period_bounds(period)[1] + timedelta(days=1))
    later = await run_collective(stack, following)
    assert later.orders == 1 and later.invoices != [number]
    view = await stack.wait_status(late.order_id, OrderStatus.INVOICED)
    assert view is not None and [d.number for d in view.documents if d.kind == "invoice"] \
        == later.invoices


async def test_a_run_that_could_not_mail_is_finished_by_the_next(
        stack: Stack, mail_catcher: Any, tmp_path: Path) -> None:  # noqa: F811
    email = f"einkauf-{uuid.uuid4().hex[:6]}@huettenbau.example"
    flag(stack, tmp_path, f'[[customers]]\nemail = "{email}"\ncollective_invoice = true\n'
                          'payment_term_days = 0\n')
    order = customer_order(email)
    period = ended_period()
    await ship(stack, order, shipped_in(period))
    await waiting_for_collective(stack, order.order_id)

    mail_catcher.stop()  # SMTP down for longer than the run waits
    try:
        with pytest.raises(WorkflowFailureError) as failure:
            await run_collective(stack, period, customer_timeout=timedelta(seconds=3))
    finally:
        mail_catcher.start()
    assert "orders collective-invoices --period" in causes(failure.value)
    tickets = [t for t in list_tickets(stack.engine, status="open")
               if t["title"].startswith(f"collective invoices of {period} failed")]
    assert len(tickets) == 1 and "customer #" in tickets[0]["title"]

    resumed = await run_collective(stack, period)
    again = await run_collective(stack, period)

    assert resumed.invoices == [] and len(resumed.resumed) == 1 and resumed.orders == 1
    assert (again.invoices, again.resumed, again.orders) == ([], [], 0)
    number = resumed.resumed[0]
    view = await stack.wait_status(order.order_id, OrderStatus.INVOICED)
    assert view is not None
    assert [d.number for d in view.documents if d.kind == "invoice"] == [number]
    assert not any("ignored" in e.text for e in view.timeline)  # the second signal is quiet
    mail = await wait_for_mail(mail_catcher, email, f"Sammelrechnung {number}")
    text = pdf_text(next(mail.iter_attachments()).get_content())
    assert "sofort fällig" in text  # payment_term_days = 0: due at once, not the default
    assert len([m for m in mail_catcher.messages()
                if f"Sammelrechnung {number}" in str(m["Subject"])]) == 1


async def test_a_month_that_has_not_ended_is_refused(stack: Stack) -> None:  # noqa: F811
    current = period_of(shop_date(datetime.now(UTC), stack.settings))
    with pytest.raises(WorkflowFailureError) as failure:
        await run_collective(stack, current)
    assert "has not ended yet" in causes(failure.value)


def causes(error: BaseException) -> str:
    """The messages of an error and everything that caused it."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts.append(str(current))
        current = current.__cause__ or getattr(current, "cause", None)
    return " / ".join(texts)


async def test_xrechnung_customers_get_the_xml_by_mail(
        stack: Stack, mail_catcher: Any, tmp_path: Path) -> None:  # noqa: F811
    email = f"rechnung-{uuid.uuid4().hex[:6]}@stadtwerke.example"
    flag(stack, tmp_path, f'[[customers]]\nemail = "{email}"\neinvoice = "xrechnung"\n'
                          'buyer_reference = "04011000-12345-34"\n')
    order = customer_order(email)

    await ship(stack, order)
    view = await stack.wait_status(order.order_id, OrderStatus.INVOICED)

    assert view is not None
    (invoice,) = [d for d in view.documents if d.kind == "invoice"]
    assert invoice.einvoice_id is not None
    mail = await wait_for_mail(mail_catcher, email, f"Rechnung {invoice.number}")
    (attachment,) = list(mail.iter_attachments())
    assert (attachment.get_content_type(), attachment.get_filename()) == (
        "application/xml", f"{invoice.number}.xml")
    xml = attachment.get_content()
    xml = xml if isinstance(xml, bytes) else xml.encode()
    check_xsd(xml)
    root = etree.fromstring(xml)
    assert root.findtext(".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID",
                         namespaces=NS) == XRECHNUNG
    assert root.findtext(".//ram:BuyerReference", namespaces=NS) == "04011000-12345-34"
    assert "XRechnung" in mail.get_body(("plain",)).get_content()
