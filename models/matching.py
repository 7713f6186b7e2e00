"""Payment matching: which open invoices a bank credit pays. Pure, table-tested.

A credit (one entry of a bank statement) carries an amount, the payer's name and the
remittance lines (``Ustrd``). It is matched, in this order:

1. **By reference**: every open item whose invoice number or order id appears in the
   remittance text, tolerant of case, spacing, separators and leading zeros
   (``"re 2026 0002"`` finds ``RE-2026-000002``). One item: the credit pays it (all of it,
   or part: the rest stays open; more than open: the surplus is reported). Several items:
   the credit pays them all when it covers their sum. Less than their sum: when they are
   the orders of one invoice (a collective invoice), the part paid settles them in turn as
   the items are listed (oldest order first), the rest stays open; several invoices named
   with too little money are ambiguous.
2. **By amount and payer**: without a reference, exactly one open item with this open
   amount and a payer whose name shares a word with the customer's. Cancelled orders are
   never matched this way (only a reference names them, and the bank import then opens a
   ticket: the order is closed).

Anything else is ``unmatched`` or ``ambiguous``, with the candidates for a human.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

__all__ = ["Credit", "Match", "MatchResult", "OpenItem", "match_credit", "references_in"]

Outcome = Literal["matched", "partial", "ambiguous", "unmatched"]
_NUMBER = re.compile(r"^([A-Z]+)[\W_]*(\d{4})[\W_]*(\d+)$")
_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class OpenItem:
    order_id: str
    invoice_number: str | None
    open_amount: Decimal
    customer_name: str
    other_numbers: tuple[str, ...] = ()  # the order's partial invoices (split shipments)
    cancelled: bool = False  # a cancelled order: named by a reference only, never by amount


@dataclass(frozen=True)
class Credit:
    amount: Decimal
    payer: str
    remittance: Sequence[str]  # the Ustrd lines


@dataclass(frozen=True)
class Match:
    order_id: str
    amount: Decimal


@dataclass(frozen=True)
class MatchResult:
    outcome: Outcome
    matches: list[Match] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # order ids for the ticket
    surplus: Decimal = Decimal("0.00")  # paid beyond what was open
    reason: str = ""


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).upper()


def _number_pattern(number: str) -> re.Pattern[str] | None:
    """``RE-2026-000002`` -> a pattern for RE, 2026 and 2 with any separators and zeros."""
    parts = _NUMBER.match(number.upper().strip())
    if parts is None:
        return None
    prefix, year, sequence = parts.group(1), parts.group(2), int(parts.group(3))
    return re.compile(rf"(?<![A-Z0-9]){prefix}[\W_]*{year}[\W_]*0*{sequence}(?![0-9])")


def references_in(remittance: Sequence[str], items: Sequence[OpenItem]) -> list[OpenItem]:
    """The open items the remittance lines name (invoice number or order id)."""
    text = " ".join(remittance).upper()
    squashed = _squash(text)
    found = []
    for item in items:
        numbers = [n for n in (item.invoice_number, *item.other_numbers) if n]
        patterns = [p for p in map(_number_pattern, numbers) if p is not None]
        if any(p.search(text) for p in patterns) or _squash(item.order_id) in squashed:
            found.append(item)
    return found


def _words(name: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(name)}


def _in_turn(amount: Decimal, items: Sequence[OpenItem]) -> list[Match]:
    """``amount`` spread over ``items`` in their order, each paid in full while it lasts."""
    matches = []
    rest = amount
    for item in items:
        if rest <= 0:
            break
        paid = min(rest, item.open_amount)
        matches.append(Match(item.order_id, paid))
        rest -= paid
    return matches


def match_credit(credit: Credit, items: Sequence[OpenItem]) -> MatchResult:
    """Match one credit against the open items (see the module docstring)."""
    named = references_in(credit.remittance, items)
    if len(named) == 1:
        item = named[0]
        paid = min(credit.amount, item.open_amount)
        outcome: Outcome = "matched" if credit.amount >= item.open_amount else "partial"
        return MatchResult(outcome, [Match(item.order_id, paid)],
                           surplus=credit.amount - paid, reason="reference")
    if len(named) > 1:
        total = sum((i.open_amount for i in named), Decimal(0))
        if credit.amount >= total:
            return MatchResult("matched", [Match(i.order_id, i.open_amount) for i in named],
                               surplus=credit.amount - total, reason="references")
        numbers = {i.invoice_number for i in named}
        if len(numbers) == 1 and None not in numbers:  # one invoice over several orders
            return MatchResult("partial", _in_turn(credit.amount, named),
                               reason=f"pays {credit.amount} of {total} on {numbers.pop()}, "
                                      "oldest order first")
        return MatchResult("ambiguous", candidates=[i.order_id for i in named],
                           reason=f"names {len(named)} invoices but pays {credit.amount} of "
                                  f"{total}")
    same_amount = [i for i in items if i.open_amount == credit.amount and not i.cancelled]
    payer = _words(credit.payer)
    by_name = [i for i in same_amount if payer & _words(i.customer_name)]
    if len(by_name) == 1:
        return MatchResult("matched", [Match(by_name[0].order_id, credit.amount)],
                           reason="amount and payer")
    if same_amount:
        return MatchResult("ambiguous", candidates=[i.order_id for i in same_amount],
                           reason="no reference; the amount fits several open items"
                           if len(same_amount) > 1 else
                           "no reference; the amount fits, the payer's name does not")
    return MatchResult("unmatched", reason="no reference and no open item of this amount")
