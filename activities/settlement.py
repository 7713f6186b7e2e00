"""Marketplace settlements: an Amazon settlement report (flat file V2, tab-separated) read
into what the marketplace paid out per order.

The first data row is the summary (settlement id, period, deposit date, total, currency);
every other row is one amount of one order: ``transaction-type`` (Order, Refund, ...),
``amount-type`` (ItemPrice, Promotion, ItemFees, ...), ``amount-description`` (Principal,
Shipping, Tax, Commission, ...). Per order, what the customer paid is the sum of the
``Order`` rows of types ItemPrice and Promotion; the marketplace's fees (ItemFees and other
types) are summed apart; ``Refund`` rows are refunds to the customer. Amounts may use a
decimal point or comma (``1.234,56`` on amazon.de). A file without the required columns, a
row with an unreadable amount or a currency other than the summary's is rejected with the
line number.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from models.orders import CURRENCIES

__all__ = ["OrderSettlement", "Settlement", "SettlementError", "parse_settlement"]

REQUIRED = ("settlement-id", "total-amount", "currency", "transaction-type", "order-id",
            "amount-type", "amount-description", "amount")
PAID_TYPES = ("ItemPrice", "Promotion")
CENT = Decimal("0.01")


class SettlementError(ValueError):
    """Not a readable settlement report (the reason names the line)."""


@dataclass
class OrderSettlement:
    order_id: str  # the marketplace's order id
    paid: Decimal = Decimal("0.00")  # what the customer paid (prices, shipping, tax, promos)
    fees: Decimal = Decimal("0.00")  # the marketplace's fees (negative)
    refunded: Decimal = Decimal("0.00")  # refunds to the customer (negative)


@dataclass
class Settlement:
    settlement_id: str
    currency: str
    total: Decimal  # what was deposited
    deposit_date: str
    orders: list[OrderSettlement] = field(default_factory=list)
    other: Decimal = Decimal("0.00")  # rows without an order (subscription fee, reserves)


_AMOUNT = re.compile(r"^[+-]?\d[\d.,]*$")


def _amount(text: str, line: int) -> Decimal:
    value = text.strip().replace(" ", "")
    if value and not _AMOUNT.match(value):  # no NaN, Infinity, 1e3
        raise SettlementError(f"line {line}: not an amount: {text!r}")
    if "," in value and "." in value:
        value = value.replace(".", "").replace(",", ".") if value.rfind(",") > value.rfind(".") \
            else value.replace(",", "")
    elif "," in value:
        value = value.replace(",", ".")
    try:
        amount = Decimal(value or "0")
    except InvalidOperation:
        raise SettlementError(f"line {line}: not an amount: {text!r}") from None
    if amount != amount.quantize(CENT):
        raise SettlementError(f"line {line}: {text!r} has more than two decimals")
    return amount.quantize(CENT)


def parse_settlement(data: bytes, *, max_bytes: int) -> Settlement:
    """The payout per order of a settlement report, or ``SettlementError``."""
    if len(data) > max_bytes:
        raise SettlementError(f"file larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    # tab-separated without quoting: a cell starting with '"' is text, not a quoted field
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise SettlementError("not a settlement report (tab-separated with a header row): "
                              f"missing columns {', '.join(missing)}")
    try:
        rows = list(reader)
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise SettlementError(f"line {reader.line_num + 1}: {exc}") from None
    if not rows or not rows[0].get("total-amount", "").strip():
        raise SettlementError("line 2: the summary row (settlement-id, total-amount, "
                              "currency) is missing")
    summary = rows[0]
    settlement = Settlement(settlement_id=(summary.get("settlement-id") or "").strip(),
                            currency=(summary.get("currency") or "").strip(),
                            total=_amount(summary["total-amount"], 2),
                            deposit_date=(summary.get("deposit-date") or "").strip())
    if settlement.currency not in CURRENCIES:
        raise SettlementError(f"line 2: currency {settlement.currency!r} is not an ISO 4217 "
                              "code")
    per_order: dict[str, OrderSettlement] = {}
    for line, row in enumerate(rows[1:], start=3):
        amount = _amount(row.get("amount") or "", line)
        currency = (row.get("currency") or "").strip()
        if currency and currency != settlement.currency:
            raise SettlementError(f"line {line}: currency {currency}, the settlement is in "
                                  f"{settlement.currency}")
        order_id = (row.get("order-id") or "").strip()
        if not order_id:
            settlement.other += amount
            continue
        entry = per_order.setdefault(order_id, OrderSettlement(order_id))
        kind = (row.get("transaction-type") or "").strip()
        amount_type = (row.get("amount-type") or "").strip()
        if not kind:
            raise SettlementError(f"line {line}: order {order_id} without a transaction-type "
                                  "(a short row?)")
        if kind == "Refund":
            entry.refunded += amount
        elif kind == "Order" and amount_type in PAID_TYPES:
            entry.paid += amount
        else:
            entry.fees += amount
    settlement.orders = list(per_order.values())
    return settlement
