"""Credit notes (Gutschrift / Rechnungskorrektur): what a request may credit, as pure functions.

A credit note corrects one invoice: returned lines at the invoice's prices and rates, a
share of its shipping, and/or a free amount at one of its rates (a goodwill credit). A
request without any of these credits everything not yet credited (a cancellation after
invoicing). ``plan_credit`` checks a request against the invoice and the credit notes
already issued for it and returns the credited part as an order view, so the credit note is
computed, printed and e-invoiced exactly like an invoice (``models.invoice``), with the
same tax treatment.

Pure and sandbox-safe.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from models.orders import (  # credited shipping: one VERSAND line per VAT rate
    _IDENT,
    GOODWILL_SKU,
    SHIPPING_SKU,
    Money,
    OrderLine,
    OrderView,
    Text,
    Totals,
)
from models.rules import line_total, order_tax
from models.tax import TaxConfig, split_shipping

__all__ = ["GOODWILL_SKU", "SHIPPING_SKU", "CreditLineIn", "CreditNoteIn", "CreditRejected",
           "plan_credit"]


class CreditRejected(ValueError):
    """The request does not fit the invoice: ``field`` names the offending part."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CreditLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, StringConstraints(pattern=_IDENT)]
    quantity: Annotated[int, Field(gt=0, le=100_000)]


class CreditNoteIn(BaseModel):
    """``POST /orders/{order_id}/credit-notes``: one credit note, once per ``request_id``."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    reason: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    lines: list[CreditLineIn] = Field(default_factory=list, max_length=500)
    shipping: Money | None = None  # refunded shipping, as priced (gross b2c, net b2b)
    amount: Money | None = None  # a free amount, as priced, at ``tax_rate``
    tax_rate: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] | None = None
    # the invoice to correct: default the order's final invoice, else its only partial one
    invoice_number: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    by: Annotated[str, StringConstraints(max_length=100)] = "staff"

    @field_validator("amount", "shipping")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("tax_rate")
    @classmethod
    def _rate_with_amount(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is not None and info.data.get("amount") is None:
            raise ValueError("tax_rate only goes with amount")
        return value

    @property
    def full(self) -> bool:
        """Nothing named: credit everything not yet credited."""
        return not self.lines and self.shipping is None and self.amount is None


def _credited(previous: list[OrderView]) -> tuple[Counter[str], Decimal, Decimal]:
    quantities: Counter[str] = Counter()
    shipping = Decimal(0)
    total = Decimal(0)
    for credit in previous:
        for line in credit.lines:
            if line.sku == SHIPPING_SKU:
                shipping += line_total(line)
            elif line.sku != GOODWILL_SKU:
                quantities[line.sku] += line.quantity
        shipping += credit.totals.shipping  # credit notes of earlier versions
        total += credit.totals.total
    return quantities, shipping, total


def _shipping_lines(invoice: OrderView, shipping: Decimal) -> list[OrderLine]:
    """Credited shipping as lines ``VERSAND``, split across the rates like the invoice's
    shipping (in proportion to its goods), whatever lines the credit note names."""
    if not shipping:
        return []
    goods: dict[Decimal, Decimal] = {}
    for line in invoice.lines:
        goods[line.tax_rate] = goods.get(line.tax_rate, Decimal(0)) + line_total(line)
    return [OrderLine(sku=SHIPPING_SKU, name="Versandkosten", quantity=1, unit_price=part,
                      tax_rate=rate)
            for rate, part in split_shipping(shipping, goods).items() if part]


def plan_credit(invoice: OrderView, previous: list[OrderView], request: CreditNoteIn, *,
                tax: TaxConfig | None = None) -> OrderView:
    """The credited part of ``invoice`` (an order view whose lines, shipping and totals are
    the credit note's), or ``CreditRejected``. ``previous``: the credit notes already issued
    for this invoice, as returned by this function then."""
    credited, credited_shipping, credited_total = _credited(previous)
    invoiced = Counter[str]()
    by_sku: dict[str, OrderLine] = {}
    for line in invoice.lines:
        invoiced[line.sku] += line.quantity
        by_sku.setdefault(line.sku, line)
    open_shipping = invoice.totals.shipping - credited_shipping

    if request.full:
        lines = [line.model_copy(update={"quantity": invoiced[sku] - credited[sku]})
                 for sku, line in by_sku.items() if invoiced[sku] > credited[sku]]
        shipping = open_shipping
    else:
        wanted: Counter[str] = Counter()
        for index, item in enumerate(request.lines):
            if item.sku not in by_sku:
                raise CreditRejected(f"lines[{index}].sku",
                                     f"{item.sku} is not on the invoice")
            wanted[item.sku] += item.quantity
            still = invoiced[item.sku] - credited[item.sku]
            if wanted[item.sku] > still:
                raise CreditRejected(f"lines[{index}].quantity",
                                     f"{wanted[item.sku]} x {item.sku} asked, {still} of "
                                     f"{invoiced[item.sku]} invoiced not yet credited")
        lines = [by_sku[sku].model_copy(update={"quantity": qty}) for sku, qty in wanted.items()]
        shipping = request.shipping or Decimal("0.00")
        if shipping > open_shipping:
            raise CreditRejected("shipping", f"{shipping} asked, {open_shipping} of the "
                                             f"invoiced shipping not yet credited")
        if request.amount is not None:
            rates = sorted({line.tax_rate for line in invoice.lines}, reverse=True)
            rate = request.tax_rate if request.tax_rate is not None else rates[0]
            if rate not in rates:
                raise CreditRejected("tax_rate", f"{rate} % is not a rate of the invoice "
                                                 f"({', '.join(f'{r} %' for r in rates)})")
            lines.append(OrderLine(sku=GOODWILL_SKU, name=request.reason, quantity=1,
                                   unit_price=request.amount, tax_rate=rate))
    if not lines and not shipping:
        raise CreditRejected("lines", "everything on the invoice is credited already")
    lines += _shipping_lines(invoice, shipping)
    goods = sum((line_total(line) for line in lines), Decimal("0.00"))
    total = order_tax(lines, Decimal(0), customer=invoice.customer,
                      country=invoice.shipping_address.country, tax=tax).gross
    open_total = invoice.totals.total - credited_total
    if total > open_total:
        raise CreditRejected("amount", f"the credit note would be {total}, only {open_total} "
                                       f"of the invoice is not yet credited")
    return invoice.model_copy(update={
        "lines": lines,
        "totals": Totals(goods=goods, shipping=Decimal("0.00"), total=total),
        "shipments": [], "payments": [],
    })
