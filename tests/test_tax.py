"""VAT treatment and tax per rate (models/tax.py): pure functions, tested by tables."""

from __future__ import annotations

from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest

from models.tax import TaxConfig, classify, split_shipping, tax_amounts

CONFIG = TaxConfig()
BELOW_OSS = TaxConfig(oss=False)
GERMAN_VAT_ID = "DE136695976"
AUSTRIAN_VAT_ID = "ATU13585627"

# (name, customer type, vat id, country, config, treatment, rate map for 19 and 7, note part)
CLASSIFY = [
    ("b2c at home", "b2c", None, "DE", CONFIG, "domestic", {D(19): D(19), D(7): D(7)}, ""),
    ("b2c Austria over the OSS threshold", "b2c", None, "AT", CONFIG, "oss",
     {D(19): D(20), D(7): D(10)}, ""),
    ("b2c France: reduced 5.5 %", "b2c", None, "FR", CONFIG, "oss",
     {D(19): D(20), D(7): D("5.5")}, ""),
    ("b2c Austria below the threshold", "b2c", None, "AT", BELOW_OSS, "domestic",
     {D(19): D(19), D(7): D(7)}, ""),
    ("b2b Austria with a valid VAT id", "b2b", AUSTRIAN_VAT_ID, "AT", CONFIG, "reverse_charge",
     {D(19): D(0), D(7): D(0)}, "Reverse Charge"),
    ("b2b Austria, VAT id with a wrong check digit", "b2b", "ATU13585628", "AT", CONFIG,
     "domestic", {D(19): D(19), D(7): D(7)}, ""),
    ("b2b Austria without a VAT id", "b2b", None, "AT", CONFIG, "domestic",
     {D(19): D(19), D(7): D(7)}, ""),
    ("b2b at home with a VAT id: no reverse charge", "b2b", GERMAN_VAT_ID, "DE", CONFIG,
     "domestic", {D(19): D(19), D(7): D(7)}, ""),
    ("b2b Austria with a German VAT id: no reverse charge", "b2b", GERMAN_VAT_ID, "AT",
     CONFIG, "domestic", {D(19): D(19), D(7): D(7)}, ""),
    ("b2c Switzerland: export", "b2c", None, "CH", CONFIG, "export",
     {D(19): D(0), D(7): D(0)}, "Ausfuhrlieferung"),
    ("b2b USA: export", "b2b", None, "US", CONFIG, "export", {D(19): D(0), D(7): D(0)},
     "Ausfuhrlieferung"),
]


@pytest.mark.parametrize(("customer", "vat_id", "country", "config", "treatment", "rates", "note"),
                         [case[1:] for case in CLASSIFY], ids=[case[0] for case in CLASSIFY])
def test_classify(customer: str, vat_id: str | None, country: str, config: TaxConfig,
                  treatment: str, rates: dict[D, D], note: str) -> None:
    decision = classify(customer_type=customer, vat_id=vat_id, country=country,
                        line_rates=[D(19), D(7)], config=config)
    assert decision.treatment == treatment
    assert {rate: decision.rate(rate) for rate in rates} == rates
    assert note in decision.note and (note or decision.note == "")


def test_configured_rates_replace_only_their_countries() -> None:
    config = TaxConfig(rates={"AT": {"standard": "21", "reduced": "11"}})
    assert config.rates["AT"].standard == D(21)
    assert config.rates["FR"] == CONFIG.rates["FR"]  # the built-in table for the others
    assert set(config.rates) == set(CONFIG.rates)
    with pytest.raises(ValueError, match=r"tax\.rates lacks XX"):
        TaxConfig(home_country="XX", oss=False)


def test_a_special_line_rate_keeps_its_rate_under_oss() -> None:
    decision = classify(customer_type="b2c", vat_id=None, country="AT",
                        line_rates=[D(19), D(0)], config=CONFIG)
    assert (decision.rate(D(19)), decision.rate(D(0))) == (D(20), D(0))


@pytest.mark.parametrize(("shipping", "goods", "parts"), [
    ("4.90", {D(19): D("229.00")}, {D(19): D("4.90")}),
    ("4.90", {D(19): D("100.00"), D(7): D("100.00")}, {D(19): D("2.45"), D(7): D("2.45")}),
    ("5.00", {D(19): D("1.00"), D(7): D("2.00")}, {D(19): D("1.67"), D(7): D("3.33")}),
    ("0.01", {D(19): D("50"), D(7): D("50")}, {D(19): D("0.01"), D(7): D("0.00")}),
    ("4.90", {D(19): D("0"), D(7): D("0")}, {D(19): D("4.90"), D(7): D("0.00")}),
])
def test_shipping_is_split_in_proportion_and_adds_up(shipping: str, goods: dict[D, D],
                                                      parts: dict[D, D]) -> None:
    result = split_shipping(D(shipping), goods)
    assert result == parts
    assert sum(result.values()) == D(shipping)


