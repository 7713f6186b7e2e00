"""Documents: delivery note and invoice (PDF), openTRANS ORDER (XML), stored in the database.

Storage is ``activities.docstore``: every document exactly once per ``(order_id, key)``;
numbered documents (delivery note, invoice) take a gapless number in a short transaction
and are rendered afterwards, outside it.

The activity methods are sync on purpose (CPU-bound rendering, sync database sessions):
the worker runs them in its ``activity_executor`` thread pool.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from activities.docstore import (
    MAX_DOCUMENT_ID,
    MAX_KEY,
    DocumentStore,
    Planned,
    Rendered,
    Reserved,
    Target,
    bounded,
    next_number,
    tax_of,
)
from activities.einvoice import (
    INVOICE,
    EinvoiceDocument,
    build_cii,
    check_xsd,
    einvoice_format,
    embed,
    order_einvoice,
)
from activities.opentrans import build_order_xml
from activities.render import PdfRenderer
from models.activities import DocumentInput, DunningInput, DunningNotice
from models.invoice import Invoice, InvoiceLine, compute_invoice
from models.orders import DocumentView, OrderView, ShipmentView, shipment_lines
from models.tables import Document
from models.tax import TaxConfig
from settings import Settings

__all__ = [
    "DocumentActivities",
    "DocumentMaker",
    "Invoice",
    "InvoiceLine",
    "compute_invoice",
    "delivery_date",
    "get_document",
    "invoice_of",
    "next_number",
    "partial_invoice_rows",
    "partial_invoices",
    "shop_context",
    "shop_date",
    "xrechnung_target",
]

PDF = "application/pdf"
XML = "application/xml"
CSV = "text/csv"


def partial_invoice_rows(session: Session, order_id: str) -> list[Document]:
    """The order's issued partial invoices (one per shipment, issued before the final one),
    oldest first."""
    rows = session.exec(select(Document).where(
        Document.order_id == order_id, Document.kind == "invoice",
        col(Document.key).startswith("invoice:"), col(Document.content).is_not(None))
        .order_by(col(Document.issued_at))).all()
    return [row for row in rows if row.basis is not None]


def partial_invoices(session: Session, order_id: str) -> list[tuple[str, OrderView]]:
    """The order's partial invoices as ``(number, basis)``, oldest first."""
    return [(row.number or "", OrderView.model_validate_json(row.basis or ""))
            for row in partial_invoice_rows(session, order_id)]


def invoice_of(session: Session, row: Document, tax: TaxConfig) -> Invoice:
    """What an issued invoice row charged (a final invoice net of the partial ones), under
    the tax rules it was issued with (``tax`` for rows from before they were kept)."""
    assert row.basis is not None
    basis = OrderView.model_validate_json(row.basis)
    earlier = partial_invoices(session, row.order_id) if row.key == "invoice" else []
    return compute_invoice(basis, tax_of(row.tax, tax), earlier=[view for _, view in earlier])


def get_document(engine: Engine, document_id: str) -> Document | None:
    """The stored document (bytes, media type, filename) for the API, or None (also while
    a numbered document is reserved but not yet rendered)."""
    with Session(engine) as session:
        row = session.get(Document, document_id)
        return row if row is not None and row.content is not None else None


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


def _shipment_target(order_id: str, shipment: ShipmentView | None, kind: str,
                     media_type: str) -> Target:
    if shipment is None:
        return Target(order_id, kind, kind, f"{order_id}-{kind}", media_type)
    sid = shipment.shipment_id
    return Target(order_id, bounded(f"{kind}:{sid}", MAX_KEY), kind,
                  bounded(f"{order_id}-{kind}-{sid}", MAX_DOCUMENT_ID), media_type)


def _file_stem(order_id: str, shipment: ShipmentView | None) -> str:
    """``{order_id}-{shipment_id}``, naming the order only once if the shipment id has it."""
    if shipment is None:
        return order_id
    sid = shipment.shipment_id
    return sid if sid.startswith(f"{order_id}-") else f"{order_id}-{sid}"


# --- template contexts ---------------------------------------------------------------


def shop_context(settings: Settings) -> dict[str, str]:
    return {"name": settings.shop_name, "address": settings.shop_address,
            "bank_account_holder": settings.bank_account_holder,
            "bank_iban": settings.bank_iban, "bank_bic": settings.bank_bic}


def delivery_date(order: OrderView, fallback: datetime) -> datetime:
    shipped = [s.shipped_at for s in order.shipments if s.shipped_at is not None]
    return max(shipped, default=fallback)


