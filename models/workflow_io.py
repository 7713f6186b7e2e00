"""Inputs of the order workflow: the order plus the policy in force when it started."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from models.orders import OrderIn
from models.tax import TaxConfig

__all__ = ["OrderPolicy", "OrderWorkflowInput", "PartnerRoute", "format_duration",
           "german_duration"]

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

    def route(self, code: str | None) -> PartnerRoute:
        code = code or self.default_partner
        return self.partners.get(code) or PartnerRoute(code=code)


class OrderWorkflowInput(BaseModel):
    order: OrderIn
    policy: OrderPolicy = OrderPolicy()
