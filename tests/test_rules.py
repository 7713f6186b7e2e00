"""Unit tests of the pure order rules (models/rules.py): totals, checks, address matching."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from models.orders import Address, HoldReason, OrderIn
from models.rules import check_order, compute_totals, normalize_address, vat_by_rate
from models.tax import TaxConfig

KNOWN = {"TENT-2P", "STOVE-GAS", "GAS-230", "CHEAP-1"}


def line(sku: str, unit_price: str, quantity: int = 1, tax_rate: str = "19") -> dict[str, Any]:
    return {"sku": sku, "name": sku.title(), "quantity": quantity, "unit_price": unit_price,
            "tax_rate": tax_rate}


def address(**changes: Any) -> dict[str, Any]:
    return {"name": "Anna Berg", "company": None, "street": "Lindenweg 4",
            "postal_code": "94032", "city": "Passau", "country": "DE", **changes}


def order(**changes: Any) -> OrderIn:
    """The contract's example order (b2c, one tent, 233.90), with ``changes`` applied."""
    data: dict[str, Any] = {
        "channel": "webshop", "external_id": "100234", "placed_at": "2026-11-25T09:14:00+01:00",
        "currency": "EUR",
        "customer": {"email": "anna@example.de", "first_name": "Anna", "last_name": "Berg",
                     "type": "b2c"},
        "billing_address": address(), "shipping_address": None,
        "lines": [line("TENT-2P", "229.00")],
        "shipping": {"method": "standard", "price": "4.90"},
        "payment": {"method": "prepaid"},
        "comment": None, "total": "233.90",
    }
    customer_type = changes.pop("customer_type", None)
    if customer_type:
        data["customer"]["type"] = customer_type
    data.update(changes)
    return OrderIn.model_validate(data)


# --- totals ------------------------------------------------------------------------------

TOTALS = [
    pytest.param(dict(), "229.00", "4.90", "233.90", id="b2c-contract-example"),
    pytest.param(dict(lines=[line("STOVE-GAS", "44.90", 2), line("GAS-230", "6.90", 3, "7")]),
                 "110.50", "4.90", "115.40", id="b2c-gross-mixed-rates"),
    pytest.param(dict(customer_type="b2b", shipping={"price": "5.00"},
                      lines=[line("TENT-2P", "100.00"), line("GAS-230", "10.00", 1, "7")]),
                 # shipping 5.00 split 100 : 10 -> 4.55 at 19 %, 0.45 at 7 %
                 "110.00", "5.00", "135.59", id="b2b-net-plus-vat-shipping-split"),
    pytest.param(dict(customer_type="b2b", shipping={"price": "5.00"},
                      lines=[line("GAS-230", "10.00", 1, "7")]),
                 "10.00", "5.00", "16.05", id="b2b-shipping-at-the-lines-rate-7"),
    pytest.param(dict(customer_type="b2b", shipping={"price": "0"},
                      lines=[line("CHEAP-1", "0.10", 1, "7"), line("GAS-230", "0.10", 1, "7")]),
                 "0.20", "0.00", "0.21", id="b2b-vat-rounded-per-rate"),  # not 0.01 + 0.01
    pytest.param(dict(customer_type="b2b", shipping={"price": "0"},
                      lines=[line(f"MUG-{n}", "12.66") for n in range(10)]),
                 # 126.60 net: VAT 24.05 once per rate (per line it would be 10 x 2.41)
                 "126.60", "0.00", "150.65", id="b2b-ten-lines-one-rate"),
    pytest.param(dict(customer_type="b2b", shipping={"price": "0"},
                      lines=[line("CHEAP-1", "0.25", 1, "10")]),
                 "0.25", "0.00", "0.28", id="b2b-round-half-up"),
]


@pytest.mark.parametrize(("changes", "goods", "shipping", "total"), TOTALS)
def test_compute_totals(changes: dict[str, Any], goods: str, shipping: str, total: str) -> None:
    totals = compute_totals(order(**changes, total=None))
    assert (totals.goods, totals.shipping, totals.total) == (
        Decimal(goods), Decimal(shipping), Decimal(total))
    assert totals.open == totals.total and totals.paid == 0


