"""The carrier matrix: which carriers may take a parcel, and which one takes it.

Pure and sandbox-safe (no I/O, clocks or randomness), so the workflow may call these
directly. Money is ``Decimal``, weights are grams and lengths millimetres, as ``int``.

Three steps:

* ``Carrier`` and ``Box`` are the master data an operator writes in the config file (one
  table per carrier); their validators reject a broken price table before it is used.
* ``pack_parcel`` turns the items of a shipment into one ``Parcel``: its weight, its
  dimensions (a configured box, or the items themselves) and its hazardous / age-check flags.
* ``select_carrier`` checks every carrier against the parcel and the ``ShipmentNeeds``, and
  returns a ``CarrierDecision``: the chosen quote (or ``None``), every fitting quote and, for
  every other carrier, the first rule that excluded it. ``explain`` renders it, one line per
  carrier, for the order's timeline or a ticket.

The rules, checked in this order (the first that fails is the carrier's reason):

1. service: ``express`` when the shipment is express, else ``standard``
2. cash on delivery: ``cod`` when the shipment is paid on delivery
3. country: some zone of the carrier holds the destination country
4. weight: the parcel's weight is at most ``max_weight_g``
5. length: the parcel's longest side is at most ``max_length_mm``
6. girth: length + 2 × width + 2 × height is at most ``max_girth_mm`` (if set)
7. hazardous goods: the carrier takes them, if the parcel holds any
8. age check: the carrier offers it, if any item needs it
9. price: the zone's price table has a band for the weight

Of the fitting carriers the cheapest wins; ties go to fewer transit days, then to the
carrier code, so the same input always gives the same carrier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from models.orders import CountryCode, Money, Text

__all__ = [
    "RULES",
    "Box",
    "Carrier",
    "CarrierDecision",
    "CarrierQuote",
    "Parcel",
    "ParcelItem",
    "PriceBand",
    "Service",
    "ShipmentNeeds",
    "explain",
    "pack_parcel",
    "select_carrier",
]

Service = Literal["standard", "express", "cod"]
CarrierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
ZoneName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Grams = Annotated[int, Field(ge=0, le=10_000_000)]
Millimetres = Annotated[int, Field(gt=0, le=100_000)]

RULES = ("service", "cod", "country", "weight", "length", "girth", "hazardous", "age_check",
         "price")
"""The rules of ``select_carrier`` in the order they are checked."""

TRACKING_PLACEHOLDER = "{tracking_number}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- config --------------------------------------------------------------------------------


class PriceBand(_Strict):
    """The price of a parcel up to and including ``max_weight_g``."""

    max_weight_g: Annotated[int, Field(gt=0, le=10_000_000)]
    price: Money


class Carrier(_Strict):
    """One carrier of the config file, with its limits, zones, prices and transit days.

    ``zones`` maps a zone name to its countries (``{"DE": ["DE"], "EU": ["AT", "FR"]}``);
    ``prices`` and ``transit_days`` have exactly one entry per zone. A zone's price bands
    ascend by ``max_weight_g``; a parcel heavier than the last band has no price there.
    """

    code: CarrierCode
    name: Text
    services: Annotated[set[Service], Field(min_length=1)]
    zones: Annotated[dict[ZoneName, Annotated[list[CountryCode], Field(min_length=1)]],
                     Field(min_length=1)]
    prices: dict[ZoneName, list[PriceBand]]
    transit_days: dict[ZoneName, Annotated[int, Field(ge=0, le=365)]]
    max_weight_g: Annotated[int, Field(gt=0, le=10_000_000)]
    max_length_mm: Millimetres
    max_girth_mm: Millimetres | None = None
    hazardous_goods: bool = False
    age_check: bool = False
    tracking_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]

    @field_validator("zones")
    @classmethod
    def _country_in_one_zone(cls, zones: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for zone, countries in zones.items():
            for country in countries:
                if country in seen:
                    raise ValueError(f"zones: country {country} is in zone {seen[country]} "
                                     f"and in zone {zone}")
                seen[country] = zone
        return zones

    @field_validator("prices")
    @classmethod
    def _prices_per_zone(cls, prices: dict[str, list[PriceBand]],
                         info: ValidationInfo) -> dict[str, list[PriceBand]]:
        _same_zones("prices", prices, info)
        for zone, bands in prices.items():
            if not bands:
                raise ValueError(f"prices: zone {zone} has no price bands")
            for lower, upper in pairwise(bands):
                if upper.max_weight_g <= lower.max_weight_g:
                    raise ValueError(f"prices: bands of zone {zone} must ascend by "
                                     f"max_weight_g, but {upper.max_weight_g} follows "
                                     f"{lower.max_weight_g}")
        return prices

    @field_validator("transit_days")
    @classmethod
    def _transit_days_per_zone(cls, transit_days: dict[str, int],
                               info: ValidationInfo) -> dict[str, int]:
        _same_zones("transit_days", transit_days, info)
        return transit_days

    @field_validator("tracking_url")
    @classmethod
    def _tracking_placeholder(cls, url: str) -> str:
        if TRACKING_PLACEHOLDER not in url:
            raise ValueError(f"tracking_url must contain {TRACKING_PLACEHOLDER}")
        return url

    def zone_of(self, country: str) -> str | None:
        """The zone that holds ``country``, or ``None`` when the carrier does not serve it."""
        return next((zone for zone, countries in self.zones.items() if country in countries),
                    None)

    def price_for(self, zone: str, weight_g: int) -> Decimal | None:
        """The price of the first band that takes ``weight_g`` in ``zone``, else ``None``."""
        bands = self.prices.get(zone, [])
        return next((band.price for band in bands if weight_g <= band.max_weight_g), None)

    def tracking_link(self, tracking_number: str) -> str:
        return self.tracking_url.replace(TRACKING_PLACEHOLDER, tracking_number)


def _same_zones(field: str, per_zone: Mapping[str, object], info: ValidationInfo) -> None:
    """``per_zone`` names exactly the zones of ``zones`` (skipped when zones were invalid)."""
    zones = info.data.get("zones")
    if zones is None:
        return
    unknown = sorted(set(per_zone) - set(zones))
    if unknown:
        raise ValueError(f"{field}: unknown zone {', '.join(unknown)} "
                         f"(zones are {', '.join(zones)})")
    missing = [zone for zone in zones if zone not in per_zone]
    if missing:
        raise ValueError(f"{field}: no entry for zone {', '.join(missing)}")


class Box(_Strict):
    """A shipping box of the config file: its size and its own weight.

    The size serves both to fit the items and as the parcel's size for the carrier limits,
    so configure the inner size when the walls are thin, the outer one when they are not.
    """

    code: CarrierCode
    length_mm: Millimetres
    width_mm: Millimetres
    height_mm: Millimetres
    weight_g: Grams = 0

    @property
    def volume_mm3(self) -> int:
        return self.length_mm * self.width_mm * self.height_mm


# --- packing -------------------------------------------------------------------------------


class ParcelItem(_Strict):
    """One line of a shipment: ``quantity`` pieces of one SKU, dimensions of one piece."""

    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0, le=100_000)]
    weight_g: Grams
    length_mm: Millimetres
    width_mm: Millimetres
    height_mm: Millimetres
    hazardous: bool = False
    age_check: bool = False


class Parcel(_Strict):
    """The packed parcel. Sides may come in any order; the rules use ``sides_mm``."""

    weight_g: Grams
    length_mm: Millimetres
    width_mm: Millimetres
    height_mm: Millimetres
    box: str | None = None
    hazardous: bool = False
    age_check: bool = False

    @property
    def sides_mm(self) -> tuple[int, int, int]:
        """The sides, longest first."""
        return _sides(self.length_mm, self.width_mm, self.height_mm)

    @property
    def girth_mm(self) -> int:
        """Length (the longest side) plus twice the other two sides."""
        length, width, height = self.sides_mm
        return length + 2 * width + 2 * height


def _sides(*dimensions: int) -> tuple[int, int, int]:
    longest, middle, shortest = sorted(dimensions, reverse=True)
    return longest, middle, shortest


def _fits(inner: tuple[int, int, int], outer: tuple[int, int, int]) -> bool:
    """Sides sorted longest first: the item fits in some orientation iff each side fits."""
    return all(i <= o for i, o in zip(inner, outer, strict=True))


def pack_parcel(items: Sequence[ParcelItem], *, boxes: Sequence[Box] = (),
                packaging_weight_g: int = 0) -> Parcel:
    """Pack ``items`` into one parcel.

    The box is the smallest configured box (by volume, then code) that holds every single
    item in some orientation and whose volume is at least the items' total volume. Without
    such a box the parcel measures the items themselves: the longest, middle and shortest
    side over all items, which is the largest item's size when one item is the largest in
    every side, and never understates a side. The weight is the items' weight times their
    quantity, plus ``packaging_weight_g`` (filling, tape) and the box's own weight.
    """
    if not items:
        raise ValueError("a parcel needs at least one item")
    if packaging_weight_g < 0:
        raise ValueError(f"packaging_weight_g must not be negative, got {packaging_weight_g}")
    item_sides = [_sides(i.length_mm, i.width_mm, i.height_mm) for i in items]
    volume = sum(i.length_mm * i.width_mm * i.height_mm * i.quantity for i in items)
    weight = sum(i.weight_g * i.quantity for i in items) + packaging_weight_g
    hazardous = any(i.hazardous for i in items)
    age_check = any(i.age_check for i in items)
    fitting = [box for box in boxes
               if box.volume_mm3 >= volume
               and all(_fits(sides, _sides(box.length_mm, box.width_mm, box.height_mm))
                       for sides in item_sides)]
    if fitting:
        box = min(fitting, key=lambda b: (b.volume_mm3, b.code))
        length, width, height = _sides(box.length_mm, box.width_mm, box.height_mm)
        return Parcel(weight_g=weight + box.weight_g, length_mm=length, width_mm=width,
                      height_mm=height, box=box.code, hazardous=hazardous, age_check=age_check)
    length, width, height = (max(sides[axis] for sides in item_sides) for axis in range(3))
    return Parcel(weight_g=weight, length_mm=length, width_mm=width, height_mm=height,
                  hazardous=hazardous, age_check=age_check)


# --- selection -----------------------------------------------------------------------------


class ShipmentNeeds(_Strict):
    """What the order asks of the carrier: destination, express, cash on delivery."""

    country: CountryCode
    express: bool = False
    cod: bool = False


class CarrierQuote(_Strict):
    carrier: str
    price: Decimal
    transit_days: int
    zone: str


class CarrierDecision(_Strict):
    """The chosen quote (``None``: no carrier fits), every fitting quote (best first) and,
    per excluded carrier code, the first rule that excluded it (in config order)."""

    chosen: CarrierQuote | None
    quotes: list[CarrierQuote] = Field(default_factory=list)
    excluded: dict[str, str] = Field(default_factory=dict)


def _quote(carrier: Carrier, parcel: Parcel, needs: ShipmentNeeds) -> CarrierQuote | str:
    """The carrier's quote, or the first rule (see ``RULES``) that excludes it, in words."""
    service = "express" if needs.express else "standard"
    if service not in carrier.services:
        return f"no {service} service"
    if needs.cod and "cod" not in carrier.services:
        return "no cash on delivery"
    zone = carrier.zone_of(needs.country)
    if zone is None:
        return f"does not serve country {needs.country}"
    if parcel.weight_g > carrier.max_weight_g:
        return f"weight {parcel.weight_g} g over the limit of {carrier.max_weight_g} g"
    length = parcel.sides_mm[0]
    if length > carrier.max_length_mm:
        return f"length {length} mm over {carrier.max_length_mm} mm"
    if carrier.max_girth_mm is not None and parcel.girth_mm > carrier.max_girth_mm:
        return f"girth {parcel.girth_mm} mm over {carrier.max_girth_mm} mm"
    if parcel.hazardous and not carrier.hazardous_goods:
        return "no hazardous goods"
    if parcel.age_check and not carrier.age_check:
        return "no age check"
    price = carrier.price_for(zone, parcel.weight_g)
    if price is None:
        return f"no price for {parcel.weight_g} g in zone {zone}"
    return CarrierQuote(carrier=carrier.code, price=price,
                        transit_days=carrier.transit_days[zone], zone=zone)


