"""Bank statement import: the inbox folder, reading statements, the open items to match.

Files arrive in ``ORDERS_BANK_INBOX_DIR`` (the bank's EBICS client or a share writes them
there; ``POST /payments/statements`` saves uploads there too), or are fetched into it from
the bank's FTP folder (``ORDERS_BANK_FTP__*``) at the start of every Schedule run. A
processed file moves to ``archive/`` beside the inbox, a rejected one to ``error/``; each
content is recorded once (``imported_file``, source ``bank``), so the same statement
dropped again is archived without being applied a second time.

The open items are the orders of the last ``ORDERS_PAYMENT_MATCH_DAYS`` that still owe
money, oldest first: the order total minus recorded payments minus credit notes (orders
paid at the channel owe nothing), with their invoice number and the customer's names.
"""

from __future__ import annotations

import ftplib
import hashlib
import json
import logging
import os
import posixpath
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.advice import (
    ensure_folder,
    fetch_file,
    file_names,
    free_name,
    move_file,
    record_import,
    was_imported,
)
from activities.camt import StatementError, parse_statement
from activities.collective import collective_numbers
from activities.export import write_atomically
from activities.partners import PART_SUFFIX, connect, remote_path, remote_size
from activities.settlement import SettlementError, parse_settlement
from activities.tickets import TicketActivities
from models.activities import AdviceFile, OpenTicketInput
from models.orders import OrderView
from models.payments import (
    BankCreditView,
    FetchResult,
    FinishStatementInput,
    MarketplacePaymentInput,
    OpenItemView,
    ReadSettlementResult,
    ReadStatementResult,
    RefusedFile,
    ReversalView,
    SettlementItem,
    StatementFile,
)
from models.tables import (
    Customer,
    CustomerAddress,
    Document,
    OrderRecord,
    Payment,
    utcnow,
)
from settings import BankFtp, Settings

__all__ = ["BANK_SOURCE", "SETTLEMENT_SOURCE", "PaymentActivities", "open_items", "save_upload",
           "settlement_inbox"]

log = logging.getLogger("orders.payments")

BANK_SOURCE = "bank"
SETTLEMENT_SOURCE = "marketplace-settlement"


