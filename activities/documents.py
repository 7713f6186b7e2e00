"""Documents: delivery note and invoice (PDF), openTRANS ORDER (XML), stored in the database.

Every document row is keyed by ``(order_id, key)``: a retried activity finds the row it
stored before and returns it, without rendering again or burning a second number.

Numbered documents (invoice, delivery note, credit note) are gapless per type and year, in
two short steps so that no lock is held while a PDF renders:

1. *reserve*: one transaction takes the next number from ``number_range`` (row lock) and
   inserts the document row with its number and issue time but no content yet;
2. *fill*: the PDF is rendered outside any transaction from what the row says, then stored
   with ``UPDATE ... WHERE content IS NULL`` (an issued document is never overwritten).

A crash or a failed render between the two leaves a reserved row; the retry of the same
activity finds it and renders with the same number and date. So a number is never skipped
and never given twice, and a concurrent duplicate call ends on the same row.

The activity methods are sync on purpose (CPU-bound rendering, sync database sessions):
the worker runs them in its ``activity_executor`` thread pool.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity

from activities.einvoice import INVOICE, build_cii, embed, order_einvoice
from activities.opentrans import build_order_xml
from activities.render import PdfRenderer
from models.activities import DocumentInput
from models.invoice import Invoice, InvoiceLine, compute_invoice
from models.orders import DocumentView, OrderView, ShipmentView, shipment_lines
from models.tables import Document, NumberRange
from settings import Settings

__all__ = [
    "DocumentActivities",
    "Invoice",
    "InvoiceLine",
    "compute_invoice",
    "get_document",
    "next_number",
]

log = logging.getLogger("orders.documents")

PDF = "application/pdf"
XML = "application/xml"
CSV = "text/csv"
_MAX_DOCUMENT_ID = 160  # column widths in models.tables.Document
_MAX_KEY = 100


def get_document(engine: Engine, document_id: str) -> Document | None:
    """The stored document (bytes, media type, filename) for the API, or None (also while
    a numbered document is reserved but not yet rendered)."""
    with Session(engine) as session:
        row = session.get(Document, document_id)
        return row if row is not None and row.content is not None else None


def next_number(session: Session, *, kind: str, year: int) -> int:
    """Take the next number of ``(kind, year)`` inside the caller's transaction.

    The row is created if missing (safe under concurrency on SQLite and PostgreSQL), then
    incremented with ``UPDATE ... RETURNING``, which holds the row lock on PostgreSQL until
    the caller commits or rolls back (SQLite: the engine's BEGIN IMMEDIATE). A rollback
    returns the number, so the range stays gapless."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(
        session.get_bind().dialect.name)
    if insert is None:
        raise RuntimeError(f"number ranges need SQLite or PostgreSQL, not "
                           f"{session.get_bind().dialect.name}")
    session.exec(insert(NumberRange).values(kind=kind, year=year, last_number=0)
                 .on_conflict_do_nothing(index_elements=["kind", "year"]))
    bump = (update(NumberRange)
            .where(col(NumberRange.kind) == kind, col(NumberRange.year) == year)
            .values(last_number=col(NumberRange.last_number) + 1)
            .returning(col(NumberRange.last_number))
            .execution_options(synchronize_session=False))
    return int(session.exec(bump).scalar_one())


def _find(session: Session, order_id: str, key: str) -> Document | None:
    return session.exec(select(Document).where(Document.order_id == order_id,
                                               Document.key == key)).first()


def _view(row: Document) -> DocumentView:
    return DocumentView(document_id=row.document_id, kind=row.kind, number=row.number,
                        filename=row.filename)


# --- identities ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Which document row an activity call produces."""

    order_id: str
    key: str
    kind: str
    document_id: str
    media_type: str


@dataclass(frozen=True)
class _Rendered:
    content: bytes
    filename: str


