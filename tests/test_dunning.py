"""Dunning of unpaid invoices on the real stack, with durations in seconds: reminder, two
dunning letters with fees, a collection ticket, and the early stop when the money arrives."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlmodel import Session, select
from temporalio.client import Client

from models.credit import CreditNoteIn
from models.orders import PaymentStatus
from models.tables import Document, Ticket
from models.workflow_io import DunningConfig, DunningLevel
from settings import Settings
from tests.helpers import FAST, Stack, make_order, running_stack, seed, ship_and_invoice
from workflows.credit import CreditNoteWorkflow, CreditNoteWorkflowInput


def levels(*afters: int) -> list[DunningLevel]:
    names = [("reminder", "Zahlungserinnerung", "0.00", False),
             ("dunning_1", "1. Mahnung", "5.00", True),
             ("dunning_2", "2. Mahnung", "10.00", True)]
    return [DunningLevel(name=n, title=t, after=timedelta(seconds=a), fee=Decimal(f), letter=le)
            for (n, t, f, le), a in zip(names, afters, strict=False)]


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    dunning: DunningConfig = request.param
    # Activities get a minute (as by default): on a loaded machine a PDF letter may wait for
    # the renderer longer than FAST's 10 s, and a retried step must not blur the sequence.
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "invoice_payment_term": timedelta(seconds=1),
        "dunning": dunning, "activity_timeout": timedelta(seconds=60)})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


def mails(mail_catcher: Any, to: str) -> list[EmailMessage]:
    return [m for m in mail_catcher.messages() if to in str(m["To"])]


async def mail_with(mail_catcher: Any, to: str, subject: str) -> None:
    """Wait (up to 30 s) for a mail to ``to`` whose subject contains ``subject``."""
    for _ in range(300):
        if any(subject in str(m["Subject"]) for m in mails(mail_catcher, to)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail {subject!r} to {to}")


async def invoiced(stack: Stack) -> tuple[str, str, Decimal]:
    order = make_order(method="invoice", email=f"kunde-{uuid.uuid4().hex[:6]}@example.de")
    view = await ship_and_invoice(stack, order)
    return order.order_id, str(order.customer.email), view.totals.total


@pytest.mark.parametrize("stack", [DunningConfig(levels=levels(1, 2, 3),
                                                 collection_after=timedelta(seconds=4),
                                                 deadline=timedelta(days=7))],
                         indirect=True)
async def test_unpaid_invoice_is_dunned_then_handed_to_collection(
        stack: Stack, mail_catcher: Any) -> None:
    order_id, email, total = await invoiced(stack)

    ticket = None
    for _ in range(300):
        with Session(stack.engine) as session:
            ticket = session.exec(select(Ticket).where(Ticket.order_id == order_id,
                                                       Ticket.kind == "collection")).first()
        if ticket:
            break
        await asyncio.sleep(0.1)
    assert ticket is not None, "no collection ticket"

    for _ in range(100):  # the ticket is stored before the workflow notes it
        view = await stack.view(order_id)
        if "collection" in [e.kind for e in view.timeline]:
            break
        await asyncio.sleep(0.1)
    assert view.totals.fees == Decimal("15.00")
    assert view.totals.open == total + Decimal("15.00")
    assert "collection" in [e.kind for e in view.timeline]
    subjects = [str(m["Subject"]) for m in mails(mail_catcher, email)]
    dunning = [s for s in subjects if "Zahlungserinnerung" in s or "Mahnung" in s]
    assert [s.split(" zur ")[0] for s in dunning] == ["Zahlungserinnerung", "1. Mahnung",
                                                      "2. Mahnung"]
    second = next(m for m in mails(mail_catcher, email) if "2. Mahnung" in str(m["Subject"]))
    pdf = next(a for a in second.iter_attachments()
               if a.get_content_type() == "application/pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.get_content())).pages)
    invoice = next(d.number for d in view.documents if d.kind == "invoice")
    assert "2. Mahnung" in text and invoice and invoice in text
    assert "15,00" in text  # the fees so far
    reminder = next(m for m in mails(mail_catcher, email)
                    if "Zahlungserinnerung" in str(m["Subject"]))
    assert not list(reminder.iter_attachments())  # the reminder is a mail only

    await stack.client.get_workflow_handle(order_id).signal(
        "payment_received", {"amount": str(total + Decimal("15.00")), "currency": "EUR",
                             "reference": invoice})
    assert await stack.result(order_id) == "completed"
    assert (await stack.view(order_id)).payment_status == PaymentStatus.PAID


@pytest.mark.parametrize("stack", [DunningConfig(levels=levels(1, 60, 90),
                                                 collection_after=timedelta(seconds=120))],
                         indirect=True)
async def test_payment_stops_the_dunning(stack: Stack, mail_catcher: Any) -> None:
    order_id, email, total = await invoiced(stack)
    await mail_with(mail_catcher, email, "Zahlungserinnerung")

    await stack.client.get_workflow_handle(order_id).signal(
        "payment_received", {"amount": str(total), "currency": "EUR", "reference": "RE"})

    assert await stack.result(order_id) == "completed"
    assert not any("Mahnung" in str(m["Subject"]) for m in mails(mail_catcher, email))
    with Session(stack.engine) as session:
        letters = session.exec(select(Document).where(Document.order_id == order_id,
                                                      Document.kind == "dunning")).all()
    assert letters == []
    assert (await stack.view(order_id)).totals.fees == 0


@pytest.mark.parametrize("stack", [DunningConfig(levels=levels(1, 3, 60),
                                                 collection_after=timedelta(seconds=120))],
                         indirect=True)
async def test_a_payment_still_being_recorded_stops_the_next_step(
        stack: Stack, mail_catcher: Any) -> None:
    """The money arrives just before the 1. Mahnung is due, but the database is busy, so
    recording it takes longer than the Mahnung's timer: no Mahnung, no fee."""
    order_id, email, total = await invoiced(stack)
    await mail_with(mail_catcher, email, "Zahlungserinnerung")

    path = stack.settings.database_url.removeprefix("sqlite:///")
    busy = sqlite3.connect(path, timeout=30)
    try:
        busy.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        await stack.client.get_workflow_handle(order_id).signal(
            "payment_received", {"amount": str(total), "currency": "EUR", "reference": "RE"})
        await asyncio.sleep(4)  # the 1. Mahnung's timer runs out meanwhile
    finally:
        busy.rollback()
        busy.close()

    assert await stack.result(order_id) == "completed"
    view = await stack.view(order_id)
    assert (view.payment_status, view.totals.fees) == (PaymentStatus.PAID, 0)
    assert not any("Mahnung" in str(m["Subject"]) for m in mails(mail_catcher, email))


