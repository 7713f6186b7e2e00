"""DATEV export: the invoices, credit notes and payments of a period as an EXTF
Buchungsstapel (``models.datev``), written to ``ORDERS_DATEV__EXPORT_DIR``.

The period is in shop time (``ORDERS_SHOP_TIMEZONE``). Invoices and credit notes are booked
on their issue date with the amounts they printed (``models.invoice.compute_invoice`` on
the stored basis), per VAT rate; payments on their payment date against the order's invoice
number (or the order id before invoicing). The file is written under a temporary name and
renamed; running the export again for the same period replaces it with the same bookings.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.collective import COLLECTIVE, collective_numbers, shares_of
from activities.docstore import tax_of
from activities.documents import invoice_of
from activities.export import write_atomically
from models.activities import ExportDatevInput, ExportDatevResult
from models.datev import Booking, DatevConfig, build_extf, revenue_key
from models.invoice import compute_invoice
from models.orders import OrderView
from models.tables import Document, Payment
from models.tax import TaxConfig
from settings import Settings

__all__ = ["DatevActivities", "datev_bookings", "previous_month"]


def previous_month(reference: datetime, zone: str) -> tuple[date, date]:
    """First and last day of the month before ``reference`` (shop time)."""
    first_this = reference.astimezone(ZoneInfo(zone)).date().replace(day=1)
    last = first_this - timedelta(days=1)
    return last.replace(day=1), last


def _utc_bounds(start: date, end: date, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    return (datetime.combine(start, time(0, 0), tzinfo=tz).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time(0, 0), tzinfo=tz).astimezone(UTC))


def _document_bookings(session: Session, row: Document, config: DatevConfig, tax: TaxConfig,
                       zone: str) -> list[Booking]:
    assert row.basis is not None and row.issued_at is not None and row.number is not None
    view = OrderView.model_validate_json(row.basis)
    invoice = (invoice_of(session, row, tax) if row.kind == "invoice"  # as issued: its
               else compute_invoice(view, tax_of(row.tax, tax)))  # own tax rules
    issued_at = row.issued_at if row.issued_at.tzinfo else row.issued_at.replace(tzinfo=UTC)
    booked_on = issued_at.astimezone(ZoneInfo(zone)).date()
    credit = row.kind == "credit_note"
    bookings = []
    for amount in invoice.taxes:
        if amount.gross == 0:
            continue
        oss = invoice.treatment == "oss"
        # a rate's rounding remainder on a final invoice can be a cent below zero: DATEV
        # takes no negative amounts, so it goes on the other side
        debit = (amount.gross > 0) != credit
        bookings.append(Booking(
            amount=abs(amount.gross), side="S" if debit else "H",
            account=config.debitor_account,
            contra_account=config.account(revenue_key(invoice.treatment, amount.rate)),
            booked_on=booked_on, document=row.number,
            text=f"{'Gutschrift' if credit else 'Rechnung'} {row.number} "
                 f"{view.billing_address.company or view.billing_address.name}",
            currency=view.currency,
            # OSS: the destination country; reverse charge: the buyer's VAT id (for the
            # EC Sales List)
            eu_country_vat=(view.shipping_address.country if oss else
                            (view.customer.vat_id or "").replace(" ", "").upper()
                            if invoice.treatment == "reverse_charge" else ""),
            eu_rate=amount.rate if oss else None, order_id=view.order_id))
    return bookings


def datev_bookings(engine: Engine, settings: Settings, start: date,
                   end: date) -> list[Booking]:
    """Every booking of the period, in date order (documents, then payments of a day)."""
    config, zone = settings.datev, settings.shop_timezone
    since, until = _utc_bounds(start, end, zone)
    with Session(engine) as session:
        documents = session.exec(select(Document).where(
            col(Document.kind).in_(["invoice", "credit_note", COLLECTIVE]),
            col(Document.content).is_not(None), col(Document.issued_at) >= since,
            col(Document.issued_at) < until).order_by(col(Document.issued_at))).all()
        payments = session.exec(select(Payment).order_by(col(Payment.created_at))).all()
        numbers = dict(session.exec(select(Document.order_id, Document.number).where(
            Document.kind == "invoice", Document.key == "invoice",
            col(Document.number).is_not(None))).all())
        numbers.update(collective_numbers(session))
        bookings: list[Booking] = []
        for row in documents:  # a collective invoice is booked per order, under its number
            for part in shares_of(session, row) if row.kind == COLLECTIVE else [row]:
                if part.basis is not None:
                    bookings += _document_bookings(session, part, config, settings.tax, zone)
    for payment in payments:
        moment = payment.paid_at or payment.created_at
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if not since <= moment < until:
            continue
        bookings.append(Booking(
            amount=payment.amount, side="S", account=config.account("bank"),
            contra_account=config.debitor_account,
            booked_on=moment.astimezone(ZoneInfo(zone)).date(),
            document=numbers.get(payment.order_id) or payment.order_id,
            text=f"Zahlung {payment.reference or payment.order_id}",
            currency=payment.currency, order_id=payment.order_id))
    bookings.sort(key=lambda b: b.booked_on)
    return bookings


class DatevActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    def export_datev(self, input: ExportDatevInput) -> ExportDatevResult:
        """Write ``EXTF_Buchungsstapel_<from>_<to>.csv`` for the period (default: the month
        before ``input.reference``)."""
        zone = self.settings.shop_timezone
        if input.period_from and input.period_to:
            start, end = date.fromisoformat(input.period_from), date.fromisoformat(input.period_to)
        else:
            start, end = previous_month(input.reference or datetime.now(UTC), zone)
        try:
            bookings = datev_bookings(self.engine, self.settings, start, end)
            content = build_extf(bookings, self.settings.datev, period_from=start,
                                 period_to=end, created_at=datetime.now(ZoneInfo(zone)),
                                 title=f"Auftragsmanager {start:%m/%Y}")
        except ValueError as exc:  # a period across fiscal years, an account missing
            raise ApplicationError(str(exc), type="InvalidExport", non_retryable=True) from None
        target = write_atomically(Path(self.settings.datev_export_dir),
                                  f"EXTF_Buchungsstapel_{start.isoformat()}_{end.isoformat()}.csv",
                                  content)
        activity.logger.info("DATEV export %s: %d bookings", target, len(bookings))
        return ExportDatevResult(period_from=start.isoformat(), period_to=end.isoformat(),
                                 path=str(target), bookings=len(bookings),
                                 sha256=hashlib.sha256(content).hexdigest())
