"""Collective invoices (Sammelrechnung): one invoice per month for each customer flagged
``collective_invoice`` in master data, over all their orders on invoice terms shipped by then.

An order enlists when it is completely shipped (``enlist_collective``: a ``collective_item``
row with the order as it stands, under the month of its last shipment in shop time). The
monthly run lists the customers with orders waiting (``collective_customers``) and issues
each one invoice (``issue_collective_invoice``): the number (from the invoice range, gapless
with all other invoices) and the choice of orders are taken in one short transaction, which
marks each order's row with the invoice, so an order is on exactly one collective invoice and
an order enlisted later waits for the next run. The PDF (one section per order, the VAT
summed per rate) is rendered afterwards, like every numbered document.

Each order's share is exactly what its own invoice would charge (rounded per order), so
payments, dunning, credit notes and the DATEV export keep working per order, under the
collective invoice's number.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.docstore import Planned, Reserved, Target, document_view, tax_of
from activities.documents import (
    PDF,
    DocumentMaker,
    delivery_date,
    shop_context,
    shop_date,
    xrechnung_target,
)
from activities.einvoice import (
    INVOICE,
    EinvoiceDocument,
    buyer_of,
    einvoice_format,
    invoice_terms,
    seller_of,
)
from activities.store import billing_profile
from models.billing import (
    CollectivePart,
    CollectiveResult,
    IssueCollectiveInput,
    check_period_ended,
    collective_figures,
    collective_totals,
    period_bounds,
    period_of,
    previous_period,
)
from models.invoice import compute_invoice
from models.orders import OrderView
from models.tables import CollectiveItem, Customer, Document, MailOutbox, OrderRecord
from models.tax import TaxConfig

__all__ = ["COLLECTIVE", "NOTHING_TO_INVOICE", "CollectiveActivities", "collective_invoice_of",
           "collective_numbers", "shares_of"]

NOTHING_TO_INVOICE = "NothingToInvoice"
COLLECTIVE = "collective_invoice"  # the document kind; numbered from the invoice range
COLLECTIVE_MAIL = "collective-invoice"  # mail_outbox.key of its mail (order_id: the document)


def _account(customer_id: int) -> str:
    """The order id a customer's collective invoices are stored under."""
    return f"customer-{customer_id}"


def _key(period: str) -> str:
    return f"collective:{period}"


def _share(row: Document, item: CollectiveItem) -> Document:
    """An order's share of the collective invoice ``row``, shaped like the order's own
    invoice row (number, issue time, the order as basis); not stored."""
    return Document(document_id=row.document_id, order_id=item.order_id, key="invoice",
                    kind="invoice", number=row.number, filename=row.filename,
                    media_type=row.media_type, issued_at=row.issued_at, basis=item.basis,
                    tax=row.tax)


def collective_invoice_of(session: Session, order_id: str) -> Document | None:
    """The order's share of its (issued) collective invoice, for credit notes."""
    item = session.get(CollectiveItem, order_id)
    if item is None or item.document_id is None:
        return None
    row = session.get(Document, item.document_id)
    return _share(row, item) if row is not None and row.content is not None else None


def shares_of(session: Session, row: Document) -> list[Document]:
    """Every order's share of the collective invoice ``row`` (DATEV books them per order)."""
    return [_share(row, item) for item in _parts(session, row.document_id)]


def collective_numbers(session: Session) -> dict[str, str]:
    """order id -> the number of its issued collective invoice."""
    rows = session.exec(select(CollectiveItem.order_id, Document.number)
                        .join(Document, col(Document.document_id) == CollectiveItem.document_id)
                        .where(col(Document.content).is_not(None))).all()
    return {order_id: number for order_id, number in rows if number}


def _parts(session: Session, document_id: str) -> list[CollectiveItem]:
    return list(session.exec(select(CollectiveItem)
                             .where(CollectiveItem.document_id == document_id)
                             .order_by(col(CollectiveItem.shipped_at),
                                       col(CollectiveItem.order_id))).all())