def _rank(quote: CarrierQuote) -> tuple[Decimal, int, str]:
    return quote.price, quote.transit_days, quote.carrier


def select_carrier(parcel: Parcel, needs: ShipmentNeeds,
                   carriers: Iterable[Carrier]) -> CarrierDecision:
    """Check every carrier (see ``RULES``) and choose the cheapest that fits; ties go to
    fewer transit days, then to the lower carrier code. Carrier codes must be unique."""
    quotes: list[CarrierQuote] = []
    excluded: dict[str, str] = {}
    for carrier in carriers:
        if carrier.code in excluded or any(q.carrier == carrier.code for q in quotes):
            raise ValueError(f"carrier code {carrier.code} is configured twice")
        result = _quote(carrier, parcel, needs)
        if isinstance(result, str):
            excluded[carrier.code] = result
        else:
            quotes.append(result)
    quotes.sort(key=_rank)
    return CarrierDecision(chosen=quotes[0] if quotes else None, quotes=quotes,
                           excluded=excluded)


def _days(days: int) -> str:
    return f"{days} transit day" if days == 1 else f"{days} transit days"


def explain(decision: CarrierDecision) -> str:
    """One line per carrier: the chosen one first, then the other quotes (best first), then
    the excluded carriers with their reason. Meant for the timeline and the no-carrier ticket.
    """
    lines = []
    for quote in decision.quotes:
        chosen = decision.chosen is not None and quote.carrier == decision.chosen.carrier
        verdict = "chosen" if chosen else "fits"
        lines.append(f"{quote.carrier}: {verdict}, {quote.price:.2f} in zone {quote.zone}, "
                     f"{_days(quote.transit_days)}")
    lines.extend(f"{code}: excluded, {reason}" for code, reason in decision.excluded.items())
    return "\n".join(lines)
