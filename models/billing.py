"""How a customer is billed: the billing profile from master data, and the monthly collective
invoice (Sammelrechnung) of B2B customers flagged ``collective_invoice``.

A customer's profile is read when the order is taken in (``record_order``) and travels in
the workflow, so a running order keeps the terms it started with. Pure types and functions
only; the I/O is in ``activities/collective.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from models.invoice import (
    EinvoiceCharge,
    EinvoiceFigures,
    EinvoiceLine,
    EinvoiceTax,
    Invoice,
    einvoice_figures,
)
from models.orders import DocumentView, OrderView

__all__ = [
    "BillingProfile",
    "CollectiveInvoiced",
    "CollectivePart",
    "CollectiveResult",
    "EinvoiceFormat",
    "IssueCollectiveInput",
    "RateTotal",
    "check_period_ended",
    "collective_figures",
    "collective_totals",
    "period_bounds",
    "period_of",
    "previous_period",
]

EinvoiceFormat = Literal["factur-x", "xrechnung"]
PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class BillingProfile(BaseModel):
    """A customer's billing terms (master data ``[[customers]]``; defaults for everyone
    else)."""

    # One invoice per month over all shipped orders (payment method ``invoice`` only).
    collective_invoice: bool = False
    # The e-invoice the customer receives; None: ``ORDERS_B2B_EINVOICE`` for B2B customers,
    # Factur-X for everyone else.
    einvoice: EinvoiceFormat | None = None
    # BT-10 Buyer reference (XRechnung: the Leitweg-ID of a public buyer, else the
    # customer's reference); None: the order id.
    buyer_reference: str | None = None
    payment_term: timedelta | None = None  # None: ORDERS_INVOICE_PAYMENT_TERM


class CollectiveInvoiced(BaseModel):
    """Signal ``collective_invoiced``: the order is part of a collective invoice."""

    number: str
    document_id: str
    amount: Decimal  # this order's share (its own invoice total)
    issued_at: datetime
    payment_term: timedelta
    einvoice_id: str | None = None  # the XRechnung XML, for customers who take it


class IssueCollectiveInput(BaseModel):
    customer_id: int
    period: str = Field(pattern=PERIOD_PATTERN)  # orders shipped up to the end of it


class CollectiveResult(BaseModel):
    document: DocumentView
    email: str
    customer_name: str
    total: Decimal
    currency: str
    issued_at: datetime
    due_on: date
    payment_term: timedelta
    # (order_id, amount) of every order on the invoice, in the invoice's order
    orders: list[tuple[str, Decimal]] = Field(default_factory=list)
    resumed: bool = False  # issued by an earlier run that did not finish delivering it


def period_of(day: date) -> str:
    """``2026-11`` for any day of November 2026."""
    return f"{day.year:04d}-{day.month:02d}"


def previous_period(day: date) -> str:
    """The month before ``day``'s month: the one a run on the 1st invoices."""
    return period_of(day.replace(day=1) - timedelta(days=1))


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM``."""
    year, month = (int(part) for part in period.split("-"))
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def check_period_ended(period: str, today: date) -> None:
    """``ValueError`` unless ``period`` is over on ``today`` (a collective invoice covers a
    whole month: a month still running, typed for the one before, would take that month's
    orders under the wrong service period and block the real run)."""
    if period_bounds(period)[1] >= today:
        raise ValueError(f"period {period} has not ended yet (today is {today:%Y-%m-%d}); "
                         f"the last ended month is {previous_period(today)}")


# --- the collective invoice's figures (pure) ---------------------------------------------


@dataclass(frozen=True)
class CollectivePart:
    """One order on a collective invoice: its view and what its own invoice would charge."""

    order: OrderView
    invoice: Invoice


@dataclass(frozen=True)
class RateTotal:
    rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


def collective_totals(parts: Sequence[CollectivePart]) -> list[RateTotal]:
    """Net, VAT and gross per rate: the sums of the orders' own amounts (rounded per order,
    so each order's share is exactly what its own invoice would charge)."""
    sums: dict[Decimal, list[Decimal]] = {}
    for part in parts:
        for amount in part.invoice.taxes:
            entry = sums.setdefault(amount.rate, [Decimal("0.00")] * 3)
            entry[0] += amount.net
            entry[1] += amount.tax
            entry[2] += amount.gross
    return [RateTotal(rate, *sums[rate]) for rate in sorted(sums, reverse=True)]


def collective_figures(parts: Sequence[CollectivePart]) -> EinvoiceFigures:
    """The EN 16931 figures of a collective invoice: every order's lines (named with their
    order), its shipping as charges, and the VAT breakdown per category and rate summed."""
    lines: list[EinvoiceLine] = []
    charges: list[EinvoiceCharge] = []
    taxes: dict[tuple[str, Decimal], EinvoiceTax] = {}
    for part in parts:
        figures = einvoice_figures(part.invoice,
                                   shipping_reason=f"Versandkosten {part.order.order_id}")
        lines += [replace(line, name=f"{line.name} (Bestellung {part.order.order_id})")
                  for line in figures.lines]
        charges += figures.charges
        for tax in figures.taxes:
            key = (tax.category, tax.rate)
            known = taxes.get(key)
            taxes[key] = tax if known is None else replace(
                known, basis=known.basis + tax.basis, tax=known.tax + tax.tax)
    return EinvoiceFigures(lines=lines, charges=charges, taxes=list(taxes.values()))
