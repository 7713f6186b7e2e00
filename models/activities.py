"""Typed inputs and results of every activity (one ``XxxInput``/``XxxResult`` per call)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from models.carriers import CarrierDecision, Parcel, ShipmentNeeds
from models.orders import (
    DocumentView,
    HoldView,
    OrderIn,
    OrderView,
    PaymentIn,
    ShipmentView,
    TicketView,
)

__all__ = [
    "AdviceConfirmation",
    "AdviceFile",
    "AllocateShipmentInput",
    "CarrierChoice",
    "CheckOrderResult",
    "ChooseCarrierInput",
    "DocumentInput",
    "DocumentView",
    "FinishAdviceInput",
    "HandOffInput",
    "HandOffResult",
    "MissingStock",
    "OpenTicketInput",
    "OrderInput",
    "ReadAdviceInput",
    "ReadAdviceResult",
    "RecordOrderResult",
    "RecordPaymentInput",
    "ReleaseStockInput",
    "ReserveStockInput",
    "ReserveStockResult",
    "ResolveTicketInput",
    "SendMailInput",
    "SendMailResult",
    "ShipmentView",
    "StockLine",
    "TicketView",
]


class OrderInput(BaseModel):
    order: OrderIn


class RecordOrderResult(BaseModel):
    customer_id: int
    new_customer: bool
    new_address: bool


class CheckOrderResult(BaseModel):
    holds: list[HoldView] = Field(default_factory=list)


class StockLine(BaseModel):
    sku: str
    quantity: int


class ReserveStockInput(BaseModel):
    order_id: str
    lines: list[StockLine]


class MissingStock(BaseModel):
    sku: str
    requested: int
    available: int


class ReserveStockResult(BaseModel):
    reserved: bool
    warehouse: str | None = None
    missing: list[MissingStock] = Field(default_factory=list)


class ReleaseStockInput(BaseModel):
    order_id: str
    restock_allocated: bool = False  # also return stock of a shipment that never left


class AllocateShipmentInput(BaseModel):
    order_id: str


class OpenTicketInput(BaseModel):
    order_id: str | None
    key: str  # unique per order: a retry returns the same ticket
    kind: str
    title: str
    body: str = ""


class ResolveTicketInput(BaseModel):
    order_id: str | None
    key: str
    by: str
    note: str = ""


class RecordPaymentInput(BaseModel):
    order_id: str
    key: str
    payment: PaymentIn


class DocumentInput(BaseModel):
    order: OrderView
    shipment: ShipmentView | None = None


class SendMailInput(BaseModel):
    order_id: str
    key: str  # one mail per (order_id, key), ever
    to: str
    template: str  # name under templates/mail/, e.g. "order_confirmation"
    context: dict[str, Any] = Field(default_factory=dict)
    attachments: list[str] = Field(default_factory=list)  # document ids


class SendMailResult(BaseModel):
    message_id: str
    sent_now: bool  # False when a retry found it already sent


class HandOffInput(BaseModel):
    order_id: str
    shipment_id: str
    document_ids: list[str]
    order: OrderView | None = None  # for partners that take the order as JSON


class HandOffResult(BaseModel):
    partner: str
    files: list[str]


class ChooseCarrierInput(BaseModel):
    order_id: str
    shipment_id: str
    needs: ShipmentNeeds


class CarrierChoice(BaseModel):
    decision: CarrierDecision
    parcel: Parcel
    explanation: str  # one line per carrier (models.carriers.explain)
    tracking_url: str | None = None  # the chosen carrier's template ({tracking_number})


# --- shipping advice import (activities/advice.py) -------------------------------------


class AdviceConfirmation(BaseModel):
    """One order confirmed shipped by a DISPATCHNOTIFICATION file (a file may hold several)."""

    order_id: str
    shipment_id: str | None = None
    carrier: str
    tracking_number: str
    shipped_at: datetime | None = None


class AdviceFile(BaseModel):
    """A file in the partner's outbox, identified by its content."""

    name: str  # plain name inside the outbox
    sha256: str  # hex digest of the content; "" when the file had vanished
    size: int


class ReadAdviceInput(BaseModel):
    name: str


class ReadAdviceResult(BaseModel):
    file: AdviceFile
    already_done: bool  # imported before (same content) or gone: nothing to do
    confirmations: list[AdviceConfirmation] = Field(default_factory=list)
    error: str | None = None  # why the file is unusable: reject it


class FinishAdviceInput(BaseModel):
    file: AdviceFile
    outcome: Literal["archived", "rejected"]
    detail: str = ""