def test_totals_follow_the_tax_treatment() -> None:
    austria = {"name": "Firma", "street": "Ring 1", "postal_code": "1010", "city": "Wien",
               "country": "AT"}
    b2b = order(customer_type="b2b", shipping={"price": "5.00"}, billing_address=austria,
                lines=[line("TENT-2P", "100.00")], total=None)
    assert compute_totals(b2b).total == Decimal("124.95")  # no VAT id: German VAT
    b2b.customer.vat_id = "ATU13585627"
    assert compute_totals(b2b).total == Decimal("105.00")  # reverse charge: net only
    swiss = {**austria, "country": "CH", "city": "Basel", "postal_code": "4051"}
    export = order(billing_address=swiss, total=None)
    assert compute_totals(export).total == Decimal("233.90")  # the gross price, no VAT in it
    assert vat_by_rate(export) == {Decimal("0"): Decimal("0.00")}


def test_compute_totals_keeps_the_given_total() -> None:
    assert compute_totals(order(total="230.00")).given_total == Decimal("230.00")


def test_vat_by_rate() -> None:
    b2b = order(customer_type="b2b", shipping={"price": "5.00"},
                lines=[line("TENT-2P", "100.00"), line("GAS-230", "10.00", 1, "7")])
    assert vat_by_rate(b2b) == {Decimal("19"): Decimal("19.86"), Decimal("7"): Decimal("0.73")}
    assert vat_by_rate(order()) == {Decimal("19"): Decimal("37.35")}  # 233.90 * 19 / 119


# --- checks ------------------------------------------------------------------------------

CHECKS = [
    pytest.param(dict(), [], id="ok"),
    pytest.param(dict(total=None), [], id="no-total-given"),
    pytest.param(dict(total="233.9"), [], id="same-total-other-scale"),
    pytest.param(dict(total="230.00"), [HoldReason.TOTAL_MISMATCH], id="total-mismatch"),
    pytest.param(dict(lines=[line("NOPE-1", "229.00")]), [HoldReason.UNKNOWN_SKU],
                 id="unknown-sku"),
    pytest.param(dict(billing_address=address(street="")), [HoldReason.INCOMPLETE_ADDRESS],
                 id="no-street"),
    pytest.param(dict(billing_address=address(name="", city="")),
                 [HoldReason.INCOMPLETE_ADDRESS], id="no-name-no-city"),
    pytest.param(dict(billing_address=address(postal_code="9403")),
                 [HoldReason.INCOMPLETE_ADDRESS], id="german-postal-code-4-digits"),
    pytest.param(dict(billing_address=address(postal_code="94O32")),
                 [HoldReason.INCOMPLETE_ADDRESS], id="german-postal-code-letter"),
    pytest.param(dict(billing_address=address(postal_code="1010", city="Wien", country="AT")),
                 [], id="austrian-postal-code-4-digits"),
    pytest.param(dict(billing_address=address(street=""), shipping_address=address()), [],
                 id="delivery-address-counts-not-billing"),
    pytest.param(dict(shipping_address=address(postal_code="")),
                 [HoldReason.INCOMPLETE_ADDRESS], id="shipping-address-incomplete"),
    pytest.param(dict(comment="Bitte beim Nachbarn abgeben"), [HoldReason.CUSTOMER_COMMENT],
                 id="comment"),
    pytest.param(dict(comment="   "), [], id="blank-comment"),
    pytest.param(dict(total="1.00", lines=[line("NOPE-1", "229.00")], comment="Eilig!",
                      billing_address=address(city="")),
                 [HoldReason.TOTAL_MISMATCH, HoldReason.UNKNOWN_SKU,
                  HoldReason.INCOMPLETE_ADDRESS, HoldReason.CUSTOMER_COMMENT],
                 id="everything-at-once"),
]


@pytest.mark.parametrize(("changes", "reasons"), CHECKS)
def test_check_order_reasons(changes: dict[str, Any], reasons: list[HoldReason]) -> None:
    holds = check_order(order(**changes), known_skus=KNOWN)
    assert [hold.reason for hold in holds] == reasons


