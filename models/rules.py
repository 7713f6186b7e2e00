"""Pure order rules: totals and tax, the checks that put an order on hold, address matching.

Pure and sandbox-safe (no I/O, clocks or randomness), so the workflow may call these
directly. Money is ``Decimal`` rounded to cents with ``ROUND_HALF_UP``.

Prices are gross for ``b2c`` and net for ``b2b`` customers. The VAT comes from
``models.tax`` (treatment by customer and destination, shipping split across the rates in
proportion to the goods, rounding per line and per rate).
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from models.orders import Address, Customer, HoldReason, HoldView, OrderIn, OrderLine, Totals
from models.tax import TaxAmount, TaxConfig, TaxResult, classify, tax_amounts

__all__ = [
    "COMMENT_DETAIL_WIDTH",
    "DEFAULT_TAX",
    "NORMALIZED_MAX_LENGTH",
    "TaxAmount",
    "check_order",
    "compute_totals",
    "line_total",
    "normalize_address",
    "order_tax",
    "order_tax_of",
    "round_money",
    "vat_by_rate",
]

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
COMMENT_DETAIL_WIDTH = 200
NORMALIZED_MAX_LENGTH = 400  # CustomerAddress.normalized
_GERMAN_POSTAL_CODE = re.compile(r"^\d{5}$")
DEFAULT_TAX = TaxConfig()


def round_money(amount: Decimal) -> Decimal:
    """Round to cents, half up (the commercial rounding of German invoices)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def line_total(line: OrderLine) -> Decimal:
    """Quantity times unit price (gross or net, as the order's prices are)."""
    return round_money(line.unit_price * line.quantity)


# --- totals and tax ----------------------------------------------------------------------


def order_tax(lines: Sequence[OrderLine], shipping: Decimal, *, customer: Customer,
              country: str, tax: TaxConfig | None = None) -> TaxResult:
    """VAT per rate of these lines plus shipping for ``customer`` shipping to ``country``, by
    the shop's ``tax`` situation (``models.tax``: domestic, OSS, reverse charge, export)."""
    config = tax or DEFAULT_TAX
    decision = classify(customer_type=customer.type, vat_id=customer.vat_id, country=country,
                        line_rates=[line.tax_rate for line in lines], config=config)
    return tax_amounts([(line.tax_rate, line_total(line)) for line in lines], shipping,
                       prices_gross=customer.type != "b2b", decision=decision)


def order_tax_of(order: OrderIn, tax: TaxConfig | None = None) -> TaxResult:
    return order_tax(order.lines, order.shipping.price, customer=order.customer,
                     country=order.delivery_address.country, tax=tax)


def vat_by_rate(order: OrderIn, tax: TaxConfig | None = None) -> dict[Decimal, Decimal]:
    """The VAT of the order per applied rate, shipping included."""
    return {a.rate: a.tax for a in order_tax_of(order, tax).amounts}


def compute_totals(order: OrderIn, tax: TaxConfig | None = None) -> Totals:
    """Goods, shipping and the total to pay.

    ``goods`` and ``shipping`` are as priced (gross for ``b2c``, net for ``b2b``); ``total`` is
    what the customer pays: the priced amount for gross prices, net plus VAT for net prices
    (no VAT with reverse charge or export). ``given_total`` is the shop's ``total`` (if
    any); ``open`` starts at the total.
    """
    goods = round_money(sum((line_total(line) for line in order.lines), Decimal(0)))
    shipping = round_money(order.shipping.price)
    total = round_money(order_tax_of(order, tax).gross)
    return Totals(goods=goods, shipping=shipping, total=total, given_total=order.total,
                  paid=Decimal("0.00"), open=total)


# --- checks ------------------------------------------------------------------------------


def _check_total(order: OrderIn, tax: TaxConfig | None) -> HoldView | None:
    if order.total is None:
        return None
    computed = compute_totals(order, tax).total
    if round_money(order.total) == computed:
        return None
    return HoldView(reason=HoldReason.TOTAL_MISMATCH,
                    detail=f"given total {round_money(order.total)} {order.currency}, "
                           f"computed {computed} {order.currency}")


def _check_skus(order: OrderIn, known_skus: set[str]) -> HoldView | None:
    unknown = sorted({line.sku for line in order.lines} - known_skus)
    if not unknown:
        return None
    return HoldView(reason=HoldReason.UNKNOWN_SKU, detail=f"unknown SKU: {', '.join(unknown)}")


def _address_problems(address: Address) -> list[str]:
    problems = [f"{field} missing" for field in ("name", "street", "postal_code", "city")
                if not getattr(address, field).strip()]
    postal_code = address.postal_code.strip()
    if address.country == "DE" and postal_code and not _GERMAN_POSTAL_CODE.match(postal_code):
        problems.append(f"postal code {postal_code!r} is not 5 digits")
    return problems


def _check_address(order: OrderIn) -> HoldView | None:
    problems = _address_problems(order.delivery_address)
    if not problems:
        return None
    return HoldView(reason=HoldReason.INCOMPLETE_ADDRESS,
                    detail=f"delivery address: {'; '.join(problems)}")


def _check_comment(order: OrderIn) -> HoldView | None:
    comment = (order.comment or "").strip()
    if not comment:
        return None
    short = textwrap.shorten(comment, width=COMMENT_DETAIL_WIDTH, placeholder=" …")
    return HoldView(reason=HoldReason.CUSTOMER_COMMENT, detail=short)


def check_order(order: OrderIn, *, known_skus: set[str],
                tax: TaxConfig | None = None) -> list[HoldView]:
    """Every reason to hold the order for a human, in a fixed order; empty when it may go
    on. ``tax``: the shop's rules the total is computed with (default: Germany, OSS)."""
    checks: Iterable[HoldView | None] = (
        _check_total(order, tax),
        _check_skus(order, known_skus),
        _check_address(order),
        _check_comment(order),
    )
    return [hold for hold in checks if hold is not None]


# --- address matching --------------------------------------------------------------------

_STREET = re.compile(r"str(?:asse\b|\.)")  # after casefold: "straße" is "strasse"
_HOUSE_NUMBER_LETTER = re.compile(r"(\d)\s+([a-z])\b")  # "4 a" -> "4a"
_NOT_WORD = re.compile(r"[\W_]+")


def _normalize_part(value: str | None) -> str:
    text = (value or "").casefold()
    text = _STREET.sub("str ", text)
    text = _NOT_WORD.sub(" ", text)
    text = " ".join(text.split())
    return _HOUSE_NUMBER_LETTER.sub(r"\1\2", text)


def normalize_address(address: Address) -> str:
    """A key for "the same address": case-folded, whitespace collapsed, punctuation stripped,
    "Str." / "Straße" / "Strasse" unified, parts joined with ``|`` and the country code.

    Too long keys keep a readable prefix and end with a hash of the whole, so they fit the
    database column and still never collide by truncation.
    """
    parts = [address.name, address.company, address.street, address.postal_code, address.city]
    key = "|".join([*(_normalize_part(part) for part in parts), address.country.upper()])
    if len(key) <= NORMALIZED_MAX_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:NORMALIZED_MAX_LENGTH - len(digest) - 1]}#{digest}"