class CollectiveActivities(DocumentMaker):
    """Enlists orders and issues the monthly collective invoices."""

    @activity.defn
    def enlist_collective(self, order: OrderView) -> str:
        """Put the shipped order on its customer's collective invoice of the month of its
        last shipment; returns that month (``YYYY-MM``). Once per order."""
        shipped_at = delivery_date(order, datetime.now(UTC))
        with Session(self.engine) as session:
            item = session.get(CollectiveItem, order.order_id)
            if item is None:
                record = session.get(OrderRecord, order.order_id)
                if record is None:
                    raise ApplicationError(f"order {order.order_id} is not recorded",
                                           type="UnknownOrder", non_retryable=True)
                item = CollectiveItem(order_id=order.order_id, customer_id=record.customer_id,
                                      period=period_of(shop_date(shipped_at, self.settings)),
                                      shipped_at=shipped_at, basis=order.model_dump_json())
                session.add(item)
                session.commit()
            return item.period

    @activity.defn
    def collective_customers(self, period: str | None) -> tuple[str, list[int]]:
        """The period to invoice (``None``: the month before today in shop time; a month
        that has not ended is refused) and the customers to invoice: those with orders
        waiting that were shipped up to its end, and those whose invoice of the period an
        earlier run did not finish (not stored, or its mail not sent: the run failed or was
        stopped), which a rerun completes."""
        today = shop_date(datetime.now(UTC), self.settings)
        period = period or previous_period(today)
        try:
            check_period_ended(period, today)  # a bad period fails here, before anything
        except ValueError as exc:
            raise ApplicationError(str(exc), type="PeriodNotEnded", non_retryable=True) from None
        with Session(self.engine) as session:
            waiting = session.exec(
                select(CollectiveItem.customer_id).where(
                    col(CollectiveItem.document_id).is_(None),
                    col(CollectiveItem.period) <= period)
                .distinct()).all()
            # a customer invoiced for this period already: what came later waits a month
            invoiced = {account: (document_id, stored) for account, document_id, stored in
                        session.exec(select(Document.order_id, Document.document_id,
                                            col(Document.content).is_not(None))
                                     .where(Document.kind == COLLECTIVE,
                                            Document.key == _key(period))).all()}
            mailed = set(session.exec(select(MailOutbox.order_id).where(
                MailOutbox.key == COLLECTIVE_MAIL, MailOutbox.status == "sent",
                col(MailOutbox.order_id).in_([d for d, _ in invoiced.values()]))).all())
        unfinished = {int(account.removeprefix("customer-"))
                      for account, (document_id, stored) in invoiced.items()
                      if not stored or document_id not in mailed}
        return period, sorted({c for c in waiting if _account(c) not in invoiced}
                              | unfinished)

    @activity.defn
    def issue_collective_invoice(self, input: IssueCollectiveInput) -> CollectiveResult:
        """The customer's collective invoice of ``input.period`` (once per customer and
        period; ``NothingToInvoice`` when no order waits)."""
        target = Target(_account(input.customer_id), _key(input.period), COLLECTIVE,
                        f"collective-{input.customer_id}-{input.period}", PDF, series="invoice")

        def plan(session: Session) -> Planned:
            items = session.exec(select(CollectiveItem).where(
                CollectiveItem.customer_id == input.customer_id,
                col(CollectiveItem.document_id).is_(None),
                col(CollectiveItem.period) <= input.period)).all()
            if not items:
                raise ApplicationError(
                    f"customer #{input.customer_id}: no orders wait for a collective invoice "
                    f"of {input.period}", type=NOTHING_TO_INVOICE, non_retryable=True)
            for item in items:
                item.document_id = target.document_id
                session.add(item)
            return Planned(json.dumps({"customer_id": input.customer_id,
                                       "period": input.period,
                                       "orders": sorted(item.order_id for item in items)}),
                           tax=self.settings.tax.model_dump_json())

        with Session(self.engine) as session:
            customer = session.get(Customer, input.customer_id)
        if customer is None:
            raise ApplicationError(f"unknown customer #{input.customer_id}",
                                   type="UnknownCustomer", non_retryable=True)
        billing = billing_profile(customer)
        term = (billing.payment_term if billing.payment_term is not None
                else self.settings.invoice_payment_term)
        earlier = self.store.existing(target)  # a rerun finishing an earlier run's invoice

        def render(reserved: Reserved) -> bytes:
            with Session(self.engine) as session:
                parts = self._collective_parts(session, target.document_id,
                                               tax_of(reserved.tax, self.settings.tax))
            latest = parts[-1].order
            xrechnung = (xrechnung_target(target) if einvoice_format(
                billing, latest, self.settings) == "xrechnung" else None)
            issued_on = shop_date(reserved.issued_at, self.settings)
            due_on = shop_date(reserved.issued_at + term, self.settings)
            totals = collective_totals(parts)
            gross = sum((t.gross for t in totals), Decimal("0.00"))
            delivered = [shop_date(delivery_date(p.order, reserved.issued_at), self.settings)
                         for p in parts]
            first_day, last_day = period_bounds(input.period)
            context = {"shop": shop_context(self.settings), "number": reserved.number,
                       "date": reserved.issued_at, "period": input.period,
                       # orders carried over from earlier months widen the service period
                       "first_day": min([first_day, *delivered]), "last_day": last_day,
                       "customer": latest.billing_address, "vat_id": latest.customer.vat_id,
                       "parts": parts, "totals": totals, "gross": gross,
                       "prices_gross": latest.customer.type == "b2c",
                       "currency": latest.currency, "due_date": due_on,
                       "payment_days": term.days}

            def einvoice(xr: bool) -> EinvoiceDocument:
                return EinvoiceDocument(
                    number=reserved.number, type_code=INVOICE, issued_on=issued_on,
                    delivered_on=max(delivered),
                    currency=latest.currency, seller=seller_of(self.settings, contact=xr),
                    buyer=buyer_of(latest), ship_to=latest.shipping_address,
                    figures=collective_figures(parts),
                    order_reference=f"Sammelrechnung {input.period}", prepaid=Decimal(0),
                    due_on=due_on,
                    payment_terms=invoice_terms(term),
                    iban=self.settings.bank_iban, bic=self.settings.bank_bic,
                    account_holder=self.settings.bank_account_holder,
                    notes=tuple(sorted({p.invoice.note for p in parts if p.invoice.note})),
                    xrechnung=xr,
                    buyer_reference=(billing.buyer_reference or reserved.number)
                    if xr else None)

            return self.render_einvoice(
                "sammelrechnung.html", context, einvoice,
                title=f"Sammelrechnung {reserved.number}",
                subject=f"Sammelrechnung {reserved.number} für {input.period}",
                xrechnung=xrechnung)

        document = self.store.issue_numbered(
            target, self.settings.invoice_number_format, lambda number: f"{number}.pdf",
            render, plan)
        with Session(self.engine) as session:
            row = session.get(Document, document.document_id)
            assert row is not None and row.issued_at is not None
            parts = self._collective_parts(session, document.document_id,
                                           tax_of(row.tax, self.settings.tax))
        issued_at = row.issued_at if row.issued_at.tzinfo else row.issued_at.replace(tzinfo=UTC)
        total = sum((p.invoice.gross for p in parts), Decimal("0.00"))  # = the rates' sum
        xml = self.store.existing(xrechnung_target(target))
        latest = parts[-1].order
        return CollectiveResult(
            document=document_view(row).model_copy(update={
                "total": total, "einvoice_id": xml.document_id if xml else None}),
            email=customer.email,
            customer_name=latest.billing_address.company or latest.billing_address.name,
            total=total, currency=latest.currency,
            issued_at=issued_at, due_on=shop_date(issued_at + term, self.settings),
            payment_term=term,
            orders=[(p.order.order_id, p.invoice.gross) for p in parts],
            resumed=earlier is not None)

    def _collective_parts(self, session: Session, document_id: str,
                          tax: TaxConfig) -> list[CollectivePart]:
        parts = []
        for item in _parts(session, document_id):
            order = OrderView.model_validate_json(item.basis)
            parts.append(CollectivePart(order=order, invoice=compute_invoice(order, tax)))
        return parts