def test_check_order_details_name_what_is_wrong() -> None:
    holds = check_order(
        order(total="230.00", lines=[line("NOPE-2", "229.00"), line("NOPE-1", "0.00"),
                                     line("TENT-2P", "0.00")],
              billing_address=address(postal_code="9403"), comment="Bitte klingeln"),
        known_skus=KNOWN)
    detail = {hold.reason: hold.detail for hold in holds}
    assert "230.00" in detail[HoldReason.TOTAL_MISMATCH]
    assert "233.90" in detail[HoldReason.TOTAL_MISMATCH]
    assert "NOPE-1, NOPE-2" in detail[HoldReason.UNKNOWN_SKU]
    assert "TENT-2P" not in detail[HoldReason.UNKNOWN_SKU]
    assert "9403" in detail[HoldReason.INCOMPLETE_ADDRESS]
    assert detail[HoldReason.CUSTOMER_COMMENT] == "Bitte klingeln"


def test_long_comment_is_shortened() -> None:
    comment = "Bitte das Paket " + "sehr " * 300 + "vorsichtig behandeln."
    (hold,) = check_order(order(comment=comment), known_skus=KNOWN)
    assert hold.reason == HoldReason.CUSTOMER_COMMENT
    assert hold.detail.startswith("Bitte das Paket sehr") and hold.detail.endswith("…")
    assert len(hold.detail) <= 200


# --- address matching --------------------------------------------------------------------

SAME = [
    pytest.param(dict(street="Lindenweg 4"), dict(street="lindenweg  4"), id="case-spaces"),
    pytest.param(dict(street="Hauptstr. 1"), dict(street="Hauptstraße 1"), id="str-strasse"),
    pytest.param(dict(street="Hauptstrasse 1"), dict(street="HAUPTSTRASSE 1"), id="strasse"),
    pytest.param(dict(street="Karl-Marx-Str. 12"), dict(street="Karl Marx Straße 12"),
                 id="hyphens"),
    pytest.param(dict(street="Lindenweg 4a"), dict(street="Lindenweg 4 A"), id="house-letter"),
    pytest.param(dict(name="Anna Berg", city="Passau"), dict(name="anna berg ", city="PASSAU"),
                 id="name-city-case"),
    pytest.param(dict(company=None), dict(company=""), id="no-company"),
]

DIFFERENT = [
    pytest.param(dict(street="Lindenweg 4"), dict(street="Lindenweg 14"), id="house-number"),
    pytest.param(dict(postal_code="94032"), dict(postal_code="94034"), id="postal-code"),
    pytest.param(dict(country="DE"), dict(country="AT"), id="country"),
    pytest.param(dict(name="Anna Berg"), dict(name="Bernd Berg"), id="recipient"),
]


def _addr(**changes: Any) -> Address:
    return Address.model_validate(address(**changes))


@pytest.mark.parametrize(("left", "right"), SAME)
def test_normalize_address_equivalent(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert normalize_address(_addr(**left)) == normalize_address(_addr(**right))


@pytest.mark.parametrize(("left", "right"), DIFFERENT)
def test_normalize_address_different(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert normalize_address(_addr(**left)) != normalize_address(_addr(**right))


def test_normalize_address_shape() -> None:
    key = normalize_address(_addr(street="Hauptstraße 1", company="Berg & Söhne GmbH"))
    assert key == "anna berg|berg söhne gmbh|hauptstr 1|94032|passau|DE"
    assert "|strassenbahnweg 2|" in normalize_address(_addr(street="Strassenbahnweg 2"))
    assert "|am strand 1|" in normalize_address(_addr(street="Am Strand 1"))
    long = normalize_address(_addr(name="x" * 200, company="y" * 200, street="z" * 200))
    assert len(long) <= 400


def test_the_total_check_uses_the_shop_tax_rules() -> None:
    """An Austrian shop selling to an Austrian business: domestic VAT, so the total the shop
    sends includes it; under the German defaults the same order would be a tax-free
    intra-EU supply (reverse charge) and the total would not match."""
    austrian_shop = TaxConfig(home_country="AT")
    b2b = order(customer={"email": "einkauf@bau.example", "first_name": "Eva",
                          "last_name": "Kern", "type": "b2b", "company": "Bau GmbH",
                          "vat_id": "ATU13585627"},
                billing_address=address(country="AT", postal_code="1010", city="Wien"),
                lines=[line("TENT-2P", "100.00", 1, "20")], shipping={"price": "0"},
                total="120.00")

    assert check_order(b2b, known_skus=KNOWN, tax=austrian_shop) == []
    assert [h.reason for h in check_order(b2b, known_skus=KNOWN)] == [
        HoldReason.TOTAL_MISMATCH]