def settlement_inbox(settings: Settings) -> Path:
    """Where uploaded settlement reports wait (``settlements/`` beside the bank inbox)."""
    return settings.bank_inbox_dir.parent / "settlements" / "inbox"


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-2.suffix`` and so on when that exists."""
    target = folder / name
    counter = 2
    while target.exists():
        target = folder / f"{Path(name).stem}-{counter}{Path(name).suffix}"
        counter += 1
    return target


def save_upload(inbox: Path, content: bytes, suffix: str = ".xml") -> tuple[str, str]:
    """Write an uploaded file into the inbox atomically; ``(name, sha256)``."""
    sha256 = hashlib.sha256(content).hexdigest()
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"upload-{sha256[:16]}{suffix}"
    target = inbox / name
    if not target.exists():
        part = inbox / f".{name}.part"
        part.write_bytes(content)
        os.replace(part, target)
    return name, sha256


def _is_statement_name(name: str) -> bool:
    """A plain ``*.xml`` name that is not a hidden or half-written file."""
    if (not name.lower().endswith(".xml") or name.startswith(".")
            or name.endswith(PART_SUFFIX)):
        return False
    try:
        remote_path("/", name)
    except ApplicationError:  # a name we could not address again: leave it to a human
        log.warning("ignoring unusable file name in the bank's FTP folder: %r", name)
        return False
    return True


def store_fetched(inbox: Path, name: str, content: bytes) -> str:
    """Write a fetched file into the inbox atomically and durably (the server's copy goes
    next); a file of that name with the same content (a retry after a crash) is kept as it
    is. Returns the name in the inbox."""
    existing = inbox / name
    if existing.exists() and existing.read_bytes() == content:
        return name
    return write_atomically(inbox, _free_path(inbox, name).name, content).name


def _delete(ftp: ftplib.FTP, path: str) -> None:
    try:
        ftp.delete(path)
    except ftplib.error_perm:
        if remote_size(ftp, path) is not None:  # still there: a real refusal
            raise


def open_items(engine: Engine, *, days: int) -> list[OpenItemView]:
    """Orders of the last ``days`` that still owe money (see the module doc)."""
    since = utcnow() - timedelta(days=days)
    with Session(engine) as session:
        rows = session.exec(
            select(OrderRecord, Customer, CustomerAddress)
            .join(Customer, col(Customer.id) == OrderRecord.customer_id)
            .join(CustomerAddress, col(CustomerAddress.id) == OrderRecord.billing_address_id)
            .where(OrderRecord.created_at >= since)
            .order_by(col(OrderRecord.created_at), col(OrderRecord.order_id))).all()
        paid: dict[str, Decimal] = dict(session.exec(
            select(Payment.order_id, func.sum(Payment.amount))
            .group_by(col(Payment.order_id))).all())
        documents = session.exec(select(Document.order_id, Document.kind, Document.number,
                                        Document.basis, Document.key)
                                 .where(col(Document.kind).in_(["invoice", "credit_note",
                                                                "dunning"]),
                                        col(Document.content).is_not(None))).all()
        invoices = collective_numbers(session)
    all_numbers: dict[str, list[str]] = defaultdict(list)
    credited: dict[str, Decimal] = defaultdict(Decimal)
    for order_id, kind, number, basis, key in documents:
        if kind == "invoice" and number:
            all_numbers[order_id].append(number)
            if key == "invoice" or order_id not in invoices:
                invoices[order_id] = number  # the final invoice, else a partial one
        elif kind == "credit_note" and basis:
            credited[order_id] += OrderView.model_validate_json(basis).totals.total
        elif kind == "dunning" and basis:  # dunning fees are owed too
            credited[order_id] -= Decimal(json.loads(basis).get("fee", "0"))
    items = []
    for record, customer, billing in rows:
        if json.loads(record.payload).get("payment", {}).get("method") == "paid":
            continue
        owed = record.total - Decimal(paid.get(record.order_id) or 0) - credited[record.order_id]
        if owed <= 0:
            continue
        names = [customer.company, f"{customer.first_name} {customer.last_name}", billing.name,
                 billing.company]
        items.append(OpenItemView(order_id=record.order_id,
                                  invoice_number=invoices.get(record.order_id),
                                  other_numbers=[n for n in all_numbers[record.order_id]
                                                 if n != invoices.get(record.order_id)],
                                  open_amount=owed, currency=record.currency,
                                  cancelled=record.cancelled_at is not None,
                                  customer_name=" ".join(n for n in names if n)))
    return items


class PaymentActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.inbox = settings.bank_inbox_dir

    def _move(self, inbox: Path, input: FinishStatementInput, source: str) -> str:
        """Record the content once and move the file beside ``inbox`` to ``archive/`` or
        ``error/``; returns where it went (already moved by an earlier attempt: its name)."""
        record_import(self.engine, source, input.name, input.sha256, input.outcome,
                      input.detail)
        path = inbox / input.name
        if not path.exists():
            return input.name
        folder = inbox.parent / ("archive" if input.outcome == "archived" else "error")
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_path(folder, input.name)
        os.replace(path, target)
        return str(target)

    @activity.defn
    def fetch_bank_files(self) -> FetchResult:
        """Fetch the statements waiting in the bank's FTP folder into the inbox (nothing when
        ``ORDERS_BANK_FTP__HOST`` is empty).

        Each ``*.xml`` is first written into the inbox, then moved to the server's archive
        folder (or deleted there): a crash between the two fetches it again, and the import
        applies each content once, so a statement is neither lost nor applied twice. A file
        larger than ``ORDERS_BANK_FILE_MAX_BYTES`` is not downloaded but moved to the
        server's error folder with an ``import`` ticket; one whose size changes while it is
        downloaded (still being written) is left for the next run."""
        bank = self.settings.bank_ftp
        result = FetchResult()
        if not bank.enabled:
            return result
        limit = self.settings.bank_file_max_bytes
        self.inbox.mkdir(parents=True, exist_ok=True)
        with connect(bank) as ftp:
            try:
                names = sorted(n for n in file_names(ftp, bank.folder)
                               if _is_statement_name(n))
            except ftplib.error_perm as exc:
                raise ApplicationError(
                    f"cannot list the bank's FTP folder {bank.folder!r} on {bank.host}: {exc}",
                    type="BankFolderMissing", non_retryable=True) from None
            ftp.voidcmd("TYPE I")  # the listing switched to ASCII, where SIZE is refused
            for name in names:
                activity.heartbeat(name)
                path = posixpath.join(bank.folder, name)
                fetched = fetch_file(ftp, path, name, limit=limit)
                if fetched is None:  # taken by another run meanwhile
                    continue
                file, content = fetched
                if content is None:
                    result.refused.append(self._refuse(ftp, bank, path, file, limit))
                    continue
                if remote_size(ftp, path) != len(content):  # still being written
                    log.info("bank FTP: %s changed while it was fetched; next run", name)
                    continue
                local = store_fetched(self.inbox, name, content)
                if bank.archive:
                    folder = posixpath.join(bank.folder, bank.archive)
                    ensure_folder(ftp, folder)
                    move_file(ftp, path, free_name(ftp, folder, file))
                else:
                    _delete(ftp, path)
                log.info("bank FTP: fetched %s (%d bytes) into the inbox as %s", name,
                         file.size, local)
                result.fetched.append(local)
        return result

    def _refuse(self, ftp: ftplib.FTP, bank: BankFtp, path: str, file: AdviceFile,
                limit: int) -> RefusedFile:
        """Move a file too large to take to the server's error folder, with its ticket
        opened first (a later failure of the same run cannot lose it)."""
        folder = posixpath.join(bank.folder, bank.error_dir)
        ensure_folder(ftp, folder)
        target = free_name(ftp, folder, file)
        text = (f"bank statement {file.name} on the bank's FTP folder refused: {file.size} "
                f"bytes, more than ORDERS_BANK_FILE_MAX_BYTES ({limit}); moved to {target}")
        TicketActivities(self.engine).open_ticket(OpenTicketInput(
            order_id=None, key=f"bank-ftp-{file.sha256[:16]}", kind="import",
            title=text[:200], body=text))
        move_file(ftp, path, target)
        log.warning("%s", text)
        return RefusedFile(name=file.name, key=file.sha256, moved_to=target, reason=text)

    @activity.defn
    def list_statement_files(self) -> list[StatementFile]:
        """The statements waiting in the inbox (``*.xml``, oldest first) with their hash."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        paths = sorted((p for p in self.inbox.iterdir()
                        if p.is_file() and p.suffix.lower() == ".xml"
                        and not p.name.startswith(".")),
                       key=lambda p: (p.stat().st_mtime, p.name))
        return [StatementFile(name=p.name, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
                for p in paths]

    @activity.defn
    def read_statement(self, file: StatementFile) -> ReadStatementResult:
        """The booked credits of one inbox file (or why it cannot be read)."""
        path = self.inbox / file.name
        content = path.read_bytes()
        sha256 = hashlib.sha256(content).hexdigest()
        result = ReadStatementResult(name=file.name, sha256=sha256)
        if was_imported(self.engine, BANK_SOURCE, sha256):
            return result.model_copy(update={"already_imported": True})
        try:
            statement = parse_statement(content, max_bytes=self.settings.bank_file_max_bytes)
        except StatementError as exc:
            return result.model_copy(update={"error": str(exc)})
        credits = [BankCreditView(credit_id=c.credit_id, amount=c.amount, currency=c.currency,
                                  booked_on=c.booked_on, payer=c.payer,
                                  remittance=c.remittance)
                   for c in statement.credits]
        log.info("statement %s (%s, camt.053.001.%s): %d credits, %d debits skipped",
                 file.name, statement.message_id, statement.version, len(credits),
                 statement.skipped_debits)
        reversals = [ReversalView(entry_id=r.entry_id, amount=r.amount, currency=r.currency,
                                  credit=r.credit, remittance=r.remittance)
                     for r in statement.reversals]
        return result.model_copy(update={
            "message_id": statement.message_id, "iban": statement.iban, "credits": credits,
            "skipped_debits": statement.skipped_debits,
            "skipped_pending": statement.skipped_pending, "reversals": reversals})

    @activity.defn
    def open_items(self) -> list[OpenItemView]:
        return open_items(self.engine, days=self.settings.payment_match_days)

    @activity.defn
    def finish_statement(self, input: FinishStatementInput) -> str:
        """Record the statement's content once and archive the file (or ``error/``)."""
        return self._move(self.inbox, input, BANK_SOURCE)

    # --- marketplace settlements ------------------------------------------------------

    @activity.defn
    def read_settlement(self, file: StatementFile) -> ReadSettlementResult:
        """What the marketplace paid per order, with our order for each (or why the file
        cannot be read)."""
        content = (settlement_inbox(self.settings) / file.name).read_bytes()
        sha256 = hashlib.sha256(content).hexdigest()
        result = ReadSettlementResult(name=file.name, sha256=sha256)
        if was_imported(self.engine, SETTLEMENT_SOURCE, sha256):
            return result.model_copy(update={"already_imported": True})
        try:
            settlement = parse_settlement(content, max_bytes=self.settings.bank_file_max_bytes)
        except SettlementError as exc:
            return result.model_copy(update={"error": str(exc)})
        ids = [o.order_id for o in settlement.orders]
        with Session(self.engine) as session:
            records = session.exec(select(OrderRecord).where(
                col(OrderRecord.external_id).in_(ids))).all()
        ours = {r.external_id: r for r in sorted(records, key=lambda r: r.created_at)}
        items = []
        for entry in settlement.orders:
            record = ours.get(entry.order_id)
            method = (json.loads(record.payload).get("payment", {}).get("method", "")
                      if record else "")
            items.append(SettlementItem(
                marketplace_order_id=entry.order_id,
                order_id=record.order_id if record else None, payment_method=method,
                order_total=record.total if record else None, paid=entry.paid,
                fees=entry.fees, refunded=entry.refunded))
        return result.model_copy(update={
            "settlement_id": settlement.settlement_id, "currency": settlement.currency,
            "total": settlement.total, "items": items, "other": settlement.other})

    @activity.defn
    def record_marketplace_payment(self, input: MarketplacePaymentInput) -> bool:
        """Record what the marketplace paid for an order it collected the money of (method
        ``paid``: the order counts as paid since intake, so no signal); once per key."""
        with Session(self.engine) as session:
            session.add(Payment(order_id=input.order_id, key=input.key, amount=input.amount,
                                currency=input.currency, reference=input.reference,
                                paid_at=utcnow()))
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

    @activity.defn
    def finish_settlement(self, input: FinishStatementInput) -> str:
        """Record the report's content once and archive the file (or ``error/``)."""
        return self._move(settlement_inbox(self.settings), input, SETTLEMENT_SOURCE)
