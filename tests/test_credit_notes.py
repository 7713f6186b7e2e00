"""Credit notes: what a request may credit (pure), issuing against the invoice on SQLite and
PostgreSQL (numbers, Factur-X 381, concurrency), and the whole path through the API, the
workflow, the mail and the order's open amount."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from pypdf import PdfReader
from saxonche import PySaxonProcessor, PyXsltExecutable
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.credit_notes import CreditNoteActivities
from activities.documents import DocumentActivities, get_document
from activities.einvoice import NSMAP, check_xsd, xml_of_pdf
from models.activities import CreditNoteInput, CreditNoteResult, DocumentInput
from models.credit import CreditLineIn, CreditNoteIn, CreditRejected, plan_credit
from models.invoice import compute_invoice
from models.orders import OrderStatus, OrderView, ShipmentLine, ShipmentView
from models.tables import Document, NumberRange, Ticket
from settings import Settings
from tests.helpers import FAST, Stack, make_order, running_stack, seed, ship_and_invoice
from tests.test_documents import make_order as make_view
from tests.test_documents import pdf_text
from tests.test_einvoice import broken_rules, schematron  # noqa: F401 (fixture)

STAFF = {"Authorization": "Bearer test-staff"}
CLIENT = {"Authorization": "Bearer test-client"}


def request(request_id: str = "RMA-1", **fields: Any) -> CreditNoteIn:
    return CreditNoteIn.model_validate({"request_id": request_id, "reason": "Rücksendung",
                                        **fields})


def invoice_view(**kwargs: Any) -> OrderView:
    """1 x TENT-2P 229.00 (19 %), 2 x GAS-1 19.95 (7 %), shipping 4.90: 273.80 gross."""
    return make_view(**kwargs)


# --- planning (pure) ---------------------------------------------------------------


def test_a_returned_line_is_credited_at_the_invoice_price() -> None:
    invoice = invoice_view()
    credit = plan_credit(invoice, [], request(lines=[{"sku": "GAS-1", "quantity": 1}]))
    assert [(ln.sku, ln.quantity, ln.unit_price) for ln in credit.lines] == [
        ("GAS-1", 1, Decimal("19.95"))]
    assert (credit.totals.shipping, credit.totals.total) == (Decimal("0.00"), Decimal("19.95"))


@pytest.mark.parametrize(("fields", "field", "reason"), [
    ({"lines": [{"sku": "NOPE", "quantity": 1}]}, "lines[0].sku", "not on the invoice"),
    ({"lines": [{"sku": "GAS-1", "quantity": 3}]}, "lines[0].quantity", "2 of 2 invoiced"),
    ({"lines": [{"sku": "GAS-1", "quantity": 1}, {"sku": "GAS-1", "quantity": 2}]},
     "lines[1].quantity", "3 x GAS-1 asked"),
    ({"shipping": "5.00"}, "shipping", "4.90 of the invoiced shipping"),
    ({"amount": "10.00", "tax_rate": "16"}, "tax_rate", "16 % is not a rate of the invoice"),
    ({"amount": "500.00"}, "amount", "only 273.80 of the invoice"),
])
def test_requests_that_do_not_fit_are_rejected_naming_the_field(
        fields: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(CreditRejected) as raised:
        plan_credit(invoice_view(), [], request(**fields))
    assert raised.value.field == field
    assert reason in raised.value.reason


def test_earlier_credit_notes_count() -> None:
    invoice = invoice_view()
    first = plan_credit(invoice, [], request(lines=[{"sku": "GAS-1", "quantity": 2}],
                                             shipping="4.90"))
    with pytest.raises(CreditRejected, match="0 of 2 invoiced not yet credited"):
        plan_credit(invoice, [first], request("RMA-2", lines=[{"sku": "GAS-1", "quantity": 1}]))

    rest = plan_credit(invoice, [first], request("STORNO"))  # nothing named: everything left

    assert [(ln.sku, ln.quantity) for ln in rest.lines] == [("TENT-2P", 1)]
    assert rest.totals.shipping == 0
    assert first.totals.total + rest.totals.total == invoice.totals.total
    with pytest.raises(CreditRejected, match="everything on the invoice is credited"):
        plan_credit(invoice, [first, rest], request("AGAIN"))


@pytest.mark.parametrize("customer_type", ["b2c", "b2b"])
def test_credited_shipping_is_split_like_the_invoices(customer_type: str) -> None:
    invoice = invoice_view(customer_type=customer_type)
    charged = compute_invoice(invoice).shipping_parts

    only_shipping = plan_credit(invoice, [], request(shipping="4.90"))
    with_a_line = plan_credit(invoice, [], request(lines=[{"sku": "GAS-1", "quantity": 1}],
                                                   shipping="4.90"))

    for credit in (only_shipping, with_a_line):
        parts = {ln.tax_rate: ln.unit_price for ln in credit.lines if ln.sku == "VERSAND"}
        assert parts == charged and sum(parts.values()) == Decimal("4.90")
    assert compute_invoice(only_shipping).gross == (
        Decimal("4.90") if customer_type == "b2c" else
        sum(a.gross for a in compute_invoice(only_shipping).taxes))
    with pytest.raises(CreditRejected, match=r"0\.00 of the invoiced shipping"):
        plan_credit(invoice, [only_shipping], request("AGAIN", shipping="0.01"))


def test_goodwill_amount_at_a_rate_of_the_invoice() -> None:
    credit = plan_credit(invoice_view(customer_type="b2b"), [],
                         request(amount="10.00", tax_rate="7", reason="Kratzer am Topf"))
    assert [(ln.sku, ln.name, ln.unit_price, ln.tax_rate) for ln in credit.lines] == [
        ("GUTSCHRIFT", "Kratzer am Topf", Decimal("10.00"), Decimal("7"))]
    assert credit.totals.total == Decimal("10.70")  # b2b: net plus 7 %


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="tax_rate only goes with amount"):
        request(tax_rate="19")
    with pytest.raises(ValueError):
        request(amount="-1.00")
    with pytest.raises(ValueError):
        CreditNoteIn(request_id="has space", reason="x", lines=[CreditLineIn(sku="A",
                                                                              quantity=1)])


# --- issuing against the database --------------------------------------------------


@pytest.fixture
def activities(engine: Engine) -> tuple[DocumentActivities, CreditNoteActivities]:
    return DocumentActivities(engine, Settings()), CreditNoteActivities(engine, Settings())


def last_number(engine: Engine, kind: str) -> int:
    with Session(engine) as session:
        row = session.get(NumberRange, (kind, datetime.now(UTC).year))
        return row.last_number if row is not None else 0


def test_credit_note_is_a_factur_x_381_referring_to_the_invoice(
        activities: tuple[DocumentActivities, CreditNoteActivities], engine: Engine,
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:  # noqa: F811
    documents, credits = activities
    order = invoice_view(customer_type="b2b", country="AT", vat_id="ATU13585627")
    invoice = documents.issue_invoice(DocumentInput(order=order))
    before = last_number(engine, "credit_note")

    result = credits.issue_credit_note(CreditNoteInput(
        order_id=order.order_id, request=request(lines=[{"sku": "TENT-2P", "quantity": 1}])))

    assert result.document.number == f"GS-{datetime.now(UTC).year}-{before + 1:06d}"
    assert result.invoice_number == invoice.number
    assert result.total == Decimal("229.00")  # reverse charge: no VAT
    row = get_document(engine, result.document.document_id)
    assert row is not None and row.content is not None
    text = pdf_text(row.content)
    assert f"Rechnungskorrektur (Gutschrift) {result.document.number}" in text
    assert invoice.number in text
    found = xml_of_pdf(row.content)
    assert found is not None
    xml = found[1]
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}
    root = etree.fromstring(xml)
    assert root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NSMAP) == "381"
    assert root.findtext(".//ram:InvoiceReferencedDocument/ram:IssuerAssignedID",
                         namespaces=NSMAP) == invoice.number

    again = credits.issue_credit_note(CreditNoteInput(
        order_id=order.order_id, request=request(lines=[{"sku": "TENT-2P", "quantity": 1}])))
    assert again.document == result.document
    assert last_number(engine, "credit_note") == before + 1


def test_no_invoice_no_credit_note_and_no_number(
        activities: tuple[DocumentActivities, CreditNoteActivities], engine: Engine) -> None:
    _, credits = activities
    before = last_number(engine, "credit_note")
    with pytest.raises(ApplicationError) as raised:
        credits.issue_credit_note(CreditNoteInput(order_id="webshop-never-invoiced",
                                                  request=request()))
    assert (raised.value.type, raised.value.non_retryable) == ("NotInvoiced", True)
    assert last_number(engine, "credit_note") == before


def shipment(order: OrderView, number: int, *lines: tuple[str, int]) -> ShipmentView:
    return ShipmentView(shipment_id=f"{order.order_id}-{number}", warehouse="MAIN",
                        lines=[ShipmentLine(sku=sku, quantity=q) for sku, q in lines])


def credit(credits: CreditNoteActivities, order: OrderView, request_id: str,
           **fields: Any) -> CreditNoteResult:
    return credits.issue_credit_note(CreditNoteInput(order_id=order.order_id,
                                                     request=request(request_id, **fields)))


def rejected(credits: CreditNoteActivities, order: OrderView, **fields: Any) -> str:
    with pytest.raises(ApplicationError) as raised:
        credit(credits, order, "REJECTED", **fields)
    assert raised.value.type == "CreditRejected", raised.value
    return str(raised.value.details[0]["field"])


def test_a_split_order_credits_its_partial_invoices_before_the_final_one(
        activities: tuple[DocumentActivities, CreditNoteActivities], engine: Engine,
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:  # noqa: F811
    """1 x TENT-2P (229.00) shipped first, 2 x GAS-1 (19.95) second, 4.90 shipping."""
    documents, credits = activities
    order = invoice_view()
    first = documents.issue_invoice(DocumentInput(
        order=order, shipment=shipment(order, 1, ("TENT-2P", 1))))

    assert rejected(credits, order, lines=[{"sku": "GAS-1", "quantity": 1}]) == "lines[0].sku"
    tent = credit(credits, order, "R1", lines=[{"sku": "TENT-2P", "quantity": 1}])
    assert (tent.invoice_number, tent.total, tent.invoice_total) == (
        first.number, Decimal("229.00"), Decimal("229.00"))
    row = get_document(engine, tent.document.document_id)
    assert row is not None and row.content is not None and row.refers_to == first.number
    found = xml_of_pdf(row.content)
    assert found is not None and first.number in found[1].decode()

    second = documents.issue_invoice(DocumentInput(
        order=order, shipment=shipment(order, 2, ("GAS-1", 2))))
    assert rejected(credits, order) == "invoice_number"  # two partial, no final invoice
    assert rejected(credits, order, invoice_number="RE-1999-000001") == "invoice_number"
    gas = credit(credits, order, "R2", invoice_number=second.number)
    assert (gas.invoice_number, gas.total) == (second.number, Decimal("39.90"))

    final = documents.issue_invoice(DocumentInput(order=order))  # the shipping only
    assert final.total == Decimal("4.90")
    rest = credit(credits, order, "R3")  # everything left: the final invoice's shipping
    assert (rest.invoice_number, rest.total) == (final.number, Decimal("4.90"))
    assert tent.total + gas.total + rest.total == order.totals.total
    for document_id in (final.document_id, rest.document.document_id):  # shipping only
        stored = get_document(engine, document_id)
        assert stored is not None and stored.content is not None
        found = xml_of_pdf(stored.content)
        assert found is not None and broken_rules(schematron, found[1]) == {}
    assert rejected(credits, order) == "lines"  # nothing left anywhere
    assert rejected(credits, order, invoice_number=first.number) == "lines"


def test_credits_of_the_final_invoice_count_for_the_partial_ones(
        activities: tuple[DocumentActivities, CreditNoteActivities]) -> None:
    documents, credits = activities
    order = invoice_view()
    first = documents.issue_invoice(DocumentInput(
        order=order, shipment=shipment(order, 1, ("TENT-2P", 1))))
    final = documents.issue_invoice(DocumentInput(order=order))  # GAS-1 + shipping
    credit(credits, order, "R1", lines=[{"sku": "TENT-2P", "quantity": 1}],
           invoice_number=final.number)  # named on the final (whole-order) invoice

    field = rejected(credits, order, invoice_number=first.number,
                     lines=[{"sku": "TENT-2P", "quantity": 1}])

    assert field == "lines"  # the one tent is credited already, whichever invoice named it


def test_concurrent_full_credits_credit_once(
        activities: tuple[DocumentActivities, CreditNoteActivities], engine: Engine) -> None:
    """Five different requests to credit everything at once: one wins, four are rejected
    inside the numbering transaction, and no number is burned."""
    documents, credits = activities
    order = invoice_view()
    documents.issue_invoice(DocumentInput(order=order))
    before = last_number(engine, "credit_note")

    def attempt(i: int) -> str:
        try:
            credits.issue_credit_note(CreditNoteInput(order_id=order.order_id,
                                                      request=request(f"STORNO-{i}")))
        except ApplicationError as exc:
            return str(exc.type)
        return "issued"

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = sorted(pool.map(attempt, range(5)))

    assert outcomes == ["CreditRejected"] * 4 + ["issued"]
    assert last_number(engine, "credit_note") == before + 1
    with Session(engine) as session:
        rows = session.exec(select(Document).where(Document.order_id == order.order_id,
                                                   Document.kind == "credit_note")).all()
    assert len(rows) == 1 and rows[0].content is not None


# --- through the API and the workflow ------------------------------------------------


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "review_request_after": timedelta(seconds=60), "task_queue": task_queue,
        "api_keys": "test-client:client,test-staff:staff"})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s



async def wait_for_mail(mail_catcher: Any, to: str, subject: str) -> EmailMessage:
    for _ in range(150):
        found = [m for m in mail_catcher.messages()
                 if to in str(m["To"]) and subject in str(m["Subject"])]
        if found:
            return found[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no mail {subject!r} to {to}")


async def test_return_through_the_api_credits_mails_and_lowers_the_open_amount(
        api: httpx.AsyncClient, stack: Stack, mail_catcher: Any) -> None:
    order = make_order(method="invoice", lines=[("TENT-2P", 1, "229.00"),
                                                ("STOVE-1", 2, "39.90")], total=None)
    await stack.submit(order)
    path = f"/orders/{order.order_id}/credit-notes"
    early = await api.post(path, headers=STAFF, json={"request_id": "RMA-7", "reason": "x"})
    assert early.status_code == 409  # not invoiced yet

    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF, query=False)
    await stack.client.get_workflow_handle(order.order_id).signal(
        "shipment_confirmed", {"carrier": "DHL", "tracking_number": "JJD-CN-1"})
    view = await stack.wait_status(order.order_id, OrderStatus.INVOICED)
    assert view is not None and view.totals.open == Decimal("313.70")

    too_much = await api.post(path, headers=STAFF, json={
        "request_id": "RMA-7", "reason": "Rücksendung",
        "lines": [{"sku": "STOVE-1", "quantity": 3}]})
    assert too_much.status_code == 422
    assert too_much.json()["detail"][0]["loc"] == ["body", "lines[0]", "quantity"]
    assert (await api.post(path, headers=CLIENT, json={})).status_code == 403

    body = {"request_id": "RMA-7", "reason": "Rücksendung: Kocher defekt",
            "lines": [{"sku": "STOVE-1", "quantity": 2}]}
    accepted = await api.post(path, headers=STAFF, json=body)
    assert accepted.status_code == 202, accepted.text
    mail = await wait_for_mail(mail_catcher, str(order.customer.email), "Gutschrift")
    pdf = next(a for a in mail.iter_attachments() if a.get_content_type() == "application/pdf")
    listed = (await api.get(path, headers=CLIENT)).json()
    assert [(n["total"], n["lines"], n["shipping"]) for n in listed] == [
        ("79.80", [{"sku": "STOVE-1", "quantity": 2}], "0.00")]
    assert listed[0]["invoice_number"] == next(
        d.number for d in view.documents if d.kind == "invoice")
    assert listed[0]["number"] in "".join(
        p.extract_text() for p in PdfReader(io.BytesIO(pdf.get_content())).pages)
    assert "Rücksendung: Kocher defekt" in mail.get_body(("plain",)).get_content()

    repeated = await api.post(path, headers=STAFF, json=body)
    assert repeated.status_code == 200  # the same request: no second credit note

    for _ in range(100):
        view = await stack.view(order.order_id)
        if view.totals.credited:
            break
        await asyncio.sleep(0.1)
    assert (view.totals.credited, view.totals.open) == (Decimal("79.80"), Decimal("233.90"))
    await stack.client.get_workflow_handle(order.order_id).signal(
        "payment_received", {"amount": "233.90", "currency": "EUR", "reference": "RE"})
    for _ in range(100):
        view = await stack.view(order.order_id)
        if view.payment_status == "paid":
            break
        await asyncio.sleep(0.1)
    assert (view.payment_status, view.totals.open) == ("paid", Decimal("0.00"))
    with Session(stack.engine) as session:
        tickets = session.exec(select(Ticket).where(Ticket.order_id == order.order_id)).all()
    assert [t.kind for t in tickets] == []  # nothing was paid: nothing to refund
    assert len([m for m in mail_catcher.messages()
                if "Gutschrift" in str(m["Subject"])
                and str(order.customer.email) in str(m["To"])]) == 1


async def test_credit_after_payment_opens_a_refund_ticket(api: httpx.AsyncClient,
                                                          stack: Stack) -> None:
    order = make_order(method="paid")
    await ship_and_invoice(stack, order)

    accepted = await api.post(f"/orders/{order.order_id}/credit-notes", headers=STAFF,
                              json={"request_id": "STORNO", "reason": "Widerruf"})
    assert accepted.status_code == 202, accepted.text
    handle = stack.client.get_workflow_handle(accepted.json()["workflow_id"])
    summary = await asyncio.wait_for(handle.result(), 60)
    assert summary["refund"] == "233.90" and summary["total"] == "233.90"
    with Session(stack.engine) as session:
        tickets = session.exec(select(Ticket).where(Ticket.order_id == order.order_id,
                                                    Ticket.kind == "refund")).all()
    assert len(tickets) == 1 and "refund 233.90 EUR" in tickets[0].title



async def test_a_return_after_temporal_dropped_the_order_still_gets_its_credit_note(
        api: httpx.AsyncClient, stack: Stack) -> None:
    """Temporal keeps a closed workflow only for its retention; the invoice stays in the
    database, and so does the right to a credit note."""
    order = make_order(method="paid")
    await ship_and_invoice(stack, order)
    handle = stack.client.get_workflow_handle(order.order_id)
    await handle.terminate(reason="test: the retention ran out")
    await stack.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(namespace=stack.client.namespace,
                                       workflow_execution=WorkflowExecution(
                                           workflow_id=order.order_id)))
    for _ in range(600):  # the server deletes asynchronously
        try:
            await handle.describe()
        except RPCError:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the workflow was not deleted")

    accepted = await api.post(f"/orders/{order.order_id}/credit-notes", headers=STAFF,
                              json={"request_id": "RMA-LATE", "reason": "Rücksendung"})
    unknown = await api.post("/orders/webshop-gibt-es-nicht/credit-notes", headers=STAFF,
                             json={"request_id": "RMA-1", "reason": "Rücksendung"})

    assert accepted.status_code == 202, accepted.text
    summary = await asyncio.wait_for(
        stack.client.get_workflow_handle(accepted.json()["workflow_id"]).result(), 60)
    assert summary["total"] == "233.90"
    assert unknown.status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"amount": "0"}, "amount"),
    ({"shipping": "-1.00"}, "shipping"),
    ({"tax_rate": "7"}, "tax_rate"),
])
async def test_a_bad_credit_request_names_its_field(api: httpx.AsyncClient, body: dict[str, str],
                                                    field: str) -> None:
    answer = await api.post("/orders/webshop-1/credit-notes", headers=STAFF,
                            json={"request_id": "R1", "reason": "Kulanz", **body})
    assert answer.status_code == 422
    assert [err["loc"][-1] for err in answer.json()["detail"]] == [field]


def test_credited_lines_default_to_the_partial_invoice_that_charged_them(
        activities: tuple[DocumentActivities, CreditNoteActivities]) -> None:
    """After the final invoice, a return of the tent (only on the first, partial invoice)
    refers to that invoice, so the buyer's books see it against the right one; lines the
    final invoice charged, or that span invoices, go to the final invoice as before."""
    documents, credits = activities
    order = invoice_view()
    first = documents.issue_invoice(DocumentInput(
        order=order, shipment=shipment(order, 1, ("TENT-2P", 1))))
    final = documents.issue_invoice(DocumentInput(order=order))  # GAS-1 + shipping

    tent = credit(credits, order, "R1", lines=[{"sku": "TENT-2P", "quantity": 1}])
    gas = credit(credits, order, "R2", lines=[{"sku": "GAS-1", "quantity": 1}])

    assert (tent.invoice_number, tent.total) == (first.number, Decimal("229.00"))
    assert gas.invoice_number == final.number
