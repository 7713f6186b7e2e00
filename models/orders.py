"""Order payload types, statuses and the names shared by workflows, activities and starters.

Pure and sandbox-safe: no I/O here. Money is ``Decimal``; pydantic serialises it as a
decimal string, which is also what the HTTP API speaks.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

TASK_QUEUE = "orders"
# The documents' own lines (shipping, goodwill credit), told apart by SKU: no order line's.
SHIPPING_SKU, GOODWILL_SKU = "VERSAND", "GUTSCHRIFT"
RESERVED_SKUS = (SHIPPING_SKU, GOODWILL_SKU)
STATUS_QUERY = "status"


def order_workflow_id(channel: str, external_id: str) -> str:
    """The single place that builds order ids (= Temporal workflow ids)."""
    return f"{channel}-{external_id}"


class OrderStatus(StrEnum):
    RECEIVED = "received"
    ON_HOLD = "on_hold"
    AWAITING_PAYMENT = "awaiting_payment"
    ALLOCATING = "allocating"
    BACKORDERED = "backordered"
    HANDED_OFF = "handed_off"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    INVOICED = "invoiced"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


CLOSED_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.RETURNED})


class PaymentStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid"
    REFUNDED = "refunded"


class HoldReason(StrEnum):
    TOTAL_MISMATCH = "total_mismatch"
    UNKNOWN_SKU = "unknown_sku"
    INCOMPLETE_ADDRESS = "incomplete_address"
    CUSTOMER_COMMENT = "customer_comment"
    OUT_OF_STOCK = "out_of_stock"
    STAFF = "staff"
    NO_CARRIER = "no_carrier"  # no carrier fits the parcel (models.carriers)
    HANDOFF_REJECTED = "handoff_rejected"  # the partner refused the shipment (HTTP 4xx)


class SearchAttr:
    """Names of the search attributes of the contract (registered on the server)."""

    ORDER_STATUS = "OrderStatus"
    CHANNEL = "Channel"
    CUSTOMER_EMAIL = "CustomerEmail"
    PAYMENT_STATUS = "PaymentStatus"
    CARRIER = "Carrier"
    TRACKING_NUMBER = "TrackingNumber"
    ORDER_TOTAL = "OrderTotal"
    HOLD_REASON = "HoldReason"
    ESCALATED = "Escalated"

    # name -> type as the temporal CLI spells it (--search-attribute NAME=TYPE)
    TYPES: dict[str, str] = {  # noqa: RUF012
        "OrderStatus": "Keyword",
        "Channel": "Keyword",
        "CustomerEmail": "Keyword",
        "PaymentStatus": "Keyword",
        "Carrier": "Keyword",
        "TrackingNumber": "Keyword",
        "OrderTotal": "Double",
        "HoldReason": "Keyword",
        "Escalated": "Bool",
    }


# --- payload ---------------------------------------------------------------------------

_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# Loaded once at import: pycountry reads its data files lazily, and file access is refused
# inside the workflow sandbox (payloads are validated there when a workflow decodes input).
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"  # documents cannot carry


def _currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


def _country(code: str) -> str:
    if code not in _COUNTRIES:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _no_control_chars(value: str) -> str:
    if re.search(f"[{_NOT_XML}\t\n\r\x7f]", value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def _xml_safe(value: str) -> str:  # line breaks allowed (comments, notes)
    if re.search(f"[{_NOT_XML}]", value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200),
                 AfterValidator(_no_control_chars)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_currency)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Strict):
    name: Text = ""
    company: Text | None = None
    street: Text = ""
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)] = ""
    city: Text = ""
    country: CountryCode


class Customer(_Strict):
    email: EmailStr
    first_name: Text = ""
    last_name: Text = ""
    company: Text | None = None
    vat_id: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{4,20}$")] | None = None
    type: Literal["b2c", "b2b"] = "b2c"
    phone: Annotated[str, StringConstraints(pattern=r"^[0-9 +()/.-]{3,32}$")] | None = None


class OrderLine(_Strict):
    sku: Annotated[str, StringConstraints(pattern=_IDENT)]
    name: Text
    quantity: Annotated[int, Field(gt=0, le=100_000)]
    unit_price: Money
    tax_rate: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)]


class ShippingInfo(_Strict):
    method: Literal["standard", "express"] = "standard"
    price: Money = Decimal("0.00")


class PaymentInfo(_Strict):
    method: Literal["prepaid", "paid", "invoice", "cod"]
    provider: Text | None = None
    reference: Text | None = None


Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500),
                 AfterValidator(_xml_safe)]


class OrderIn(_Strict):
    """The order payload of ``POST /orders`` (see CONTRACT.md)."""

    channel: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")]
    external_id: Annotated[str, StringConstraints(pattern=_IDENT)]
    placed_at: AwareDatetime
    currency: CurrencyCode = "EUR"
    customer: Customer
    billing_address: Address
    shipping_address: Address | None = None
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=500)]
    shipping: ShippingInfo = Field(default_factory=ShippingInfo)
    payment: PaymentInfo
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000),
                       AfterValidator(_xml_safe)] | None = None
    # Extensions of the contract's payload: printed on the delivery note, passed to the partner.
    gift_message: Note | None = None
    packer_note: Note | None = None
    total: Money | None = None

    @field_validator("lines")
    @classmethod
    def _no_reserved_skus(cls, lines: list[OrderLine]) -> list[OrderLine]:
        for line in lines:
            if line.sku.upper() in RESERVED_SKUS:
                raise ValueError(f"SKU {line.sku} is reserved for the shipping and goodwill "
                                 "lines of invoices and credit notes; send shipping costs as "
                                 "shipping.price")
        return lines

    @property
    def order_id(self) -> str:
        return order_workflow_id(self.channel, self.external_id)

    @property
    def delivery_address(self) -> Address:
        return self.shipping_address or self.billing_address


# --- signals ---------------------------------------------------------------------------

Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                   AfterValidator(_no_control_chars)]


class ReleaseInput(_Strict):
    by: Person
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


class HoldInput(_Strict):
    by: Person
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


class CancelInput(_Strict):
    by: Person
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


PaymentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9:/#._-]{1,80}$")]


class PaymentIn(_Strict):
    amount: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    currency: CurrencyCode = "EUR"
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=140)] = ""
    paid_at: AwareDatetime | None = None
    # The sender's id of this payment (e.g. a bank statement entry): a payment with an id the
    # order has seen is ignored, so a sender may repeat a signal safely.
    payment_id: PaymentId | None = None


class ShipmentConfirmation(_Strict):
    carrier: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    tracking_number: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    shipped_at: AwareDatetime | None = None
    shipment_id: str | None = None


# --- the status body (query `status` and GET /orders/{id}) -----------------------------


class TimelineEvent(BaseModel):
    at: datetime
    kind: str
    text: str


class Totals(BaseModel):
    goods: Decimal
    shipping: Decimal
    total: Decimal
    given_total: Decimal | None = None
    paid: Decimal = Decimal("0.00")
    credited: Decimal = Decimal("0.00")  # credit notes issued after the invoice
    fees: Decimal = Decimal("0.00")  # dunning fees, owed on top of the total
    open: Decimal = Decimal("0.00")


class CreditIssued(BaseModel):
    """Signal ``credit_note_issued``: a credit note lowers what the order still owes."""

    number: str
    amount: Decimal


class PaymentRecord(BaseModel):
    amount: Decimal
    currency: str
    reference: str
    paid_at: datetime | None


class ShipmentLine(BaseModel):
    sku: str
    quantity: int


class ShipmentView(BaseModel):
    shipment_id: str
    warehouse: str  # "@<partner>" for a dropship shipment sent by the supplier
    partner: str | None = None  # who gets the hand-off (None: the default partner)
    lines: list[ShipmentLine] = Field(default_factory=list)
    status: str = "allocated"  # allocated, handed_off, shipped
    handed_off_at: datetime | None = None
    escalated: bool = False
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    shipped_at: datetime | None = None
    files: list[str] = Field(default_factory=list)


class DocumentView(BaseModel):
    document_id: str
    kind: str  # delivery_note, order_xml, order_csv, invoice, credit_note, dunning
    number: str | None = None
    filename: str
    total: Decimal | None = None  # invoices: the amount charged
    # the XRechnung XML sent instead of the PDF (customers who take XRechnung)
    einvoice_id: str | None = None


class TicketView(BaseModel):
    ticket_id: int
    kind: str
    title: str
    status: str = "open"


class HoldView(BaseModel):
    reason: HoldReason
    detail: str


class OrderView(BaseModel):
    order_id: str
    channel: str
    external_id: str
    status: OrderStatus
    payment_method: str
    payment_status: PaymentStatus
    currency: str
    placed_at: datetime | None = None
    shipping_method: str = "standard"
    customer: Customer
    billing_address: Address
    shipping_address: Address
    lines: list[OrderLine]
    totals: Totals
    comment: str | None = None
    gift_message: str | None = None
    packer_note: str | None = None
    hold_reasons: list[HoldView] = Field(default_factory=list)
    escalated: bool = False
    waiting_for: str = ""
    payments: list[PaymentRecord] = Field(default_factory=list)
    shipments: list[ShipmentView] = Field(default_factory=list)
    documents: list[DocumentView] = Field(default_factory=list)
    tickets: list[TicketView] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)


def shipment_lines(order: OrderView, shipment: ShipmentView | None) -> list[OrderLine]:
    """The order lines a shipment carries, with the shipment's quantities (a split order's
    shipment carries part of them); the whole order without a shipment or its lines."""
    if shipment is None or not shipment.lines:
        return list(order.lines)
    left = {line.sku: line.quantity for line in shipment.lines}
    result: list[OrderLine] = []
    for line in order.lines:
        take = min(line.quantity, left.get(line.sku, 0))
        if take:
            result.append(line.model_copy(update={"quantity": take}))
            left[line.sku] -= take
    return result


def initial_view(order: OrderIn, totals: Totals) -> OrderView:
    """The view of an order as it is received (the workflow's starting state; exports)."""
    return OrderView(
        order_id=order.order_id, channel=order.channel, external_id=order.external_id,
        status=OrderStatus.RECEIVED, payment_method=order.payment.method,
        payment_status=PaymentStatus.OPEN, currency=order.currency,
        placed_at=order.placed_at, shipping_method=order.shipping.method,
        customer=order.customer, billing_address=order.billing_address,
        shipping_address=order.delivery_address, lines=order.lines, totals=totals,
        comment=order.comment, gift_message=order.gift_message, packer_note=order.packer_note)
