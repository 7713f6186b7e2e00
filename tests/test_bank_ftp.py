"""Bank statements from the bank's FTP folder: fetched into the inbox, then archived on the
server; a file fetched twice (a crash before the server-side move) is applied once; a file
too large is moved to the server's error folder with a ticket; a folder that cannot be read
gives a ticket and the local inbox is imported all the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.payments import store_fetched
from models.orders import PaymentStatus
from models.payments import StatementSummary
from models.tables import Ticket
from settings import BankFtp, Settings
from starter.embedded import FtpDrop
from tests.camt_samples import Entry, Tx, statement
from tests.helpers import FAST, Stack, running_stack, seed
from tests.test_bank import invoice_number, invoiced_order, payments_of, wait_paid
from workflows.bank import BankInboxWorkflow

LIMIT = 20_000  # bytes; a statement of one entry has about 2 KB


def test_a_fetched_file_is_written_once_per_content(tmp_path: Path) -> None:
    assert store_fetched(tmp_path, "auszug.xml", b"<a/>") == "auszug.xml"
    assert store_fetched(tmp_path, "auszug.xml", b"<a/>") == "auszug.xml"  # a retry
    assert store_fetched(tmp_path, "auszug.xml", b"<b/>") == "auszug-2.xml"  # another file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auszug-2.xml", "auszug.xml"]
    assert (tmp_path / "auszug-2.xml").read_bytes() == b"<b/>"


def bank_settings(settings: Settings, ftp_drop: FtpDrop, folder: str) -> BankFtp:
    return BankFtp(host=settings.partner.host, port=ftp_drop.port, user=ftp_drop.user,
                   password=ftp_drop.password, folder=folder)


async def stack_with(client: Client, task_queue: str, settings: Settings, bank: BankFtp,
                     tmp_path: Path) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={
        **FAST, "review_request_after": timedelta(seconds=60), "task_queue": task_queue,
        "bank_inbox_dir": tmp_path / "bank" / "inbox", "bank_file_max_bytes": LIMIT,
        "bank_ftp": bank})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings, ftp_drop: FtpDrop,
                tmp_path: Path) -> AsyncIterator[Stack]:
    (ftp_drop.root / "bank").mkdir(parents=True)
    bank = bank_settings(partner_settings, ftp_drop, "/bank")
    async for s in stack_with(client, task_queue, partner_settings, bank, tmp_path):
        yield s


async def run_inbox(stack: Stack) -> list[StatementSummary]:
    return await stack.client.execute_workflow(
        BankInboxWorkflow.run, id=f"bank-inbox-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue, execution_timeout=timedelta(seconds=60))


def import_tickets(stack: Stack, text: str) -> list[Ticket]:
    with Session(stack.engine) as session:
        return list(session.exec(select(Ticket).where(Ticket.kind == "import",
                                                      col(Ticket.title).contains(text))).all())


async def test_statements_are_fetched_from_the_bank_ftp_folder(stack: Stack,
                                                               ftp_drop: FtpDrop) -> None:
    order = await invoiced_order(stack, "120.00")
    amount = str(order.totals.total)
    data = statement([Entry(amount, [Tx(amount, "Anna Berg", [invoice_number(order)])])],
                     message_id=f"MSG-{uuid.uuid4().hex[:8]}")
    folder = ftp_drop.root / "bank"
    (folder / "auszug-ftp.xml").write_bytes(data)
    (folder / "riesig.xml").write_bytes(b"<Document>" + b"x" * LIMIT + b"</Document>")
    (folder / "notiz.txt").write_text("kein Kontoauszug")
    (folder / ".halb.xml").write_bytes(b"<Document>")

    summaries = await run_inbox(stack)

    assert [(s.name, s.outcome, s.matched) for s in summaries] == [
        ("auszug-ftp.xml", "archived", 1)]
    await wait_paid(stack, order.order_id, PaymentStatus.PAID)
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [".halb.xml",
                                                                       "notiz.txt"]
    assert (folder / "archive" / "auszug-ftp.xml").read_bytes() == data
    assert (folder / "error" / "riesig.xml").stat().st_size > LIMIT
    inbox = stack.settings.bank_inbox_dir
    assert (inbox.parent / "archive" / "auszug-ftp.xml").read_bytes() == data
    refused = import_tickets(stack, "riesig.xml")
    assert len(refused) == 1 and "ORDERS_BANK_FILE_MAX_BYTES" in refused[0].body
    applied = payments_of(stack, [order.order_id])
    assert applied == [(order.order_id, order.totals.total)]

    # the server-side move failed after the fetch (or the bank sends the file again)
    (folder / "auszug-ftp.xml").write_bytes(data)
    again = await run_inbox(stack)

    assert [(s.name, s.outcome) for s in again] == [("auszug-ftp.xml", "already_imported")]
    assert len(list((folder / "archive").iterdir())) == 2
    assert not (folder / "auszug-ftp.xml").exists()
    assert payments_of(stack, [order.order_id]) == applied
    assert len(import_tickets(stack, "riesig.xml")) == 1


@pytest.fixture
async def broken_stack(client: Client, task_queue: str, partner_settings: Settings,
                       ftp_drop: FtpDrop, tmp_path: Path) -> AsyncIterator[Stack]:
    bank = bank_settings(partner_settings, ftp_drop, "/gibt-es-nicht")
    async for s in stack_with(client, task_queue, partner_settings, bank, tmp_path):
        yield s


async def test_an_unreadable_bank_folder_is_a_ticket_and_the_inbox_is_read(
        broken_stack: Stack) -> None:
    stack = broken_stack
    order = await invoiced_order(stack, "64.00")
    amount = str(order.totals.total)
    inbox = stack.settings.bank_inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "lokal.xml").write_bytes(statement(
        [Entry(amount, [Tx(amount, "Anna Berg", [invoice_number(order)])])],
        message_id=f"MSG-{uuid.uuid4().hex[:8]}"))

    first = await run_inbox(stack)
    second = await run_inbox(stack)

    assert [(s.name, s.outcome) for s in first] == [("lokal.xml", "archived")]
    assert second == []
    await wait_paid(stack, order.order_id, PaymentStatus.PAID)
    tickets = import_tickets(stack, "could not be fetched")
    assert len(tickets) == 1  # one a day, not one a run
    assert "/gibt-es-nicht" in tickets[0].body
