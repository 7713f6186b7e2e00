"""Payment matching (models/matching.py): a table of bank credits against open invoices."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from models.matching import Credit, OpenItem, match_credit, references_in

ITEMS = [
    OpenItem("webshop-100234", "RE-2026-000002", D("233.90"), "Anna Berg"),
    OpenItem("webshop-100235", "RE-2026-000003", D("59.00"), "Bernd Kraus"),
    OpenItem("webshop-100236", "RE-2026-000004", D("41.10"), "Bernd Kraus"),
    OpenItem("amazon-302-1", "RE-2026-000012", D("19.99"), "Clara Dorn"),
    OpenItem("webshop-100240", "RE-2026-000020", D("19.99"), "Dieter Ernst"),
]

# (name, amount, payer, remittance lines, outcome, {order: amount}, candidates, surplus)
CASES = [
    ("full payment by invoice number", "233.90", "ANNA BERG", ["RE-2026-000002"],
     "matched", {"webshop-100234": "233.90"}, [], "0.00"),
    ("partial payment, sloppy reference", "100.00", "Anna Berg", ["re 2026 0002 danke"],
     "partial", {"webshop-100234": "100.00"}, [], "0.00"),
    ("reference split over two Ustrd lines", "233.90", "A. Berg", ["Rechnung RE 2026", "-2"],
     "matched", {"webshop-100234": "233.90"}, [], "0.00"),
    ("order id instead of the invoice number", "59.00", "B. Kraus", ["Bestellung WEBSHOP 100235"],
     "matched", {"webshop-100235": "59.00"}, [], "0.00"),
    ("one transfer for two invoices", "100.10", "Bernd Kraus",
     ["RE2026000003 und RE2026000004"], "matched",
     {"webshop-100235": "59.00", "webshop-100236": "41.10"}, [], "0.00"),
    ("two invoices named, too little paid", "80.00", "Bernd Kraus",
     ["RE-2026-3, RE-2026-4"], "ambiguous", {}, ["webshop-100235", "webshop-100236"], "0.00"),
    ("overpayment: surplus reported", "250.00", "Anna Berg", ["RE-2026-000002"],
     "matched", {"webshop-100234": "233.90"}, [], "16.10"),
    ("no reference, amount and payer fit", "41.10", "KRAUS BERND", ["Danke"],
     "matched", {"webshop-100236": "41.10"}, [], "0.00"),
    ("no reference, amount fits two", "19.99", "Someone Else", [""],
     "ambiguous", {}, ["amazon-302-1", "webshop-100240"], "0.00"),
    ("unrelated entry", "12.34", "Stadtwerke Passau", ["Abschlag 11/2026"],
     "unmatched", {}, [], "0.00"),
    ("another invoice's number: the amount alone makes only a candidate", "233.90", "X",
     ["RE-2026-0000021"], "ambiguous", {}, ["webshop-100234"], "0.00"),
]


@pytest.mark.parametrize(("amount", "payer", "lines", "outcome", "paid", "candidates",
                          "surplus"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_credit(amount: str, payer: str, lines: list[str], outcome: str,
                      paid: dict[str, str], candidates: list[str], surplus: str) -> None:
    result = match_credit(Credit(D(amount), payer, lines), ITEMS)
    assert result.outcome == outcome, result.reason
    assert {m.order_id: m.amount for m in result.matches} == {k: D(v) for k, v in paid.items()}
    assert result.candidates == candidates
    assert result.surplus == D(surplus)
    assert sum((m.amount for m in result.matches), D(0)) + result.surplus in (D(amount), D(0))


def test_references_are_found_whatever_the_separators() -> None:
    for text in ("RE-2026-000002", "re2026000002", "RE 2026 2", "Re.2026/02", "RE_2026_0002"):
        assert [i.order_id for i in references_in([text], ITEMS)] == ["webshop-100234"], text
    assert references_in(["RE-2025-000002", "RE-2026-0000201", "XRE-2026-000002"], ITEMS) == []


def test_a_partial_invoice_number_finds_its_order() -> None:
    """A split order has a final invoice and partial ones; a transfer may name any."""
    split = OpenItem("webshop-100300", "RE-2026-000031", D("120.00"), "Eva Kern",
                     other_numbers=("RE-2026-000027",))
    result = match_credit(Credit(amount=D("59.80"), payer="E. Kern",
                                 remittance=["Teilrechnung re2026/27"]), [*ITEMS, split])
    assert (result.outcome, [m.order_id for m in result.matches]) == ("partial",
                                                                      ["webshop-100300"])
    assert references_in(["RE-2026-000027"], ITEMS) == []


def test_a_cancelled_order_is_named_by_reference_only() -> None:
    cancelled = OpenItem("webshop-100250", None, D("59.00"), "Bernd Kraus", cancelled=True)
    items = [cancelled, OpenItem("webshop-100251", None, D("12.00"), "Anna Berg")]

    by_amount = match_credit(Credit(D("59.00"), "Bernd Kraus", ["Danke"]), items)
    by_reference = match_credit(Credit(D("59.00"), "Bernd Kraus", ["webshop 100250"]), items)

    assert (by_amount.outcome, by_amount.matches) == ("unmatched", [])
    assert by_reference.outcome == "matched"  # the import then finds the order closed
    assert [m.order_id for m in by_reference.matches] == ["webshop-100250"]


def test_part_of_a_collective_invoice_settles_its_orders_in_turn() -> None:
    """A collective invoice is one number over several orders; a transfer of part of it
    pays them as they are listed (oldest first), the rest stays open."""
    month = [OpenItem(f"b2b-{n}", "RE-2026-000050", D(amount), "Bau AG")
             for n, amount in ((1, "100.00"), (2, "80.00"), (3, "20.00"))]
    other = OpenItem("b2b-9", "RE-2026-000051", D("30.00"), "Bau AG")

    part = match_credit(Credit(D("150.00"), "Bau AG", ["RE 2026 50 abzgl. Reklamation"]),
                        [*month, other])
    whole = match_credit(Credit(D("200.00"), "Bau AG", ["RE-2026-000050"]), [*month, other])
    two = match_credit(Credit(D("150.00"), "Bau AG", ["RE-2026-000050 RE-2026-000051"]),
                       [*month, other])

    assert part.outcome == "partial" and part.surplus == D(0)
    assert [(m.order_id, m.amount) for m in part.matches] == [("b2b-1", D("100.00")),
                                                              ("b2b-2", D("50.00"))]
    assert whole.outcome == "matched"
    assert [m.amount for m in whole.matches] == [D("100.00"), D("80.00"), D("20.00")]
    assert (two.outcome, two.matches) == ("ambiguous", [])
    assert two.candidates == ["b2b-1", "b2b-2", "b2b-3", "b2b-9"]
