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

from collections import Counter
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.collective import collective_invoice_of
from activities.docstore import (
    MAX_DOCUMENT_ID,
    MAX_KEY,
    Planned,
    Reserved,
    Target,
    bounded,
    document_view,
    tax_of,
)
from activities.documents import (
    PDF,
    DocumentMaker,
    partial_invoice_rows,
    shop_context,
    shop_date,
    xrechnung_target,
)
from activities.einvoice import CREDIT_NOTE, einvoice_format, order_einvoice
from activities.store import customer_billing
from models.activities import CreditNoteInput, CreditNoteResult
from models.billing import BillingProfile
from models.credit import (
    GOODWILL_SKU,
    SHIPPING_SKU,
    CreditNoteIn,
    CreditRejected,
    plan_credit,
)
from models.invoice import compute_invoice
from models.orders import OrderView
from models.tables import Document, Payment
from models.tax import TaxConfig
from settings import Settings

__all__ = ["CREDIT_REJECTED", "NOT_INVOICED", "CreditNoteActivities", "check_credit_note",
           "credit_notes_of"]

CREDIT_REJECTED = "CreditRejected"
NOT_INVOICED = "NotInvoiced"


def _final_invoice(session: Session, order_id: str) -> Document | None:
    """The order's final invoice (its basis is the whole order, whatever partial invoices
    came before it), or its share of a collective invoice."""
    return session.exec(select(Document).where(
        Document.order_id == order_id, Document.kind == "invoice", Document.key == "invoice",
        col(Document.content).is_not(None))).first() or collective_invoice_of(session,
                                                                           order_id)


def _partial_basis(row: Document, tax: TaxConfig) -> OrderView:
    """A partial invoice's basis (its shipment's lines, no shipping) with its own total
    (under the tax rules it was issued with; ``tax`` for rows from before they were kept)."""
    assert row.basis is not None
    basis = OrderView.model_validate_json(row.basis)
    gross = compute_invoice(basis, tax_of(row.tax, tax)).gross
    return basis.model_copy(update={"totals": basis.totals.model_copy(
        update={"shipping": Decimal("0.00"), "total": gross})})


def _invoice_for(session: Session, order_id: str, number: str | None,
                 tax: TaxConfig, skus: frozenset[str] = frozenset()
                 ) -> tuple[Document, OrderView, bool]:
    """The invoice a credit note corrects, its basis for the check, and whether it is the
    order's final invoice: ``number`` if given; else the one partial invoice that charged
    all the credited ``skus`` when the final invoice charged none of them; else the final
    invoice; else the only partial one (several partial invoices and no final one: the
    caller must choose)."""
    final = _final_invoice(session, order_id)
    partials = partial_invoice_rows(session, order_id)
    if number is None and final is not None and partials and skus:
        if (row := _charged_alone(final, partials, skus)) is not None:
            return row, _partial_basis(row, tax), False
    if number is not None:
        if final is not None and final.number == number:
            return final, _basis(final), True
        for row in partials:
            if row.number == number:
                return row, _partial_basis(row, tax), False
        known = [r.number or "" for r in ([final] if final else []) + partials]
        raise _rejected("invoice_number", f"{number} is not an invoice of order {order_id}"
                        + (f" (its invoices: {', '.join(known)})" if known else ""))
    if final is not None:
        return final, _basis(final), True
    if len(partials) == 1:
        return partials[0], _partial_basis(partials[0], tax), False
    if partials:
        raise _rejected("invoice_number", "the order has the partial invoices "
                        f"{', '.join(r.number or '' for r in partials)} and no final one "
                        "yet: name the invoice to credit")
    raise ApplicationError(f"order {order_id} has no invoice to credit", type=NOT_INVOICED,
                           non_retryable=True)


def _charged_alone(final: Document, partials: list[Document],
                   skus: frozenset[str]) -> Document | None:
    """The one partial invoice whose lines hold every SKU of ``skus`` while the final
    invoice charged none of them (its own lines: what the partial ones left), or None."""
    ordered: Counter[str] = Counter()
    for line in _basis(final).lines:
        ordered[line.sku] += line.quantity
    on_partials: Counter[str] = Counter()
    holding = []
    for row in partials:
        skus_of_row = set()
        for line in _basis(row).lines:
            on_partials[line.sku] += line.quantity
            skus_of_row.add(line.sku)
        if skus <= skus_of_row:
            holding.append(row)
    on_final = {sku for sku in skus if ordered[sku] > on_partials[sku]}
    return holding[0] if len(holding) == 1 and not on_final else None


def _basis(row: Document) -> OrderView:
    assert row.basis is not None
    return OrderView.model_validate_json(row.basis)


def _rejected(field: str, reason: str) -> ApplicationError:
    return ApplicationError(f"{field}: {reason}", {"field": field, "reason": reason},
                            type=CREDIT_REJECTED, non_retryable=True)


def credit_notes_of(session: Session, order_id: str) -> list[Document]:
    """The credit notes of an order (reserved ones too), oldest first."""
    return list(session.exec(select(Document).where(
        Document.order_id == order_id, Document.kind == "credit_note")
        .order_by(col(Document.issued_at))).all())