def shop_date(moment: datetime, settings: Settings) -> date:
    """The calendar day of ``moment`` in the shop's time zone (document dates); a moment
    without a time zone is UTC, as the database keeps them."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(settings.shop_timezone)).date()


# --- activities ----------------------------------------------------------------------


class DocumentMaker:
    """What the document activities share: the store, the PDF renderer, e-invoice output."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.renderer = PdfRenderer(settings.templates_dir / "documents",
                                    settings.shop_timezone)
        self.store = DocumentStore(engine, settings.shop_timezone)

    def render_einvoice(self, template: str, context: dict[str, Any],
                        einvoice: Callable[[bool], EinvoiceDocument], *, title: str,
                        subject: str, xrechnung: Target | None = None) -> bytes:
        """The PDF of ``template``; with ``ORDERS_EINVOICE`` a PDF/A-3b carrying the CII XML
        of ``einvoice(False)`` (Factur-X). With ``xrechnung`` the XRechnung XML of
        ``einvoice(True)`` is stored first as that document (once)."""
        if xrechnung is not None:
            self.store_xrechnung(xrechnung, lambda: einvoice(True))
        if not self.settings.einvoice:
            return self.renderer.render_pdf(template, context)
        pdf = self.renderer.render_pdf(template, context, pdf_variant="pdf/a-3b")
        return embed(pdf, build_cii(einvoice(False)), title=title,
                     author=self.settings.shop_name, subject=subject)

    def store_xrechnung(self, target: Target,
                        einvoice: Callable[[], EinvoiceDocument]) -> DocumentView:
        def build() -> Rendered:
            document = einvoice()
            xml = build_cii(document)
            check_xsd(xml)
            return Rendered(xml, f"{document.number}.xml")

        return self.store.create_once(target, build)


def xrechnung_target(target: Target) -> Target:
    """Where the XRechnung XML of the invoice or credit note ``target`` is stored."""
    return Target(target.order_id, bounded(f"{target.key}:xrechnung", MAX_KEY), "xrechnung",
                  bounded(f"{target.document_id}-xrechnung", MAX_DOCUMENT_ID), XML)


