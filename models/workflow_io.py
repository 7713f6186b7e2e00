"""Inputs of the order workflow: the order plus the policy in force when it started."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from models.orders import OrderIn
from models.tax import TaxConfig

__all__ = ["DunningConfig", "DunningLevel", "Duration", "OrderPolicy", "OrderWorkflowInput",
           "PartnerRoute", "format_duration", "german_duration", "parse_duration"]

_UNITS = {"d": 86400, "h": 3600, "m": 60}
_GERMAN = {"d": ("Tag", "Tagen"), "h": ("Stunde", "Stunden"), "m": ("Minute", "Minuten"),
           "s": ("Sekunde", "Sekunden")}


def _split(value: timedelta) -> tuple[float, str]:
    seconds = value.total_seconds()
    for unit, size in _UNITS.items():
        if seconds and seconds % size == 0:
            return seconds / size, unit
    return seconds, "s"


def format_duration(value: timedelta) -> str:
    """``3d``, ``2h``, ``90s``: the notation of the settings."""
    amount, unit = _split(value)
    return f"{amount:g}{unit}"


def german_duration(value: timedelta) -> str:
    """``3 Tagen``, ``1 Stunde``: for texts customers read."""
    amount, unit = _split(value)
    one, many = _GERMAN[unit]
    return f"{amount:g} {one if amount == 1 else many}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """Parse ``90s``, ``15m``, ``2h``, ``3d`` (or a timedelta / number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"expected a number with a unit s, m, h or d (e.g. 90s, 3d), got {value!r}"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


class DunningLevel(BaseModel):
    """One step of dunning: ``after`` the invoice's due date, a mail (``letter``: with a PDF
    letter) and a ``fee`` added to what is owed."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    title: Annotated[str, Field(min_length=1, max_length=60)]  # German, e.g. "1. Mahnung"
    after: Duration
    fee: Annotated[Decimal, Field(ge=0, max_digits=8, decimal_places=2)] = Decimal("0.00")
    letter: bool = False

    @model_validator(mode="after")
    def _fee_needs_letter(self) -> DunningLevel:
        if self.fee and not self.letter:  # the letter is the fee's record (bank matching)
            raise ValueError(f"dunning level {self.name}: a fee needs letter = true")
        return self


def _default_levels() -> list[DunningLevel]:
    return [DunningLevel(name="reminder", title="Zahlungserinnerung", after=timedelta(days=7)),
            DunningLevel(name="dunning_1", title="1. Mahnung", after=timedelta(days=21),
                         fee=Decimal("5.00"), letter=True),
            DunningLevel(name="dunning_2", title="2. Mahnung", after=timedelta(days=35),
                         fee=Decimal("10.00"), letter=True)]


class DunningConfig(BaseModel):
    """``[dunning]`` / ``ORDERS_DUNNING__*``: the steps after an unpaid invoice's due date,
    then a ``collection`` ticket ``collection_after`` the due date."""

    model_config = ConfigDict(extra="forbid")
    levels: list[DunningLevel] = Field(default_factory=_default_levels, max_length=10)
    collection_after: Duration = timedelta(days=49)
    deadline: Duration = timedelta(days=7)  # the new deadline each letter names

    @model_validator(mode="after")
    def _in_order(self) -> DunningConfig:
        afters = [level.after for level in self.levels]
        if afters != sorted(afters) or len(set(afters)) != len(afters):
            raise ValueError("dunning levels must come in order of 'after', each later")
        if len({level.name for level in self.levels}) != len(self.levels):
            raise ValueError("dunning level names must differ")
        if self.levels and self.collection_after <= afters[-1]:
            raise ValueError("collection_after must come after the last dunning level")
        return self


class PartnerRoute(BaseModel):
    """How a shipment reaches a partner (from its settings when the order started)."""

    code: str
    channel: str = "ftp"  # ftp, http, email
    format: str = "opentrans"  # opentrans, json, pdf
    email: str = ""
    sla: timedelta | None = None  # confirmation timeout of its shipments


class OrderPolicy(BaseModel):
    """Durations and templates the workflow needs; taken from Settings at submit time so that
    a running order keeps the policy it started with."""

    payment_reminder_after: timedelta = timedelta(days=3)
    cancel_unpaid_after: timedelta = timedelta(days=14)
    ship_confirmation_timeout: timedelta = timedelta(days=2)
    review_request_after: timedelta = timedelta(days=7)
    tracking_url: str = "https://tracking.example.com/{carrier}/{tracking_number}"
    activity_timeout: timedelta = timedelta(seconds=60)
    # The partners by code. The e-mail channel is a mail like the customer's (outbox,
    # templates), so the workflow sends it itself; ftp and http go through the partner
    # activity. A shipment without a partner goes to ``default_partner``.
    partners: dict[str, PartnerRoute] = {}
    default_partner: str = "fulfillment"
    tax: TaxConfig = TaxConfig()  # the VAT rules the order's totals follow
    payment_term: timedelta = timedelta(days=14)  # invoice terms: due this long after it
    invoice_per_shipment: bool = True  # a partial invoice for a shipment that ships early
    dunning: DunningConfig = DunningConfig()

    def route(self, code: str | None) -> PartnerRoute:
        code = code or self.default_partner
        return self.partners.get(code) or PartnerRoute(code=code)


class OrderWorkflowInput(BaseModel):
    order: OrderIn
    policy: OrderPolicy = OrderPolicy()
