"""Credit notes (Gutschrift / Rechnungskorrektur): checked against their invoice, numbered
gaplessly (``GS-2026-000001``), rendered like an invoice, and a Factur-X document of type
381 referring to the invoice.

The check (``models.credit.plan_credit``) runs inside the transaction that takes the credit
note's number: the number-range lock serialises credit notes, so two requests for the same
invoice cannot together credit more than it. A request that does not fit is a
non-retryable ``ApplicationError(type="CreditRejected")``; an order without an invoice a
non-retryable ``NotInvoiced``.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.collective import collective_invoice_of
from activities.docstore import (
    MAX_DOCUMENT_ID,
    MAX_KEY,
    Reserved,
    Target,
    bounded,
    document_view,
)
from activities.documents import PDF, DocumentMaker, shop_context, shop_date, xrechnung_target
from activities.einvoice import CREDIT_NOTE, einvoice_format, order_einvoice
from activities.store import customer_billing
from models.activities import CreditNoteInput, CreditNoteResult
from models.billing import BillingProfile
from models.credit import CreditNoteIn, CreditRejected, plan_credit
from models.invoice import compute_invoice
from models.orders import OrderView
from models.tables import Document, Payment
from settings import Settings

__all__ = ["CREDIT_REJECTED", "NOT_INVOICED", "CreditNoteActivities", "check_credit_note",
           "credit_notes_of"]

CREDIT_REJECTED = "CreditRejected"
NOT_INVOICED = "NotInvoiced"


def _invoice_row(session: Session, order_id: str) -> Document | None:
    """The order's (final) invoice: its basis is the whole order, whatever partial
    invoices came before it; or its share of a collective invoice."""
    return session.exec(select(Document).where(
        Document.order_id == order_id, Document.kind == "invoice", Document.key == "invoice",
        col(Document.content).is_not(None))).first() or collective_invoice_of(session,
                                                                           order_id)


def credit_notes_of(session: Session, order_id: str) -> list[Document]:
    """The credit notes of an order (reserved ones too), oldest first."""
    return list(session.exec(select(Document).where(
        Document.order_id == order_id, Document.kind == "credit_note")
        .order_by(col(Document.issued_at))).all())


def check_credit_note(session: Session, order_id: str, request: CreditNoteIn,
                      settings: Settings) -> tuple[Document, OrderView]:
    """The invoice row and the credited part, or ``ApplicationError`` (NotInvoiced,
    CreditRejected with ``details[0] = {"field", "reason"}``)."""
    invoice = _invoice_row(session, order_id)
    if invoice is None or invoice.basis is None:
        raise ApplicationError(f"order {order_id} has no invoice to credit", type=NOT_INVOICED,
                               non_retryable=True)
    previous = [OrderView.model_validate_json(row.basis)
                for row in credit_notes_of(session, order_id)
                if row.basis is not None and row.key != _key(request)]
    try:
        credit = plan_credit(OrderView.model_validate_json(invoice.basis), previous, request,
                             tax=settings.tax)
    except CreditRejected as exc:
        raise ApplicationError(str(exc), {"field": exc.field, "reason": exc.reason},
                               type=CREDIT_REJECTED, non_retryable=True) from None
    return invoice, credit


def _key(request: CreditNoteIn) -> str:
    return bounded(f"credit_note:{request.request_id}", MAX_KEY)


class CreditNoteActivities(DocumentMaker):
    """Issues credit notes (store, renderer and e-invoice output shared with invoices)."""

    @activity.defn
    def issue_credit_note(self, input: CreditNoteInput) -> CreditNoteResult:
        """The credit note of ``input.request`` for the order's invoice (once per request)."""
        order_id, request = input.order_id, input.request
        target = Target(order_id, _key(request), "credit_note",
                        bounded(f"{order_id}-credit_note-{request.request_id}",
                                MAX_DOCUMENT_ID), PDF)

        def plan(session: Session) -> str:
            return check_credit_note(session, order_id, request, self.settings)[1] \
                .model_dump_json()

        def render(reserved: Reserved) -> bytes:
            assert reserved.basis is not None
            credit = OrderView.model_validate_json(reserved.basis)
            with Session(self.engine) as session:
                invoice = _invoice_row(session, order_id)
                billing = customer_billing(session, str(credit.customer.email))
            assert invoice is not None and invoice.number and invoice.issued_at
            xrechnung = einvoice_format(billing, credit, self.settings) == "xrechnung"
            return self._render(credit, reserved, invoice, request.reason,
                                xrechnung_target(target) if xrechnung else None, billing)

        document = self.store.issue_numbered(target, self.settings.credit_note_number_format,
                                             lambda number: f"{number}.pdf", render, plan)
        result = self._result(order_id, document.document_id)
        xml = self.store.existing(xrechnung_target(target))
        if xml is not None:
            result.document.einvoice_id = xml.document_id
        return result

    def _render(self, credit: OrderView, reserved: Reserved, invoice: Document,
                reason: str, xrechnung: Target | None, billing: BillingProfile) -> bytes:
        assert invoice.number is not None and invoice.issued_at is not None
        amounts = compute_invoice(credit, self.settings.tax)
        issued_on = shop_date(reserved.issued_at, self.settings)
        context = {"shop": shop_context(self.settings), "order": credit,
                   "number": reserved.number, "date": reserved.issued_at,
                   "invoice_number": invoice.number, "invoice_date": invoice.issued_at,
                   "reason": reason, "invoice": amounts, "currency": credit.currency}
        invoiced_on = shop_date(invoice.issued_at, self.settings)
        return self.render_einvoice(
            "gutschrift.html", context, lambda xr: order_einvoice(
                credit, amounts, number=reserved.number, type_code=CREDIT_NOTE,
                issued_on=issued_on, delivered_on=issued_on, settings=self.settings,
                preceding_invoice=invoice.number, preceding_issued_on=invoiced_on,
                xrechnung=xr, buyer_reference=billing.buyer_reference),
            title=f"Gutschrift {reserved.number}",
            subject=f"Gutschrift {reserved.number} zur Rechnung {invoice.number}",
            xrechnung=xrechnung)

    def _result(self, order_id: str, document_id: str) -> CreditNoteResult:
        with Session(self.engine) as session:
            row = session.get(Document, document_id)
            invoice = _invoice_row(session, order_id)
            assert row is not None and row.basis and invoice is not None and invoice.basis
            credit = OrderView.model_validate_json(row.basis)
            earlier = [OrderView.model_validate_json(r.basis).totals.total
                       for r in credit_notes_of(session, order_id)
                       if r.basis and r.document_id != document_id
                       and r.issued_at is not None and row.issued_at is not None
                       and r.issued_at <= row.issued_at]
            paid = session.exec(select(func.coalesce(func.sum(Payment.amount), 0))
                                .where(Payment.order_id == order_id)).one()
        invoiced = OrderView.model_validate_json(invoice.basis)
        # Payments recorded for the order; an order paid at the channel (method "paid")
        # has none recorded but was paid in full when it was invoiced.
        paid = max(Decimal(paid), invoiced.totals.paid)
        return CreditNoteResult(
            document=document_view(row), invoice_number=invoice.number or "",
            total=credit.totals.total, currency=credit.currency, credit=credit,
            invoice_total=invoiced.totals.total,
            credited_before=sum(earlier, Decimal("0.00")), paid=paid)
