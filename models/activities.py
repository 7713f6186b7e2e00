"""Typed inputs and results of every activity (one ``XxxInput``/``XxxResult`` per call)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from models.billing import BillingProfile
from models.carriers import CarrierDecision, Parcel, ShipmentNeeds
from models.credit import CreditNoteIn
from models.orders import (
    DocumentView,
    HoldView,
    OrderIn,
    OrderView,
    PaymentIn,
    ShipmentView,
    TicketView,
)
from models.workflow_io import DunningLevel

__all__ = [
    "AdviceConfirmation",
    "AdviceFile",
    "AllocateShipmentInput",
    "BackorderLine",
    "CarrierChoice",
    "CheckOrderResult",
    "ChooseCarrierInput",
    "CreditNoteInput",
    "CreditNoteResult",
    "DocumentInput",
    "DocumentView",
    "DunningInput",
    "DunningNotice",
    "ExportDatevInput",
    "ExportDatevResult",
    "ExportOrdersInput",
    "ExportOrdersResult",
    "FillBackordersInput",
    "FinishAdviceInput",
    "HandOffInput",
    "HandOffResult",
    "OpenTicketInput",
    "OrderInput",
    "ReadAdviceInput",
    "ReadAdviceResult",
    "RecordOrderResult",
    "RecordPaymentInput",
    "ReleaseStockInput",
    "ReservationState",
    "ReserveStockInput",
    "ReservedLine",
    "ResolveTicketInput",
    "SendMailInput",
    "SendMailResult",
    "ShipmentView",
    "StockImportResult",
    "StockLine",
    "StockSyncSummary",
    "TicketView",
]


class OrderInput(BaseModel):
    order: OrderIn


class RecordOrderResult(BaseModel):
    customer_id: int
    new_customer: bool
    new_address: bool
    billing: BillingProfile = Field(default_factory=BillingProfile)


class CheckOrderResult(BaseModel):
    holds: list[HoldView] = Field(default_factory=list)


class StockLine(BaseModel):
    sku: str
    quantity: int


class ReserveStockInput(BaseModel):
    order_id: str
    lines: list[StockLine]
    channel: str = ""  # picks the allocation rule
    country: str = "DE"  # delivery country, for the rule "nearest"


class ReservedLine(BaseModel):
    warehouse: str
    sku: str
    quantity: int


class BackorderLine(BaseModel):
    sku: str
    quantity: int
    expected_at: datetime | None = None


class ReservationState(BaseModel):
    """The order's stock: hard reservations not yet allocated (``pending``) and the lines no
    warehouse had (``backordered``, reserved soft until stock arrives)."""

    pending: list[ReservedLine] = Field(default_factory=list)
    backordered: list[BackorderLine] = Field(default_factory=list)
    partial_delivery: bool = True  # the channel's rule: ship the available part at once
    explanation: str = ""

    @property
    def reserved(self) -> bool:
        return bool(self.pending)


class FillBackordersInput(BaseModel):
    skus: list[str] | None = None  # only backorders of these SKUs (None: all)
    order_id: str | None = None  # only this order's backorders (staff release)


class ReleaseStockInput(BaseModel):
    order_id: str
    restock_allocated: bool = False  # also return stock of a shipment that never left
    cancelled: bool = False  # the order is cancelled: record it (bank matching skips it)


class AllocateShipmentInput(BaseModel):
    order_id: str
    round: int = 1  # allocation round: 1 at first, one more per later backorder delivery


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
    billing: BillingProfile = Field(default_factory=BillingProfile)  # the customer's terms


class DunningInput(BaseModel):
    order: OrderView  # with totals.fees including this level's fee
    level: DunningLevel
    invoice_number: str
    invoiced_at: datetime
    payment_term: timedelta
    deadline: timedelta  # the new deadline: this long after ``at``
    at: datetime  # when the step is taken (workflow time)


class DunningNotice(BaseModel):
    due_on: date  # the invoice's due date (shop time)
    deadline_on: date  # the new deadline
    document: DocumentView | None = None  # the letter, for levels with ``letter``


class CreditNoteInput(BaseModel):
    order_id: str
    request: CreditNoteIn


class CreditNoteResult(BaseModel):
    document: DocumentView
    invoice_number: str
    total: Decimal  # the credit note's gross amount
    currency: str
    credit: OrderView  # the credited part (lines, shipping, totals) with the customer
    invoice_total: Decimal
    credited_before: Decimal  # the earlier credit notes of the invoice, together
    paid: Decimal  # payments recorded for the order

    @property
    def refund_due(self) -> Decimal:
        """What the customer gets back because of this credit note: overpayment after it
        minus overpayment before it (so several credit notes never refund twice)."""
        owed_before = self.invoice_total - self.credited_before
        owed_after = owed_before - self.total
        over = max(self.paid - owed_after, Decimal(0))
        return over - max(self.paid - owed_before, Decimal(0))


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
    partner: str | None = None  # the partner's code (None: the default partner)


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
    partner: str | None = None  # whose FTP it is on (None: the default partner)


class ReadAdviceInput(BaseModel):
    name: str
    partner: str | None = None  # None: the default partner


class ReadAdviceResult(BaseModel):
    file: AdviceFile
    already_done: bool  # imported before (same content) or gone: nothing to do
    confirmations: list[AdviceConfirmation] = Field(default_factory=list)
    error: str | None = None  # why the file is unusable: reject it


class FinishAdviceInput(BaseModel):
    file: AdviceFile
    outcome: Literal["archived", "rejected"]
    detail: str = ""


class StockSyncSummary(BaseModel):
    """What applying one stock list did."""

    warehouse: str
    rows: int = 0
    updated: int = 0
    created: int = 0
    stale: int = 0  # older than the level they would replace: skipped
    unknown_skus: int = 0  # not in the catalog: skipped
    unknown_examples: list[str] = Field(default_factory=list)

    def text(self) -> str:
        unknown = (f", {self.unknown_skus} unknown SKU(s) skipped (e.g. "
                   f"{', '.join(self.unknown_examples[:5])})" if self.unknown_skus else "")
        return (f"warehouse {self.warehouse}: {self.rows} rows, {self.updated} updated, "
                f"{self.created} created, {self.stale} stale{unknown}")


class StockImportResult(BaseModel):
    file: AdviceFile
    already_done: bool = False
    error: str | None = None
    summary: StockSyncSummary | None = None


class ExportOrdersInput(BaseModel):
    day: str | None = None  # YYYY-MM-DD; None: the day before ``reference`` (shop time)
    reference: datetime | None = None


class ExportDatevInput(BaseModel):
    period_from: str | None = None  # YYYY-MM-DD; both None: the month before ``reference``
    period_to: str | None = None
    reference: datetime | None = None


class ExportDatevResult(BaseModel):
    period_from: str
    period_to: str
    path: str
    bookings: int
    sha256: str


class ExportOrdersResult(BaseModel):
    day: str
    path: str
    count: int
    sha256: str