@pytest.mark.parametrize("stack", [DunningConfig(levels=levels(1, 2, 60),
                                                 collection_after=timedelta(seconds=120))],
                         indirect=True)
async def test_an_invoice_credited_in_full_is_not_dunned_for_its_fees(
        stack: Stack, mail_catcher: Any) -> None:
    order_id, email, _ = await invoiced(stack)
    await mail_with(mail_catcher, email, "1. Mahnung")

    await stack.client.execute_workflow(
        CreditNoteWorkflow.run, CreditNoteWorkflowInput(order_id=order_id, request=CreditNoteIn(
            request_id="storno", reason="Rücknahme")),
        id=f"{order_id}-credit-storno", task_queue=stack.task_queue)

    assert await stack.result(order_id) == "completed"
    view = await stack.view(order_id)
    assert view.totals.fees == Decimal("5.00")  # still shown, no longer chased
    assert not any("2. Mahnung" in str(m["Subject"]) for m in mails(mail_catcher, email))


def test_a_fee_needs_a_letter() -> None:
    with pytest.raises(ValueError, match="a fee needs letter = true"):
        DunningLevel(name="x", title="Mahnung", after=timedelta(days=1), fee=Decimal("2.50"))


def test_levels_must_come_in_order() -> None:
    with pytest.raises(ValueError, match="in order"):
        DunningConfig(levels=levels(5, 2))
    with pytest.raises(ValueError, match="collection_after must come after"):
        DunningConfig(levels=levels(1, 2), collection_after=timedelta(seconds=2))
    assert Settings(dunning={"levels": [{"name": "x", "title": "Erinnerung", "after": "3d"}],
                             "collection_after": "30d"}).dunning.levels[0].after \
        == timedelta(days=3)
