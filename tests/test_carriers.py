"""Unit tests of the carrier matrix (models/carriers.py): config, packing, selection."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from models.carriers import (
    RULES,
    Box,
    Carrier,
    CarrierDecision,
    CarrierQuote,
    Parcel,
    ParcelItem,
    ShipmentNeeds,
    explain,
    pack_parcel,
    select_carrier,
)

# Three carriers as an operator would write them in the config file. Floats are read as
# Decimal (tomllib's parse_float), so prices never pass through binary floating point.
GERMAN_CARRIERS_TOML = """
[[carriers]]
code = "DHL"
name = "DHL Paket"
services = ["standard", "cod"]
max_weight_g = 31500
max_length_mm = 1200
max_girth_mm = 3000
hazardous_goods = false
age_check = true
tracking_url = "https://www.dhl.de/de/privatkunden/dhl-sendungsverfolgung.html?piececode={tracking_number}"
zones = { DE = ["DE"], EU = ["AT", "BE", "NL", "FR", "PL", "CZ", "DK"] }
transit_days = { DE = 2, EU = 4 }
[carriers.prices]
DE = [{ max_weight_g = 2000, price = 4.50 }, { max_weight_g = 5000, price = 5.49 },
      { max_weight_g = 10000, price = 6.99 }, { max_weight_g = 31500, price = 10.49 }]
EU = [{ max_weight_g = 5000, price = 14.49 }, { max_weight_g = 31500, price = 31.99 }]

[[carriers]]
code = "DPD"
name = "DPD Classic"
services = ["standard"]
max_weight_g = 31500
max_length_mm = 1750
max_girth_mm = 3000
tracking_url = "https://tracking.dpd.de/status/de_DE/parcel/{tracking_number}"
zones = { DE = ["DE"], EU = ["AT", "BE", "NL", "FR", "PL", "CZ", "DK"], CH = ["CH"] }
transit_days = { DE = 1, EU = 3, CH = 4 }
[carriers.prices]
DE = [{ max_weight_g = 3000, price = 4.80 }, { max_weight_g = 31500, price = 8.90 }]
EU = [{ max_weight_g = 31500, price = 18.50 }]
CH = [{ max_weight_g = 20000, price = 24.90 }]