def amounts(result: object) -> list[tuple[str, str, str, str]]:
    return [(str(a.rate), str(a.net), str(a.tax), str(a.gross))
            for a in result.amounts]  # type: ignore[attr-defined]


def domestic() -> object:
    return classify(customer_type="b2c", vat_id=None, country="DE",
                    line_rates=[D(19), D(7)], config=CONFIG)


# (name, lines (rate, amount), shipping, gross prices?, treatment country/type, expected rows)
AMOUNTS = [
    ("b2c one rate, shipping at 19 %", [(D(19), D("229.00"))], "4.90", True,
     ("b2c", None, "DE"), [("19", "196.55", "37.35", "233.90")]),
    ("b2c two rates, shipping split", [(D(19), D("229.00")), (D(7), D("39.90"))], "4.90",
     True, ("b2c", None, "DE"),
     # shipping 4.90 split 229.00 : 39.90 -> 4.17 + 0.73
     [("19", "195.94", "37.23", "233.17"), ("7", "37.97", "2.66", "40.63")]),
    ("b2b net, VAT per rate", [(D(19), D("10.01")), (D(19), D("10.01")), (D(7), D("3.33"))],
     "0.00", False, ("b2b", None, "DE"),
     [("19", "20.02", "3.80", "23.82"), ("7", "3.33", "0.23", "3.56")]),
    ("b2c Austria under OSS: 20 % / 10 %", [(D(19), D("120.00")), (D(7), D("11.00"))],
     "0.00", True, ("b2c", None, "AT"),
     [("20", "100.00", "20.00", "120.00"), ("10", "10.00", "1.00", "11.00")]),
    ("b2b reverse charge: 0 %", [(D(19), D("100.00")), (D(7), D("50.00"))], "10.00", False,
     ("b2b", AUSTRIAN_VAT_ID, "AT"), [("0", "160.00", "0.00", "160.00")]),
    ("export, gross prices kept, no VAT in them", [(D(19), D("229.00"))], "9.90", True,
     ("b2c", None, "CH"), [("0", "238.90", "0.00", "238.90")]),
]


@pytest.mark.parametrize(("lines", "shipping", "gross", "who", "expected"),
                         [case[1:] for case in AMOUNTS], ids=[case[0] for case in AMOUNTS])
def test_tax_amounts(lines: list[tuple[D, D]], shipping: str, gross: bool,
                     who: tuple[str, str | None, str], expected: list[tuple[str, ...]]) -> None:
    customer, vat_id, country = who
    decision = classify(customer_type=customer, vat_id=vat_id, country=country,
                        line_rates=[rate for rate, _ in lines], config=CONFIG)
    result = tax_amounts(lines, D(shipping), prices_gross=gross, decision=decision)
    assert amounts(result) == expected
    for row in result.amounts:
        assert row.net + row.tax == row.gross
    assert result.net + result.tax == result.gross
    priced = sum((amount for _, amount in lines), D(0)) + D(shipping)
    if gross:
        assert result.gross == priced  # gross prices: the customer pays what was priced
    else:
        assert result.net == priced


def test_rounding_many_small_lines_stays_consistent() -> None:
    lines = [(D(19), D("0.99"))] * 37 + [(D(7), D("1.01"))] * 13
    for gross in (True, False):
        result = tax_amounts(lines, D("3.95"), prices_gross=gross, decision=domestic())
        for row in result.amounts:
            assert row.net + row.tax == row.gross
        assert result.net + result.tax == result.gross


def test_net_prices_get_the_vat_datev_computes_from_the_gross() -> None:
    """DATEV's automatic revenue accounts take the gross of a booking and compute the VAT in
    it; for net prices our VAT per rate is the same, for any mix of line amounts."""
    decision = classify(customer_type="b2b", vat_id=None, country="DE",
                        line_rates=[D(19), D(7)], config=CONFIG)
    for cents in range(1, 400, 7):
        lines = [(D(19), D(cents) / 100)] * 10 + [(D(7), D(cents + 3) / 100)] * 3
        for row in tax_amounts(lines, D("4.95"), prices_gross=False,
                               decision=decision).amounts:
            in_gross = (row.gross * row.rate / (100 + row.rate)).quantize(D("0.01"),
                                                                          ROUND_HALF_UP)
            assert row.tax == in_gross, (cents, row)
