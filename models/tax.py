"""VAT for invoices: which treatment an order gets and the tax per rate, as pure functions.

Pure and sandbox-safe. Money is ``Decimal``, rounded to cents half up.

The treatment (``classify``), checked in this order:

1. ``export``: the goods leave the EU: 0 %, with the export note.
2. ``reverse_charge``: a ``b2b`` customer in another EU country with a VAT id that passes
   the format and check-digit test (python-stdnum): 0 %, with the reverse-charge note.
3. ``oss``: a ``b2c`` customer in another EU country while the shop is over the OSS
   threshold (``TaxConfig.oss``): the destination country's rates (its standard rate for the
   home standard rate, its reduced rate for the home reduced rate).
4. ``domestic``: everything else (home country; other EU countries below the threshold; a
   ``b2b`` customer abroad without a usable VAT id): the rates on the lines.

``tax_amounts`` then computes VAT per rate with shipping taxed like the goods: the shipping
price is split across the rates in proportion to the goods at each rate (the last rate takes
the rounding remainder, so the parts add up to the shipping price exactly). Gross prices
(``b2c``): the VAT contained is computed per rate on the gross sum. Net prices (``b2b``): the
VAT is added once per rate on the rate's net sum (lines rounded per line, plus the
shipping part), as EN 16931 (BR-CO-17) and DATEV's automatic accounts compute it. For
every rate ``net + tax == gross``, and the sums of the rates are the invoice's totals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from stdnum.eu import vat as eu_vat

__all__ = ["EU_COUNTRIES", "Rates", "TaxAmount", "TaxConfig", "TaxDecision", "TaxResult",
           "Treatment", "classify", "split_shipping", "tax_amounts"]

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
Treatment = Literal["domestic", "oss", "reverse_charge", "export"]

EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})

NOTES: dict[Treatment, str] = {
    "domestic": "",
    "oss": "",
    # §14a UStG: the exemption named; the buyer taxes the acquisition (not §13b's wording)
    "reverse_charge": ("Steuerfreie innergemeinschaftliche Lieferung gemäß § 4 Nr. 1 Buchst. "
                       "b i. V. m. § 6a UStG. Der Erwerb unterliegt beim Leistungsempfänger "
                       "der Erwerbsbesteuerung (Reverse Charge)."),
    "export": "Steuerfreie Ausfuhrlieferung gemäß § 4 Nr. 1 Buchst. a i. V. m. § 6 UStG.",
}


class Rates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: Decimal = Field(ge=0, le=100)
    reduced: Decimal = Field(ge=0, le=100)


def _eu_rates() -> dict[str, Rates]:
    """Standard and (main) reduced rate of every EU country, as of 2026; check yours."""
    table = {"AT": ("20", "10"), "BE": ("21", "6"), "BG": ("20", "9"), "CY": ("19", "5"),
             "CZ": ("21", "12"), "DE": ("19", "7"), "DK": ("25", "25"), "EE": ("24", "9"),
             "ES": ("21", "10"), "FI": ("25.5", "14"), "FR": ("20", "5.5"), "GR": ("24", "13"),
             "HR": ("25", "13"), "HU": ("27", "5"), "IE": ("23", "13.5"), "IT": ("22", "10"),
             "LT": ("21", "9"), "LU": ("17", "8"), "LV": ("21", "12"), "MT": ("18", "7"),
             "NL": ("21", "9"), "PL": ("23", "8"), "PT": ("23", "6"), "RO": ("21", "11"),
             "SE": ("25", "12"), "SI": ("22", "9.5"), "SK": ("23", "19")}
    return {country: Rates(standard=Decimal(s), reduced=Decimal(r))
            for country, (s, r) in table.items()}


class TaxConfig(BaseModel):
    """The shop's tax situation; ``rates`` holds every country it sells to under OSS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home_country: str = "DE"
    oss: bool = True  # over the EU-wide OSS threshold: B2C in the EU pays destination VAT
    rates: dict[str, Rates] = Field(default_factory=_eu_rates)

    @field_validator("rates", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: object) -> object:
        """Configured countries replace the built-in rates of those countries only."""
        if isinstance(value, Mapping):
            return {**_eu_rates(), **value}
        return value

    @model_validator(mode="after")
    def _rates_for_every_destination(self) -> TaxConfig:
        needed = EU_COUNTRIES if self.oss else {self.home_country}
        missing = sorted(country for country in needed if country not in self.rates)
        if missing:
            raise ValueError(f"tax.rates lacks {', '.join(missing)} (standard and reduced "
                             "rate per country; needed for OSS)")
        return self