class DocumentActivities(DocumentMaker):
    """Renders and stores the documents of an order (PDF and openTRANS XML)."""

    @activity.defn
    def create_delivery_note(self, input: DocumentInput) -> DocumentView:
        """The German delivery note (Lieferschein) of a shipment, without prices, with the
        next gapless delivery-note number of the year."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "delivery_note", PDF)

        def render(reserved: Reserved) -> bytes:
            context = {"shop": shop_context(self.settings), "order": order,
                       "shipment": shipment, "lines": shipment_lines(order, shipment),
                       "number": reserved.number, "date": reserved.issued_at}
            return self.renderer.render_pdf("lieferschein.html", context)

        return self.store.issue_numbered(
            target, self.settings.delivery_note_number_format,
            lambda _number: f"{_file_stem(order.order_id, shipment)}-lieferschein.pdf", render)

    @activity.defn
    def create_order_xml(self, input: DocumentInput) -> DocumentView:
        """The openTRANS 2.1 ORDER for the fulfillment partner (validated against the XSD)."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "order_xml", XML)

        def build() -> Rendered:
            content = build_order_xml(order, shipment, supplier_name=self.settings.shop_name)
            return Rendered(content, f"{_file_stem(order.order_id, shipment)}.xml")

        return self.store.create_once(target, build)

    @activity.defn
    def create_order_csv(self, input: DocumentInput) -> DocumentView:
        """The shipment as CSV for partners that take the ``csv`` format (no prices)."""
        order, shipment = input.order, input.shipment
        target = _shipment_target(order.order_id, shipment, "order_csv", CSV)

        def build() -> Rendered:
            return Rendered(build_order_csv(order, shipment),
                            f"{_file_stem(order.order_id, shipment)}.csv")

        return self.store.create_once(target, build)

    @activity.defn
    def issue_invoice(self, input: DocumentInput) -> DocumentView:
        """The German invoice (Rechnung) with the next gapless number of the year: of one
        shipment (``input.shipment``: a partial invoice of its lines, no shipping), or of the
        order (the final one: everything not invoiced by partial invoices, adding up to the
        order's total exactly; see ``models.invoice.compute_invoice``)."""
        order, shipment, billing = input.order, input.shipment, input.billing
        if shipment is not None:
            sid = shipment.shipment_id
            basis = order.model_copy(update={
                "lines": shipment_lines(order, shipment),
                "totals": order.totals.model_copy(update={"shipping": Decimal("0.00")})})
            target = Target(order.order_id, bounded(f"invoice:{sid}", MAX_KEY), "invoice",
                            bounded(f"{order.order_id}-invoice-{sid}", MAX_DOCUMENT_ID), PDF)
        else:
            basis = order
            target = Target(order.order_id, "invoice", "invoice",
                            f"{order.order_id}-invoice", PDF)
        xrechnung = (xrechnung_target(target)
                     if einvoice_format(billing, order, self.settings) == "xrechnung" else None)

        def render(reserved: Reserved) -> bytes:
            number = reserved.number
            with Session(self.engine) as session:
                earlier = partial_invoices(session, order.order_id) if shipment is None else []
                referenced = tuple(  # BG-3: the partial invoices a final invoice is net of
                    (row.number or "", shop_date(row.issued_at, self.settings))
                    for row in partial_invoice_rows(session, order.order_id)
                    if row.issued_at is not None) if shipment is None else ()
            context = self._invoice_context(basis, number, reserved.issued_at, earlier,
                                            term=billing.payment_term,
                                            tax=tax_of(reserved.tax, self.settings.tax))
            return self.render_einvoice(
                "rechnung.html", context, lambda xr: order_einvoice(
                    basis, context["invoice"], number=number, type_code=INVOICE,
                    issued_on=context["issued_on"],
                    delivered_on=shop_date(context["delivery_date"], self.settings),
                    due_on=context["due_date"],
                    settings=self.settings, xrechnung=xr, partial_invoices=referenced,
                    buyer_reference=billing.buyer_reference, term=context["payment_term"]),
                title=f"Rechnung {number}",
                subject=f"Rechnung {number} zur Bestellung {order.order_id}",
                xrechnung=xrechnung)

        view = self.store.issue_numbered(
            target, self.settings.invoice_number_format, lambda number: f"{number}.pdf",
            render, plan=lambda _session: Planned(basis.model_dump_json(),
                                                  tax=self.settings.tax.model_dump_json()))
        with Session(self.engine) as session:
            row = session.get(Document, view.document_id)
            assert row is not None
            total = invoice_of(session, row, self.settings.tax).gross
        return view.model_copy(update={
            "total": total, "einvoice_id": xrechnung.document_id if xrechnung else None})

    @activity.defn
    def dunning_notice(self, input: DunningInput) -> DunningNotice:
        """The dates of a dunning step (shop time) and, for a level with ``letter``, the
        letter (Zahlungserinnerung / Mahnung) as PDF, once per level; its fee is kept with it
        (``basis``) so the bank matching knows it is owed."""
        order, level = input.order, input.level
        due_on = shop_date(input.invoiced_at + input.payment_term, self.settings)
        deadline_on = shop_date(input.at + input.deadline, self.settings)
        notice = DunningNotice(due_on=due_on, deadline_on=deadline_on)
        if not level.letter:
            return notice
        target = Target(order.order_id, f"dunning:{level.name}", "dunning",
                        bounded(f"{order.order_id}-dunning-{level.name}", MAX_DOCUMENT_ID),
                        PDF)

        def render() -> Rendered:
            totals = order.totals
            context = {"shop": shop_context(self.settings), "order": order,
                       "level": level, "invoice_number": input.invoice_number,
                       "due_on": due_on, "deadline_on": deadline_on, "date": input.at,
                       "currency": order.currency, "owed": totals.total - totals.credited,
                       "paid": totals.paid, "fees": totals.fees,
                       "open": totals.total + totals.fees - totals.credited - totals.paid}
            return Rendered(self.renderer.render_pdf("mahnung.html", context),
                            f"{order.order_id}-{level.name}.pdf")

        basis = json.dumps({"level": level.name, "fee": str(level.fee)})
        document = self.store.create_once(target, render, basis=basis)
        return notice.model_copy(update={"document": document})

    def _invoice_context(self, order: OrderView, number: str, issued_at: datetime,
                         earlier: list[tuple[str, OrderView]] | None = None,
                         term: timedelta | None = None,
                         tax: TaxConfig | None = None) -> dict[str, Any]:
        issued_on = shop_date(issued_at, self.settings)
        term = term if term is not None else self.settings.invoice_payment_term  # 0: at once
        return {"shop": shop_context(self.settings), "order": order, "number": number,
                "date": issued_at, "issued_on": issued_on,
                "delivery_date": delivery_date(order, issued_at), "payment_term": term,
                "payment_days": term.days, "due_date": shop_date(issued_at + term, self.settings),
                "invoice": compute_invoice(order, tax or self.settings.tax,
                                           earlier=[v for _, v in earlier or []]),
                "earlier_numbers": [n for n, _ in earlier or []],
                "currency": order.currency}