def check_credit_note(session: Session, order_id: str, request: CreditNoteIn,
                      settings: Settings) -> tuple[Document, OrderView]:
    """The invoice row and the credited part, or ``ApplicationError`` (NotInvoiced,
    CreditRejected with ``details[0] = {"field", "reason"}``).

    A credit note fits its invoice (lines, shipping and total not credited yet by the
    credit notes of that invoice); a credit note for a partial invoice must also fit the
    order as a whole, counting every credit note of the order (the final invoice's basis is
    the whole order, so its check already does)."""
    invoice, basis, final = _invoice_for(session, order_id, request.invoice_number,
                                         settings.tax,
                                         frozenset(line.sku for line in request.lines))
    tax = tax_of(invoice.tax, settings.tax)  # the credit note follows its invoice
    earlier = [row for row in credit_notes_of(session, order_id)
               if row.basis is not None and row.key != _key(request)]
    own = earlier if final else [row for row in earlier if row.refers_to == invoice.number]
    try:
        credit = plan_credit(basis, [_basis(row) for row in own], request, tax=tax)
    except CreditRejected as exc:
        raise _rejected(exc.field, exc.reason) from None
    if not final:
        _check_order_wide(session, order_id, credit, [_basis(row) for row in earlier],
                          settings.tax)
    return invoice, credit


def _check_order_wide(session: Session, order_id: str, credit: OrderView,
                      earlier: list[OrderView], tax: TaxConfig) -> None:
    """All credit notes of the order together never credit more of a line than the order's
    invoices charged for it, nor more than they charged in all."""
    bases = _charged(session, order_id, tax)
    invoiced: Counter[str] = Counter()
    for view in bases:
        for line in view.lines:
            invoiced[line.sku] += line.quantity
    credited: Counter[str] = Counter()
    for view in [*earlier, credit]:
        for line in view.lines:
            credited[line.sku] += line.quantity
    for sku, quantity in credited.items():
        if sku not in (GOODWILL_SKU, SHIPPING_SKU) and quantity > invoiced[sku]:
            raise _rejected("lines", f"{quantity} x {sku} credited in all, the order's "
                                     f"invoices charged {invoiced[sku]}")
    charged = sum((view.totals.total for view in bases), Decimal("0.00"))
    total = sum((view.totals.total for view in [*earlier, credit]), Decimal("0.00"))
    if total > charged:
        raise _rejected("amount", f"credit notes of {total} in all, the order's invoices "
                                  f"charged {charged}")


def _charged(session: Session, order_id: str, tax: TaxConfig) -> list[OrderView]:
    """What the order's invoices charged: the final invoice's basis (the whole order), else
    each partial invoice's."""
    final = _final_invoice(session, order_id)
    if final is not None:
        return [_basis(final)]
    return [_partial_basis(row, tax) for row in partial_invoice_rows(session, order_id)]


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

        def plan(session: Session) -> Planned:
            invoice, credit = check_credit_note(session, order_id, request, self.settings)
            return Planned(credit.model_dump_json(), refers_to=invoice.number,
                           tax=tax_of(invoice.tax, self.settings.tax).model_dump_json())

        def render(reserved: Reserved) -> bytes:
            assert reserved.basis is not None
            credit = OrderView.model_validate_json(reserved.basis)
            with Session(self.engine) as session:
                invoice = self._referred(session, order_id, target.document_id)
                billing = customer_billing(session, str(credit.customer.email))
            assert invoice is not None and invoice.number and invoice.issued_at
            xrechnung = einvoice_format(billing, credit, self.settings) == "xrechnung"
            return self._render(credit, reserved, invoice, request.reason,
                                xrechnung_target(target) if xrechnung else None, billing,
                                tax_of(reserved.tax, self.settings.tax))

        document = self.store.issue_numbered(target, self.settings.credit_note_number_format,
                                             lambda number: f"{number}.pdf", render, plan)
        result = self._result(order_id, document.document_id)
        xml = self.store.existing(xrechnung_target(target))
        if xml is not None:
            result.document.einvoice_id = xml.document_id
        return result

    def _render(self, credit: OrderView, reserved: Reserved, invoice: Document,
                reason: str, xrechnung: Target | None, billing: BillingProfile,
                tax: TaxConfig) -> bytes:
        assert invoice.number is not None and invoice.issued_at is not None
        amounts = compute_invoice(credit, tax)
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

    def _referred(self, session: Session, order_id: str, document_id: str) -> Document:
        """The invoice the credit note ``document_id`` corrects (reserved with it)."""
        row = session.get(Document, document_id)
        assert row is not None
        return _invoice_for(session, order_id, row.refers_to, self.settings.tax)[0]

    def _result(self, order_id: str, document_id: str) -> CreditNoteResult:
        with Session(self.engine) as session:
            row = session.get(Document, document_id)
            invoice = self._referred(session, order_id, document_id)
            charged = _charged(session, order_id, self.settings.tax)
            assert row is not None and row.basis and invoice is not None
            credit = OrderView.model_validate_json(row.basis)
            earlier = [OrderView.model_validate_json(r.basis).totals.total
                       for r in credit_notes_of(session, order_id)
                       if r.basis and r.document_id != document_id
                       and r.issued_at is not None and row.issued_at is not None
                       and r.issued_at <= row.issued_at]
            paid = session.exec(select(func.coalesce(func.sum(Payment.amount), 0))
                                .where(Payment.order_id == order_id)).one()
        # Payments recorded for the order; an order paid at the channel (method "paid")
        # has none recorded but was paid in full when it was invoiced.
        paid = max(Decimal(paid), *(view.totals.paid for view in charged))
        return CreditNoteResult(
            document=document_view(row), invoice_number=invoice.number or "",
            total=credit.totals.total, currency=credit.currency, credit=credit,
            invoice_total=sum((view.totals.total for view in charged), Decimal("0.00")),
            credited_before=sum(earlier, Decimal("0.00")), paid=paid)