[[carriers]]
code = "GO"
name = "GO! Express"
services = ["express"]
max_weight_g = 50000
max_length_mm = 2000
hazardous_goods = true
age_check = true
tracking_url = "https://www.general-overnight.com/deu_de/sendungsverfolgung.html?reference={tracking_number}"
zones = { DE = ["DE"], EU = ["AT"] }
transit_days = { DE = 1, EU = 2 }
[carriers.prices]
DE = [{ max_weight_g = 5000, price = 19.90 }, { max_weight_g = 50000, price = 39.90 }]
EU = [{ max_weight_g = 50000, price = 59.00 }]
"""


@pytest.fixture(scope="module")
def german_carriers() -> list[Carrier]:
    config = tomllib.loads(GERMAN_CARRIERS_TOML, parse_float=Decimal)
    return [Carrier.model_validate(carrier) for carrier in config["carriers"]]


def carrier(**changes: Any) -> Carrier:
    """A plain test carrier (code T, zones DE and EU, 31.5 kg, 120 cm, 300 cm girth)."""
    data: dict[str, Any] = {
        "code": "T", "name": "Test Paket", "services": {"standard", "express", "cod"},
        "zones": {"DE": ["DE"], "EU": ["AT", "FR"]},
        "prices": {"DE": [{"max_weight_g": 31500, "price": "5.00"}],
                   "EU": [{"max_weight_g": 31500, "price": "15.00"}]},
        "transit_days": {"DE": 1, "EU": 3},
        "max_weight_g": 31500, "max_length_mm": 1200, "max_girth_mm": 3000,
        "hazardous_goods": False, "age_check": False,
        "tracking_url": "https://track.example/{tracking_number}",
        **changes,
    }
    return Carrier.model_validate(data)


def parcel(**changes: Any) -> Parcel:
    data: dict[str, Any] = {"weight_g": 2000, "length_mm": 400, "width_mm": 300,
                            "height_mm": 200, **changes}
    return Parcel.model_validate(data)


def needs(**changes: Any) -> ShipmentNeeds:
    return ShipmentNeeds.model_validate({"country": "DE", **changes})


def item(sku: str, dims: tuple[int, int, int], weight_g: int = 1000, quantity: int = 1,
         **flags: bool) -> ParcelItem:
    length, width, height = dims
    return ParcelItem(sku=sku, quantity=quantity, weight_g=weight_g, length_mm=length,
                      width_mm=width, height_mm=height, **flags)


# --- each rule ---------------------------------------------------------------------------

RULE_CASES = [
    pytest.param({}, {}, {}, None, id="fits"),
    pytest.param({}, dict(weight_g=32500), {},
                 "weight 32500 g over the limit of 31500 g", id="weight"),
    pytest.param({}, dict(weight_g=31500), {}, None, id="weight-at-limit"),
    pytest.param({}, dict(length_mm=1300), {}, "length 1300 mm over 1200 mm", id="length"),
    pytest.param({}, dict(length_mm=100, width_mm=1300, height_mm=50), {},
                 "length 1300 mm over 1200 mm", id="length-is-the-longest-side"),
    pytest.param({}, dict(length_mm=1200, width_mm=100, height_mm=100), {}, None,
                 id="length-at-limit"),
    pytest.param({}, dict(length_mm=1000, width_mm=500, height_mm=550), {},
                 "girth 3100 mm over 3000 mm", id="girth"),
    pytest.param({}, dict(length_mm=1000, width_mm=500, height_mm=500), {}, None,
                 id="girth-at-limit"),
    pytest.param(dict(max_girth_mm=None), dict(length_mm=1000, width_mm=500, height_mm=550),
                 {}, None, id="no-girth-limit"),
    pytest.param({}, {}, dict(country="CH"), "does not serve country CH", id="country"),
    pytest.param({}, {}, dict(country="FR"), None, id="country-in-second-zone"),
    pytest.param(dict(services={"standard"}), {}, dict(express=True), "no express service",
                 id="express"),
    pytest.param(dict(services={"express"}), {}, {}, "no standard service", id="standard"),
    pytest.param(dict(services={"express", "cod"}), {}, dict(express=True, cod=True), None,
                 id="express-cod-without-standard"),
    pytest.param(dict(services={"standard"}), {}, dict(cod=True), "no cash on delivery",
                 id="cod"),
    pytest.param({}, dict(hazardous=True), {}, "no hazardous goods", id="hazardous"),
    pytest.param(dict(hazardous_goods=True), dict(hazardous=True), {}, None,
                 id="hazardous-allowed"),
    pytest.param({}, dict(age_check=True), {}, "no age check", id="age-check"),
    pytest.param(dict(age_check=True), dict(age_check=True), {}, None, id="age-check-offered"),
    pytest.param(dict(max_weight_g=40000), dict(weight_g=32500), dict(country="AT"),
                 "no price for 32500 g in zone EU", id="missing-price-band"),
]


@pytest.mark.parametrize(("carrier_changes", "parcel_changes", "needs_changes", "reason"),
                         RULE_CASES)
def test_each_rule(carrier_changes: dict[str, Any], parcel_changes: dict[str, Any],
                   needs_changes: dict[str, Any], reason: str | None) -> None:
    decision = select_carrier(parcel(**parcel_changes), needs(**needs_changes),
                              [carrier(**carrier_changes)])
    if reason is None:
        assert decision.chosen is not None and decision.excluded == {}
    else:
        assert decision.chosen is None and decision.excluded == {"T": reason}


def test_rules_are_checked_in_documented_order() -> None:
    """A parcel that breaks every rule; lifting one limit at a time shows the next rule."""
    bad_parcel = parcel(weight_g=40000, length_mm=1300, width_mm=900, height_mm=900,
                        hazardous=True, age_check=True)
    bad_needs = needs(country="CH", express=True, cod=True)
    lifted: dict[str, Any] = {"services": {"standard"}}
    steps = [  # (the reason now, the change that lifts that rule)
        ("no express service", {"services": {"standard", "express"}}),
        ("no cash on delivery", {"services": {"express", "cod"}}),
        ("does not serve country CH", {"zones": {"DE": ["DE"], "EU": ["AT", "FR", "CH"]}}),
        ("weight 40000 g over the limit of 31500 g", {"max_weight_g": 50000}),
        ("length 1300 mm over 1200 mm", {"max_length_mm": 2000}),
        ("girth 4900 mm over 3000 mm", {"max_girth_mm": None}),
        ("no hazardous goods", {"hazardous_goods": True}),
        ("no age check", {"age_check": True}),
        ("no price for 40000 g in zone EU", {}),
    ]
    reasons = []
    for _, lift in steps:
        reasons.append(select_carrier(bad_parcel, bad_needs, [carrier(**lifted)]).excluded["T"])
        lifted.update(lift)
    assert reasons == [reason for reason, _ in steps]
    assert len(steps) == len(RULES)


# --- choosing ------------------------------------------------------------------------------

def _prices(de: str) -> dict[str, Any]:
    return {"DE": [{"max_weight_g": 31500, "price": de}],
            "EU": [{"max_weight_g": 31500, "price": "15.00"}]}


CHOICES = [
    pytest.param([("A", "6.00", 1), ("B", "5.00", 3)], "B", ["B", "A"], id="cheapest-wins"),
    pytest.param([("A", "5.00", 3), ("B", "5.00", 1)], "B", ["B", "A"],
                 id="tie-fewer-transit-days"),
    pytest.param([("B", "5.00", 2), ("A", "5.00", 2)], "A", ["A", "B"], id="tie-code"),
    pytest.param([("C", "5.0", 2), ("A", "5.00", 2), ("B", "4.99", 5)], "B", ["B", "A", "C"],
                 id="decimal-scale-does-not-matter"),
]


@pytest.mark.parametrize(("offers", "chosen", "order"), CHOICES)
def test_choice(offers: list[tuple[str, str, int]], chosen: str, order: list[str]) -> None:
    carriers = [carrier(code=code, prices=_prices(price), transit_days={"DE": days, "EU": 3})
                for code, price, days in offers]
    decision = select_carrier(parcel(), needs(), carriers)
    assert decision.chosen is not None and decision.chosen.carrier == chosen
    assert [quote.carrier for quote in decision.quotes] == order


def test_price_band_is_inclusive_and_first_match() -> None:
    bands = {"DE": [{"max_weight_g": 1000, "price": "3.00"},
                    {"max_weight_g": 5000, "price": "4.00"}],
             "EU": [{"max_weight_g": 5000, "price": "9.00"}]}
    prices = [select_carrier(parcel(weight_g=weight), needs(),
                             [carrier(prices=bands)]).chosen for weight in (1000, 1001, 5000)]
    assert [quote.price if quote else None for quote in prices] == [
        Decimal("3.00"), Decimal("4.00"), Decimal("4.00")]


GERMAN_CASES = [
    pytest.param(dict(weight_g=1500), {}, "DHL", Decimal("4.50"),
                 {"GO": "no standard service"}, id="light-standard-dhl"),
    pytest.param(dict(weight_g=2500), {}, "DPD", Decimal("4.80"),
                 {"GO": "no standard service"}, id="heavier-standard-dpd"),
    pytest.param({}, dict(express=True), "GO", Decimal("19.90"),
                 {"DHL": "no express service", "DPD": "no express service"}, id="express-go"),
    pytest.param({}, dict(cod=True), "DHL", Decimal("4.50"),
                 {"DPD": "no cash on delivery", "GO": "no standard service"}, id="cod-dhl"),
    pytest.param({}, dict(country="CH"), "DPD", Decimal("24.90"),
                 {"DHL": "does not serve country CH", "GO": "no standard service"},
                 id="switzerland-dpd"),
    pytest.param(dict(age_check=True), {}, "DHL", Decimal("4.50"),
                 {"DPD": "no age check", "GO": "no standard service"}, id="age-check-dhl"),
    pytest.param(dict(length_mm=1500, width_mm=150, height_mm=150), {}, "DPD", Decimal("4.80"),
                 {"DHL": "length 1500 mm over 1200 mm", "GO": "no standard service"},
                 id="long-parcel-dpd"),
    pytest.param(dict(hazardous=True), dict(express=True, country="AT"), "GO", Decimal("59.00"),
                 {"DHL": "no express service", "DPD": "no express service"},
                 id="hazardous-express-austria-go"),
]


@pytest.mark.parametrize(("parcel_changes", "needs_changes", "chosen", "price", "excluded"),
                         GERMAN_CASES)
def test_german_setup(german_carriers: list[Carrier], parcel_changes: dict[str, Any],
                      needs_changes: dict[str, Any], chosen: str, price: Decimal,
                      excluded: dict[str, str]) -> None:
    decision = select_carrier(parcel(**{"weight_g": 1500, **parcel_changes}),
                              needs(**needs_changes), german_carriers)
    assert decision.chosen is not None
    assert (decision.chosen.carrier, decision.chosen.price) == (chosen, price)
    assert decision.excluded == excluded


def test_no_carrier_fits_names_every_carrier(german_carriers: list[Carrier]) -> None:
    decision = select_carrier(parcel(weight_g=25000), needs(country="CH"), german_carriers)
    assert decision.chosen is None and decision.quotes == []
    assert decision.excluded == {"DHL": "does not serve country CH",
                                 "DPD": "no price for 25000 g in zone CH",
                                 "GO": "no standard service"}
    assert explain(decision) == ("DHL: excluded, does not serve country CH\n"
                                 "DPD: excluded, no price for 25000 g in zone CH\n"
                                 "GO: excluded, no standard service")


def test_explain_lists_chosen_then_quotes_then_excluded(german_carriers: list[Carrier]) -> None:
    decision = select_carrier(parcel(weight_g=1500), needs(), german_carriers)
    assert explain(decision) == ("DHL: chosen, 4.50 in zone DE, 2 transit days\n"
                                 "DPD: fits, 4.80 in zone DE, 1 transit day\n"
                                 "GO: excluded, no standard service")


def test_decision_round_trips_as_payload(german_carriers: list[Carrier]) -> None:
    decision = select_carrier(parcel(), needs(), german_carriers)
    assert CarrierDecision.model_validate_json(decision.model_dump_json()) == decision
    assert decision.chosen == CarrierQuote(carrier="DHL", price=Decimal("4.50"),
                                           transit_days=2, zone="DE")


def test_duplicate_carrier_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="carrier code T is configured twice"):
        select_carrier(parcel(), needs(), [carrier(), carrier(services={"express"})])


def test_tracking_link(german_carriers: list[Carrier]) -> None:
    assert german_carriers[1].tracking_link("0123") == (
        "https://tracking.dpd.de/status/de_DE/parcel/0123")


# --- packing -------------------------------------------------------------------------------

BOXES = [
    Box(code="L", length_mm=600, width_mm=400, height_mm=400, weight_g=600),
    Box(code="S", length_mm=250, width_mm=175, height_mm=100, weight_g=150),
    Box(code="M", length_mm=400, width_mm=300, height_mm=200, weight_g=350),
]

PACKING = [
    pytest.param([item("A", (300, 200, 100), 800)], [], 0, 800, (300, 200, 100), None,
                 id="no-boxes-item-size"),
    pytest.param([item("A", (100, 300, 200), 800, 3)], [], 120, 2520, (300, 200, 100), None,
                 id="quantity-and-packaging-weight"),
    pytest.param([item("A", (200, 150, 80), 500)], BOXES, 50, 700, (250, 175, 100), "S",
                 id="smallest-box"),
    pytest.param([item("A", (80, 240, 150), 500)], BOXES, 0, 650, (250, 175, 100), "S",
                 id="item-rotated-into-box"),
    pytest.param([item("A", (200, 150, 80), 500, 2)], BOXES, 0, 1350, (400, 300, 200), "M",
                 id="volume-needs-bigger-box"),
    pytest.param([item("A", (380, 100, 50), 500), item("B", (150, 150, 150), 700)], BOXES, 0,
                 1550, (400, 300, 200), "M", id="every-item-must-fit"),
    pytest.param([item("A", (1000, 100, 100), 4000), item("B", (500, 400, 300), 2000)], BOXES,
                 200, 6200, (1000, 400, 300), None, id="no-box-fits-largest-sides"),
]


@pytest.mark.parametrize(("items", "boxes", "packaging", "weight", "sides", "box"), PACKING)
def test_pack_parcel(items: list[ParcelItem], boxes: list[Box], packaging: int, weight: int,
                     sides: tuple[int, int, int], box: str | None) -> None:
    packed = pack_parcel(items, boxes=boxes, packaging_weight_g=packaging)
    assert (packed.weight_g, packed.sides_mm, packed.box) == (weight, sides, box)


def test_pack_parcel_box_tie_goes_to_code() -> None:
    same = [Box(code="Y", length_mm=300, width_mm=200, height_mm=100),
            Box(code="X", length_mm=200, width_mm=300, height_mm=100)]
    assert pack_parcel([item("A", (100, 100, 100))], boxes=same).box == "X"


def test_pack_parcel_flags_from_any_item() -> None:
    items = [item("WINE", (300, 100, 100), age_check=True),
             item("GAS", (200, 100, 100), hazardous=True), item("TENT", (500, 200, 200))]
    packed = pack_parcel(items, boxes=BOXES)
    assert (packed.hazardous, packed.age_check) == (True, True)
    plain = pack_parcel([item("TENT", (500, 200, 200))], boxes=BOXES)
    assert (plain.hazardous, plain.age_check) == (False, False)


def test_pack_parcel_needs_items() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        pack_parcel([], boxes=BOXES)


def test_girth() -> None:
    assert parcel(length_mm=200, width_mm=1000, height_mm=500).girth_mm == 1000 + 400 + 1000


# --- config validation -----------------------------------------------------------------------

_BAND = {"max_weight_g": 31500, "price": "5.00"}

INVALID = [
    pytest.param(dict(prices={"DE": [_BAND], "EU": [_BAND], "XX": [_BAND]}), "prices",
                 "prices: unknown zone XX", id="unknown-zone-in-prices"),
    pytest.param(dict(prices={"DE": [_BAND]}), "prices", "prices: no entry for zone EU",
                 id="zone-without-prices"),
    pytest.param(dict(prices={"DE": [{"max_weight_g": 5000, "price": "6.00"},
                                     {"max_weight_g": 2000, "price": "5.00"}], "EU": [_BAND]}),
                 "prices", "bands of zone DE must ascend by max_weight_g, but 2000 follows 5000",
                 id="bands-descending"),
    pytest.param(dict(prices={"DE": [_BAND, _BAND], "EU": [_BAND]}), "prices",
                 "must ascend", id="bands-repeated"),
    pytest.param(dict(prices={"DE": [], "EU": [_BAND]}), "prices",
                 "prices: zone DE has no price bands", id="bands-empty"),
    pytest.param(dict(prices={"DE": [{"max_weight_g": 1000, "price": "-1.00"}], "EU": [_BAND]}),
                 "prices", "greater than or equal to 0", id="negative-price"),
    pytest.param(dict(transit_days={"DE": 1, "EU": 3, "CH": 4}), "transit_days",
                 "transit_days: unknown zone CH", id="unknown-zone-in-transit-days"),
    pytest.param(dict(transit_days={"EU": 3}), "transit_days",
                 "transit_days: no entry for zone DE", id="zone-without-transit-days"),
    pytest.param(dict(zones={"DE": ["DE"], "EU": ["AT", "DE"]}), "zones",
                 "zones: country DE is in zone DE and in zone EU", id="country-in-two-zones"),
    pytest.param(dict(zones={"DE": ["DE"], "EU": ["XX"]}), "zones",
                 "not an ISO 3166-1 alpha-2 country code", id="unknown-country"),
    pytest.param(dict(tracking_url="https://track.example/"), "tracking_url",
                 "tracking_url must contain {tracking_number}", id="tracking-url-placeholder"),
    pytest.param(dict(services=set()), "services", "at least 1 item", id="no-services"),
    pytest.param(dict(services={"overnight"}), "services", "'standard', 'express' or 'cod'",
                 id="unknown-service"),
    pytest.param(dict(max_weight=31500), "max_weight", "Extra inputs are not permitted",
                 id="unknown-field"),
]


@pytest.mark.parametrize(("changes", "field", "message"), INVALID)
def test_invalid_config(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        carrier(**changes)
    errors = raised.value.errors()
    assert [error["loc"][0] for error in errors] == [field]
    assert message in str(raised.value)