@dataclass(frozen=True)
class TaxDecision:
    treatment: Treatment
    note: str  # the legal note the invoice must carry ("" for none)
    rate_map: Mapping[Decimal, Decimal]  # the line's rate -> the rate applied

    def rate(self, line_rate: Decimal) -> Decimal:
        return self.rate_map.get(line_rate, line_rate)


@dataclass(frozen=True)
class TaxAmount:
    """The VAT at one rate: ``net + tax == gross``."""

    rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


@dataclass(frozen=True)
class TaxResult:
    decision: TaxDecision
    amounts: list[TaxAmount]  # highest rate first

    @property
    def net(self) -> Decimal:
        return sum((a.net for a in self.amounts), Decimal("0.00"))

    @property
    def tax(self) -> Decimal:
        return sum((a.tax for a in self.amounts), Decimal("0.00"))

    @property
    def gross(self) -> Decimal:
        return sum((a.gross for a in self.amounts), Decimal("0.00"))


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def valid_vat_id(vat_id: str | None) -> bool:
    """Format and check digit of an EU VAT id (no online VIES lookup)."""
    return bool(vat_id) and eu_vat.is_valid(vat_id or "")


def _vat_id_of(vat_id: str, country: str) -> bool:
    """Whether ``vat_id`` was issued by ``country`` (Greece's ids start with EL). A tax-free
    intra-EU supply needs a VAT id of another member state than the seller's."""
    prefix = vat_id.strip().upper()[:2]
    return prefix == ("EL" if country == "GR" else country)


def classify(*, customer_type: str, vat_id: str | None, country: str,
             line_rates: Sequence[Decimal], config: TaxConfig) -> TaxDecision:
    """The treatment of an order shipped to ``country`` (see the module docstring)."""
    rates = sorted(set(line_rates))
    if country not in EU_COUNTRIES:
        return TaxDecision("export", NOTES["export"], dict.fromkeys(rates, Decimal(0)))
    abroad = country != config.home_country
    if customer_type == "b2b" and abroad and valid_vat_id(vat_id) \
            and not _vat_id_of(vat_id or "", config.home_country):
        return TaxDecision("reverse_charge", NOTES["reverse_charge"],
                           dict.fromkeys(rates, Decimal(0)))
    if customer_type != "b2b" and abroad and config.oss:
        home, there = config.rates[config.home_country], config.rates[country]
        # the home standard and reduced rates become the destination's; another rate on a
        # line (0 %, a special rate) stays as it is
        mapping = {home.standard: there.standard, home.reduced: there.reduced}
        return TaxDecision("oss", NOTES["oss"], {r: mapping.get(r, r) for r in rates})
    return TaxDecision("domestic", NOTES["domestic"], {r: r for r in rates})


def split_shipping(shipping: Decimal, goods_by_rate: Mapping[Decimal, Decimal]
                   ) -> dict[Decimal, Decimal]:
    """``shipping`` in proportion to the goods per rate; the parts add up exactly."""
    shipping = _money(shipping)
    total = sum(goods_by_rate.values(), Decimal(0))
    rates = sorted(goods_by_rate, reverse=True)
    if not rates:
        return {}
    if total == 0:
        return {rates[0]: shipping, **dict.fromkeys(rates[1:], Decimal("0.00"))}
    parts: dict[Decimal, Decimal] = {}
    for rate in rates[:-1]:
        parts[rate] = _money(shipping * goods_by_rate[rate] / total)
    parts[rates[-1]] = shipping - sum(parts.values(), Decimal(0))
    return parts


def tax_amounts(lines: Sequence[tuple[Decimal, Decimal]], shipping: Decimal, *,
                prices_gross: bool, decision: TaxDecision) -> TaxResult:
    """VAT per applied rate for ``lines`` of ``(line rate, line amount)`` plus shipping.

    Amounts are as priced (gross for gross prices, else net). With a 0 % treatment
    (export, reverse charge) gross prices are taken as they are: the customer pays the
    price, without VAT in it."""
    goods: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line_rate, amount in lines:
        goods[decision.rate(line_rate)] += _money(amount)  # rounded per line
    base = dict(goods)
    for rate, part in split_shipping(shipping, goods).items():
        base[rate] += part
    amounts = []
    for rate, amount in sorted(base.items(), reverse=True):  # VAT rounded once per rate
        if prices_gross:
            tax = _money(amount * rate / (HUNDRED + rate))
            amounts.append(TaxAmount(rate=rate, net=amount - tax, tax=tax, gross=amount))
        else:
            tax = _money(amount * rate / HUNDRED)
            amounts.append(TaxAmount(rate=rate, net=amount, tax=tax, gross=amount + tax))
    return TaxResult(decision=decision, amounts=amounts)