CSV_COLUMNS = ("order_id", "shipment_id", "position", "sku", "name", "quantity",
               "delivery_name", "delivery_company", "street", "postal_code", "city", "country",
               "phone", "shipping_method", "carrier", "packer_note", "gift_message")


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (=, +, -, @, tab, CR)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def build_order_csv(order: OrderView, shipment: ShipmentView | None) -> bytes:
    """One row per line of the shipment; UTF-8 with BOM, ``;``, a header row."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    address = order.shipping_address
    for position, line in enumerate(shipment_lines(order, shipment), start=1):
        writer.writerow([_cell(v) for v in (
            order.order_id, shipment.shipment_id if shipment else "", position, line.sku,
            line.name, line.quantity, address.name, address.company, address.street,
            address.postal_code, address.city, address.country, order.customer.phone,
            order.shipping_method, shipment.carrier if shipment else "", order.packer_note,
            order.gift_message)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _bounded(text: str, limit: int) -> str:
    """``text`` if it fits the column, else a readable prefix plus a digest of the whole."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 17]}~{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _shipment_target(order_id: str, shipment: ShipmentView | None, kind: str,
                     media_type: str) -> _Target:
    if shipment is None:
        return _Target(order_id, kind, kind, f"{order_id}-{kind}", media_type)
    sid = shipment.shipment_id
    return _Target(order_id, _bounded(f"{kind}:{sid}", _MAX_KEY), kind,
                   _bounded(f"{order_id}-{kind}-{sid}", _MAX_DOCUMENT_ID), media_type)


def _file_stem(order_id: str, shipment: ShipmentView | None) -> str:
    """``{order_id}-{shipment_id}``, naming the order only once if the shipment id has it."""
    if shipment is None:
        return order_id
    sid = shipment.shipment_id
    return sid if sid.startswith(f"{order_id}-") else f"{order_id}-{sid}"


# --- template contexts ---------------------------------------------------------------


def _shop(settings: Settings) -> dict[str, str]:
    return {"name": settings.shop_name, "address": settings.shop_address,
            "bank_account_holder": settings.bank_account_holder,
            "bank_iban": settings.bank_iban, "bank_bic": settings.bank_bic}


def _delivery_date(order: OrderView, fallback: datetime) -> datetime:
    shipped = [s.shipped_at for s in order.shipments if s.shipped_at is not None]
    return max(shipped, default=fallback)


# --- activities ----------------------------------------------------------------------


