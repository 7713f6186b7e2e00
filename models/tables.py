"""SQLModel tables. Used by activities only; table objects never travel in Temporal payloads.

Every side effect the engine performs is keyed here by ``(order_id, key)`` with a unique
constraint, so a retried activity finds its earlier result instead of acting twice.
Schema changes go through Alembic (``migrations/``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Column, LargeBinary, Numeric, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _money() -> Column:  # type: ignore[type-arg]
    return Column(Numeric(12, 2), nullable=False)


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True, unique=True, max_length=254)
    first_name: str = ""
    last_name: str = ""
    company: str | None = None
    vat_id: str | None = None
    type: str = "b2c"
    # billing profile (master data [[customers]], see models/billing.py)
    collective_invoice: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    einvoice: str | None = Field(default=None, max_length=16)  # factur-x, xrechnung
    buyer_reference: str | None = Field(default=None, max_length=100)
    payment_term_days: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class CustomerAddress(SQLModel, table=True):
    __tablename__ = "customer_address"
    __table_args__ = (UniqueConstraint("customer_id", "normalized"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    normalized: str = Field(max_length=400)
    name: str = ""
    company: str | None = None
    street: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class OrderRecord(SQLModel, table=True):
    __tablename__ = "order_record"
    order_id: str = Field(primary_key=True, max_length=100)
    channel: str = Field(index=True)
    external_id: str
    customer_id: int = Field(foreign_key="customer.id", index=True)
    billing_address_id: int = Field(foreign_key="customer_address.id")
    shipping_address_id: int = Field(foreign_key="customer_address.id")
    currency: str
    total: Decimal = Field(sa_column=_money())
    payload: str  # the OrderIn as JSON, as received
    created_at: datetime = Field(default_factory=utcnow)
    cancelled_at: datetime | None = None  # set by the cancellation (bank matching skips it)


class Warehouse(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=32)
    name: str
    country: str = "DE"
    priority: int = 0
    street: str = Field(default="", sa_column_kwargs={"server_default": ""})
    postal_code: str = Field(default="", sa_column_kwargs={"server_default": ""})
    city: str = Field(default="", sa_column_kwargs={"server_default": ""})
    cutoff: str | None = None  # "HH:MM": hand-offs after it leave the next working day
    partner: str | None = None  # the partner operating it (None: the default partner)


class Product(SQLModel, table=True):
    sku: str = Field(primary_key=True, max_length=64)
    name: str
    weight_g: int
    length_mm: int
    width_mm: int
    height_mm: int
    price: Decimal = Field(sa_column=_money())
    hazardous: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    age_check: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # dropship / pre-order: the supplier partner ships it (no stock of ours); None: stocked
    dropship_partner: str | None = None


class Stock(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("warehouse", "sku"),)
    id: int | None = Field(default=None, primary_key=True)
    warehouse: str = Field(foreign_key="warehouse.code", index=True)
    sku: str = Field(foreign_key="product.sku", index=True)
    on_hand: int = 0
    reserved: int = 0
    expected_at: datetime | None = None  # from the stock feed: when more is expected
    synced_at: datetime | None = None  # last stock sync that set on_hand


class Reservation(SQLModel, table=True):
    """Stock held for an order. A hard reservation (``reserved``) holds units of one warehouse
    for allocation round ``round``; allocating the round ``consumed`` it. A soft one
    (``backordered``, ``warehouse`` empty, ``round`` 0) is a line nobody had: the stock sync
    turns it into hard reservations when stock arrives, oldest first (``filled``)."""

    __table_args__ = (UniqueConstraint("order_id", "round", "sku", "warehouse",
                                       name="uq_reservation_order_round_sku_warehouse"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=100)
    round: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    sku: str = Field(index=True)
    warehouse: str
    quantity: int
    state: str = Field(default="reserved", index=True)
    # reserved, consumed, released; backordered, filled
    expected_at: datetime | None = None  # backordered: when the stock is expected
    created_at: datetime = Field(default_factory=utcnow)


class Shipment(SQLModel, table=True):
    shipment_id: str = Field(primary_key=True, max_length=120)
    order_id: str = Field(index=True, max_length=100)
    warehouse: str
    round: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    lines: str  # JSON list of {sku, quantity}
    created_at: datetime = Field(default_factory=utcnow)


class Ticket(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("order_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str | None = Field(default=None, index=True, max_length=100)
    key: str = Field(max_length=100)
    kind: str  # hold, backorder, escalation, overpayment
    title: str
    body: str = ""
    status: str = Field(default="open", index=True)  # open, resolved
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None


class Payment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("order_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=100)
    key: str = Field(max_length=100)
    amount: Decimal = Field(sa_column=_money())
    currency: str
    reference: str = ""
    paid_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class NumberRange(SQLModel, table=True):
    __tablename__ = "number_range"
    kind: str = Field(primary_key=True, max_length=32)
    year: int = Field(primary_key=True)
    last_number: int = 0


class Document(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("order_id", "key"),)
    document_id: str = Field(primary_key=True, max_length=160)
    order_id: str = Field(index=True, max_length=100)
    key: str = Field(max_length=100)
    kind: str  # delivery_note, order_csv, order_xml, invoice, credit_note
    number: str | None = Field(default=None, unique=True, max_length=40)
    filename: str
    media_type: str
    # Numbered documents are reserved first (number, issued_at) and filled once: content
    # and sha256 are NULL only between the two steps (activities/documents.py).
    sha256: str | None = None
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    issued_at: datetime | None = None
    # What a numbered document was issued for (an OrderView as JSON: the invoiced order, a
    # credit note's credited part), so a retry renders the same and credit notes can be
    # checked against their invoice.
    basis: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    refers_to: str | None = Field(default=None, max_length=40)  # a credit note's invoice
    # The tax rules (TaxConfig as JSON) a numbered document was computed with: re-reading it
    # (credit notes, DATEV) never depends on today's configuration.
    tax: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class CollectiveItem(SQLModel, table=True):
    """An order of a ``collective_invoice`` customer that waits for (or is on) its month's
    collective invoice. ``document_id`` is set in the transaction that numbers the invoice,
    so an order is on exactly one collective invoice."""

    __tablename__ = "collective_item"
    order_id: str = Field(primary_key=True, max_length=100)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    period: str = Field(index=True, max_length=7)  # YYYY-MM of the last shipment (shop time)
    shipped_at: datetime
    basis: str = Field(sa_column=Column(Text, nullable=False))  # the order (OrderView JSON)
    document_id: str | None = Field(default=None, index=True, max_length=160)
    created_at: datetime = Field(default_factory=utcnow)


class MailOutbox(SQLModel, table=True):
    __tablename__ = "mail_outbox"
    __table_args__ = (UniqueConstraint("order_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=100)
    key: str = Field(max_length=100)
    recipient: str
    subject: str
    message_id: str
    status: str = "pending"  # pending, sent
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class Upload(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("partner", "remote_path"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=100)
    partner: str
    remote_path: str = Field(max_length=300)
    sha256: str
    uploaded_at: datetime = Field(default_factory=utcnow)


class ImportedFile(SQLModel, table=True):
    """A partner file whose content was processed (archived or rejected): once per content."""

    __tablename__ = "imported_file"
    __table_args__ = (UniqueConstraint("partner", "sha256"),)
    id: int | None = Field(default=None, primary_key=True)
    partner: str = Field(max_length=64)
    name: str = Field(index=True, max_length=255)
    sha256: str = Field(max_length=64)
    outcome: str = Field(max_length=16)  # archived, rejected
    detail: str = ""
    imported_at: datetime = Field(default_factory=utcnow)
