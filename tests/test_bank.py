"""Bank statements (camt.053 .02 and .08): parsing and validation, then the whole import on
the real stack: full payment, partial payment with a sloppy reference, one transfer for two
invoices, an unrelated entry; the same file again (upload and inbox) changes nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.camt import StatementError, parse_statement
from models.orders import OrderView, PaymentStatus
from models.payments import StatementSummary
from models.tables import Payment, Ticket
from settings import Settings
from tests.camt_samples import Entry, Tx, statement
from tests.helpers import FAST, Stack, make_order, running_stack, seed, ship_and_invoice
from workflows.bank import BankInboxWorkflow

STAFF = {"Authorization": "Bearer test-staff"}
LIMIT = 1_000_000


# --- reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["02", "08"])
def test_booked_credits_are_read_debits_and_pending_skipped(version: str) -> None:
    data = statement([
        Entry("233.90", [Tx("233.90", "Anna Berg", ["RE-2026-000002", "Danke"])]),
        Entry("10.00", credit=False),
        Entry("5.00", booked=False),
        Entry("100.00", [Tx("60.00", "Jörg Müller", ["RE-2026-000003"]),
                         Tx("40.00", "Eva Kern", ["RE-2026-000004"])]),
    ], version=version, message_id="STMT-9")

    parsed = parse_statement(data, max_bytes=LIMIT)

    assert (parsed.version, parsed.message_id, parsed.iban) == (version, "STMT-9",
                                                                "DE02120300000000202051")
    assert (parsed.skipped_debits, parsed.skipped_pending) == (1, 1)
    assert [(c.amount, c.payer, c.remittance) for c in parsed.credits] == [
        (Decimal("233.90"), "Anna Berg", ["RE-2026-000002", "Danke"]),
        (Decimal("60.00"), "Jörg Müller", ["RE-2026-000003"]),
        (Decimal("40.00"), "Eva Kern", ["RE-2026-000004"]),
    ]
    assert len({c.credit_id for c in parsed.credits}) == 3


@pytest.mark.parametrize("version", ["02", "08"])
def test_reversals_are_reported_not_paid(version: str) -> None:
    data = statement([
        Entry("49.90", [Tx("49.90", "Demo-Shop", ["Erstattung RE-2026-000042"])],
              reversal=True),  # our refund came back
        Entry("80.00", [Tx("80.00", "Anna Berg", ["RE-2026-000043"])], credit=False,
              reversal=True),  # a customer's payment taken back
        Entry("12.00", [Tx("12.00", "Eva Kern", ["RE-2026-000044"])]),
    ], version=version)

    parsed = parse_statement(data, max_bytes=LIMIT)

    assert [c.amount for c in parsed.credits] == [Decimal("12.00")]
    assert [(r.amount, r.credit, r.remittance) for r in parsed.reversals] == [
        (Decimal("49.90"), True, ["Erstattung RE-2026-000042"]),
        (Decimal("80.00"), False, ["RE-2026-000043"])]
    assert parsed.skipped_debits == 0


@pytest.mark.parametrize("version", ["02", "08"])
def test_transactions_that_do_not_add_up_count_as_the_booked_amount(version: str) -> None:
    data = statement([
        Entry("10.00", [Tx("1000.00", "Anna Berg", ["RE-2026-000001"])]),
        Entry("100.00", [Tx("60.00", "Jörg Müller", ["RE-2026-000003"]),
                         Tx("60.00", "Eva Kern", ["RE-2026-000004"])]),
    ], version=version)

    parsed = parse_statement(data, max_bytes=LIMIT)

    assert [(c.amount, c.payer, c.remittance) for c in parsed.credits] == [
        (Decimal("10.00"), "Anna Berg", ["RE-2026-000001"]),
        (Decimal("100.00"), "", ["RE-2026-000003", "RE-2026-000004"])]


@pytest.mark.parametrize("version", ["02", "08"])
def test_structured_references_are_remittance_lines(version: str) -> None:
    data = statement([Entry("49.90", [Tx("49.90", "Bau AG", ["Sammelzahlung"],
                                         invoice_numbers=["RE-2026-000042"],
                                         creditor_reference="RF18539007547034")])],
                     version=version)

    (credit,) = parse_statement(data, max_bytes=LIMIT).credits

    assert credit.remittance == ["Sammelzahlung", "RE-2026-000042", "RF18539007547034"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.052.001.02'/>",
     "not a camt.053.001.02 or .08"),
    (statement([Entry("1.00")]).replace(b"<CdtDbtInd>CRDT</CdtDbtInd>",
                                        b"<CdtDbtInd>MAYBE</CdtDbtInd>", 1),
     "camt.053 schema"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<Document>&x;</Document>", "DOCTYPE"),
    (b"not xml at all", "XML"),
    (statement([Entry("100.005")]), "amount 100.005 has more than two decimals"),
])
def test_bad_statements_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(StatementError, match=re.escape(reason)):
        parse_statement(data, max_bytes=LIMIT)


# --- the import on the stack ---------------------------------------------------------


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "review_request_after": timedelta(seconds=60), "task_queue": task_queue,
        "api_keys": "test-client:client,test-staff:staff",
        "bank_inbox_dir": tmp_path / "bank" / "inbox"})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s



async def invoiced_order(stack: Stack, price: str) -> OrderView:
    return await ship_and_invoice(stack, make_order(method="invoice", total=None,
                                                    lines=[("TENT-2P", 1, price)]))


def invoice_number(view: OrderView) -> str:
    number = next(d.number for d in view.documents if d.kind == "invoice")
    assert number
    return number


def sloppy(number: str) -> str:
    """RE-2026-000042 -> "re 2026 42" (as customers type it)."""
    prefix, year, sequence = number.split("-")
    return f"{prefix.lower()} {year} {int(sequence)}"


async def wait_paid(stack: Stack, order_id: str, status: PaymentStatus) -> OrderView:
    for _ in range(100):
        view = await stack.view(order_id)
        if view.payment_status == status:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{order_id} never became {status}: {view.payment_status}")


def payments_of(stack: Stack, order_ids: list[str]) -> list[tuple[str, Decimal]]:
    with Session(stack.engine) as session:
        rows = session.exec(select(Payment).where(col(Payment.order_id).in_(order_ids))).all()
    return sorted((row.order_id, row.amount) for row in rows)


async def test_statement_pays_orders_once(api: httpx.AsyncClient, stack: Stack) -> None:
    full, part, first, second = [await invoiced_order(stack, price)
                                 for price in ("229.00", "310.00", "45.10", "54.90")]
    total = first.totals.total + second.totals.total
    data = statement([
        Entry(str(full.totals.total), [Tx(str(full.totals.total), "Anna Berg",
                                          [f"Rechnung {invoice_number(full)}"])]),
        Entry("100.00", [Tx("100.00", "A. Berg", [sloppy(invoice_number(part)), "Rate 1"])]),
        Entry(str(total), [Tx(str(total), "Anna Berg",
                              [f"{invoice_number(first)}, {invoice_number(second)}"])]),
        Entry("12.34", [Tx("12.34", "Verein XY", ["Mitgliedsbeitrag 2026"])]),
        Entry("80.00", [Tx("80.00", "Anna Berg", ["Ruecklastschrift RE-2026-000099"])],
              credit=False, reversal=True),
    ], message_id=f"MSG-{uuid.uuid4().hex[:8]}")

    answer = await api.post("/payments/statements?wait=true", headers=STAFF, content=data)

    assert answer.status_code == 200, answer.text
    summary = StatementSummary.model_validate(answer.json()["summary"])
    assert (summary.credits, summary.matched, summary.partial, summary.tickets) == (4, 2, 1, 2)
    await wait_paid(stack, full.order_id, PaymentStatus.PAID)
    await wait_paid(stack, first.order_id, PaymentStatus.PAID)
    await wait_paid(stack, second.order_id, PaymentStatus.PAID)
    partly = await wait_paid(stack, part.order_id, PaymentStatus.PARTIALLY_PAID)
    assert partly.totals.open == part.totals.total - Decimal("100.00")
    ids = [full.order_id, part.order_id, first.order_id, second.order_id]
    applied = payments_of(stack, ids)
    assert applied == sorted([(full.order_id, full.totals.total),
                              (part.order_id, Decimal("100.00")),
                              (first.order_id, first.totals.total),
                              (second.order_id, second.totals.total)])
    with Session(stack.engine) as session:
        tickets = session.exec(select(Ticket).where(col(Ticket.title).contains("12.34"))).all()
    assert len(tickets) == 1 and "Mitgliedsbeitrag" in tickets[0].body
    with Session(stack.engine) as session:
        reversed_ = session.exec(select(Ticket).where(col(Ticket.body).contains("taken back"),
                                                      col(Ticket.body).contains("000099"))).all()
    assert len(reversed_) == 1
    inbox = stack.settings.bank_inbox_dir
    assert list(inbox.iterdir()) == []
    assert len(list((inbox.parent / "archive").iterdir())) == 1

    again = await api.post("/payments/statements?wait=true", headers=STAFF, content=data)
    assert again.status_code == 200 and again.json()["already_imported"] is True

    (inbox / "kontoauszug-kopie.xml").write_bytes(data)  # the bank sends it once more
    summaries = await stack.client.execute_workflow(
        BankInboxWorkflow.run, id=f"bank-inbox-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue, execution_timeout=timedelta(seconds=60))
    assert [s.outcome for s in summaries] == ["already_imported"]
    assert (inbox.parent / "archive" / "kontoauszug-kopie.xml").exists()
    await asyncio.sleep(0.5)
    assert payments_of(stack, ids) == applied


async def test_inbox_statement_v02_and_rejected_files(api: httpx.AsyncClient,
                                                      stack: Stack) -> None:
    order = await invoiced_order(stack, "88.00")
    inbox = stack.settings.bank_inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    amount = str(order.totals.total)
    (inbox / "auszug-02.xml").write_bytes(statement(
        [Entry(amount, [Tx(amount, "Anna Berg", [invoice_number(order)])])], version="02",
        message_id=f"MSG-{uuid.uuid4().hex[:8]}"))
    (inbox / "kaputt.xml").write_bytes(b"<Document>kein Kontoauszug</Document>")

    summaries = await stack.client.execute_workflow(
        BankInboxWorkflow.run, id=f"bank-inbox-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue, execution_timeout=timedelta(seconds=60))

    outcomes = {s.name: (s.outcome, s.matched) for s in summaries}
    assert outcomes == {"auszug-02.xml": ("archived", 1), "kaputt.xml": ("rejected", 0)}
    await wait_paid(stack, order.order_id, PaymentStatus.PAID)
    assert (inbox.parent / "error" / "kaputt.xml").exists()
    with Session(stack.engine) as session:
        rejected = session.exec(select(Ticket).where(Ticket.kind == "import",
                                                     col(Ticket.title).contains("kaputt"))).all()
    assert len(rejected) == 1
    again = await api.post("/payments/statements", headers=STAFF,  # the same broken file
                           content=b"<Document>kein Kontoauszug</Document>")
    assert again.status_code == 422 and again.json()["detail"]["field"] == "body"

    hostile = await api.post("/payments/statements", headers=STAFF,
                             content=b'<!DOCTYPE x [<!ENTITY e "x">]><Document>&e;</Document>')
    assert hostile.status_code == 422
    assert hostile.json()["detail"]["field"] == "body"
    assert (await api.post("/payments/statements", headers={
        "Authorization": "Bearer test-client"}, content=b"<x/>")).status_code == 403