class DocumentActivities:
    """Renders and stores the documents of an order (PDF and openTRANS XML)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.renderer = PdfRenderer(settings.templates_dir / "documents")

    @activity.defn
    def create_delivery_note(self, input: DocumentInput) -> DocumentView:
        """The German delivery note (Lieferschein) of a shipment, without prices, with the
        next gapless delivery-note number of the year."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "delivery_note", PDF)

        def render(number: str, issued_at: datetime) -> bytes:
            context = {"shop": _shop(self.settings), "order": order, "shipment": shipment,
                       "lines": shipment_lines(order, shipment), "number": number,
                       "date": issued_at}
            return self.renderer.render_pdf("lieferschein.html", context)

        return self._issue_numbered(
            target, self.settings.delivery_note_number_format,
            lambda _number: f"{_file_stem(order.order_id, shipment)}-lieferschein.pdf", render)

    @activity.defn
    def create_order_xml(self, input: DocumentInput) -> DocumentView:
        """The openTRANS 2.1 ORDER for the fulfillment partner (validated against the XSD)."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "order_xml", XML)

        def build() -> _Rendered:
            content = build_order_xml(order, shipment, supplier_name=self.settings.shop_name)
            return _Rendered(content, f"{_file_stem(order.order_id, shipment)}.xml")

        return self._create_once(target, build)

    @activity.defn
    def create_order_csv(self, input: DocumentInput) -> DocumentView:
        """The shipment as CSV for partners that take the ``csv`` format (no prices)."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "order_csv", CSV)

        def build() -> _Rendered:
            return _Rendered(build_order_csv(order, shipment),
                             f"{_file_stem(order.order_id, shipment)}.csv")

        return self._create_once(target, build)

    @activity.defn
    def issue_invoice(self, input: DocumentInput) -> DocumentView:
        """The German invoice (Rechnung) with the next gapless number of the year."""
        order = input.order
        target = _Target(order.order_id, "invoice", "invoice", f"{order.order_id}-invoice", PDF)

        def render(number: str, issued_at: datetime) -> bytes:
            context = self._invoice_context(order, number, issued_at)
            if not self.settings.einvoice:
                return self.renderer.render_pdf("rechnung.html", context)
            pdf = self.renderer.render_pdf("rechnung.html", context, pdf_variant="pdf/a-3b")
            xml = build_cii(order_einvoice(
                order, context["invoice"], number=number, type_code=INVOICE,
                issued_on=context["issued_on"], delivered_on=context["delivery_date"].date(),
                due_on=context["due_date"], settings=self.settings))
            return embed(pdf, xml, title=f"Rechnung {number}", author=self.settings.shop_name,
                         subject=f"Rechnung {number} zur Bestellung {order.order_id}")

        return self._issue_numbered(target, self.settings.invoice_number_format,
                                    lambda number: f"{number}.pdf", render)

    def _invoice_context(self, order: OrderView, number: str,
                         issued_at: datetime) -> dict[str, Any]:
        issued_on = issued_at.astimezone(ZoneInfo(self.settings.shop_timezone)).date()
        days = self.settings.invoice_payment_days
        return {"shop": _shop(self.settings), "order": order, "number": number,
                "date": issued_at, "issued_on": issued_on,
                "delivery_date": _delivery_date(order, issued_at),
                "payment_days": days, "due_date": issued_on + timedelta(days=days),
                "invoice": compute_invoice(order, self.settings.tax),
                "currency": order.currency}

    def _create_once(self, target: _Target,
                     produce: Callable[[], _Rendered]) -> DocumentView:
        """Return the stored row for ``target``, or produce and insert it in one transaction
        (unnumbered documents); if a concurrent call stored the same document first, ours is
        rolled back and theirs returned."""
        if (found := self._existing(target)) is not None:
            return found
        try:
            rendered = produce()
            with Session(self.engine) as session:
                row = Document(
                    document_id=target.document_id, order_id=target.order_id, key=target.key,
                    kind=target.kind, filename=rendered.filename,
                    media_type=target.media_type, content=rendered.content,
                    sha256=hashlib.sha256(rendered.content).hexdigest())
                view = _view(row)
                session.add(row)
                session.commit()
                return view
        except IntegrityError:
            if (found := self._existing(target)) is None:
                raise
            log.info("document %s was stored concurrently; returning that one",
                     target.document_id)
            return found

    def _issue_numbered(self, target: _Target, number_format: str,
                        filename: Callable[[str], str],
                        render: Callable[[str, datetime], bytes]) -> DocumentView:
        """Reserve the next number of ``target.kind`` with the document row (short
        transaction), render outside it, then fill the row once (see the module doc)."""
        row = self._reserve(target, number_format, filename)
        if row.content is not None:
            return _view(row)
        assert row.number is not None and row.issued_at is not None
        content = render(row.number, row.issued_at)
        digest = hashlib.sha256(content).hexdigest()
        with Session(self.engine) as session:
            session.exec(update(Document)
                         .where(col(Document.document_id) == row.document_id,
                                col(Document.content).is_(None))
                         .values(content=content, sha256=digest)
                         .execution_options(synchronize_session=False))
            session.commit()
        log.info("issued %s %s for order %s", target.kind, row.number, target.order_id)
        return _view(row)

    def _reserve(self, target: _Target, number_format: str,
                 filename: Callable[[str], str]) -> Document:
        """The row of ``target``: the one a previous attempt reserved or filled, or a new one
        with the next number (taken and inserted in one transaction, so a failure or a
        concurrent duplicate gives the number back)."""
        with Session(self.engine, expire_on_commit=False) as session:
            if (row := _find(session, target.order_id, target.key)) is not None:
                return row
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                issued_at = datetime.now(UTC)
                sequence = next_number(session, kind=target.kind, year=issued_at.year)
                number = number_format.format(year=issued_at.year, number=sequence)
                row = Document(
                    document_id=target.document_id, order_id=target.order_id, key=target.key,
                    kind=target.kind, number=number, filename=filename(number),
                    media_type=target.media_type, issued_at=issued_at)
                session.add(row)
                session.commit()
                return row
        except IntegrityError:
            with Session(self.engine, expire_on_commit=False) as session:
                if (row := _find(session, target.order_id, target.key)) is None:
                    raise
                log.info("%s was reserved concurrently; using that one", target.document_id)
                return row

    def _existing(self, target: _Target) -> DocumentView | None:
        with Session(self.engine) as session:
            row = _find(session, target.order_id, target.key)
            return _view(row) if row is not None else None
