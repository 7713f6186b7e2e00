"""Typed inputs and results of the bank statement import (activities/payments.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel

__all__ = ["BankCreditView", "FetchResult", "FinishStatementInput", "MarketplacePaymentInput",
           "OpenItemView", "ReadSettlementResult", "ReadStatementResult", "RefusedFile",
           "ReversalView", "SettlementItem", "SettlementSummary", "StatementFile",
           "StatementSummary"]


class StatementFile(BaseModel):
    name: str
    sha256: str


class RefusedFile(BaseModel):
    """A file the bank's FTP folder held that was not fetched (moved to its error folder)."""

    name: str
    key: str  # identity for the ticket: name, size and modification time
    reason: str
    moved_to: str


class FetchResult(BaseModel):
    """What one run fetched from the bank's FTP folder into the inbox."""

    fetched: list[str] = []  # names in the inbox
    refused: list[RefusedFile] = []


class BankCreditView(BaseModel):
    credit_id: str
    amount: Decimal
    currency: str
    booked_on: date | None = None
    payer: str = ""
    remittance: list[str] = []


class ReversalView(BaseModel):
    """A booked reversal on a statement (``credit``: money came back to the account)."""

    entry_id: str
    amount: Decimal
    currency: str
    credit: bool
    remittance: list[str] = []


class ReadStatementResult(BaseModel):
    name: str
    sha256: str
    already_imported: bool = False
    error: str | None = None  # the file is not a valid camt.053 statement
    message_id: str = ""
    iban: str = ""
    credits: list[BankCreditView] = []
    skipped_debits: int = 0
    skipped_pending: int = 0
    reversals: list[ReversalView] = []


class OpenItemView(BaseModel):
    order_id: str
    invoice_number: str | None = None  # the final invoice (else the latest partial one)
    other_numbers: list[str] = []  # the order's other (partial) invoices
    open_amount: Decimal
    currency: str
    customer_name: str
    cancelled: bool = False  # the order was cancelled: only a reference can name it


class FinishStatementInput(BaseModel):
    name: str
    sha256: str
    outcome: str  # archived, rejected
    detail: str = ""


class StatementSummary(BaseModel):
    name: str
    sha256: str
    outcome: str  # archived, rejected, already_imported
    credits: int = 0
    matched: int = 0  # credits applied in full to one or more orders
    partial: int = 0  # credits that paid part of an order
    tickets: int = 0  # credits a human has to look at (ambiguous, unmatched, surplus, closed)
    signalled_orders: list[str] = []


class SettlementItem(BaseModel):
    marketplace_order_id: str
    order_id: str | None = None  # ours, None when unknown
    payment_method: str = ""
    order_total: Decimal | None = None
    paid: Decimal  # what the customer paid through the marketplace
    fees: Decimal
    refunded: Decimal


class ReadSettlementResult(BaseModel):
    name: str
    sha256: str
    already_imported: bool = False
    error: str | None = None
    settlement_id: str = ""
    currency: str = ""
    total: Decimal = Decimal("0.00")
    items: list[SettlementItem] = []
    other: Decimal = Decimal("0.00")


class MarketplacePaymentInput(BaseModel):
    order_id: str
    key: str
    amount: Decimal
    currency: str
    reference: str


class SettlementSummary(BaseModel):
    name: str
    sha256: str
    outcome: str  # archived, rejected, already_imported
    settlement_id: str = ""
    orders: int = 0
    recorded: int = 0  # payments recorded for orders paid at the marketplace
    signalled: int = 0  # payments signalled to orders waiting for money
    fees: Decimal = Decimal("0.00")
    tickets: int = 0
