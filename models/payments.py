"""Typed inputs and results of the bank statement import (activities/payments.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel

__all__ = ["BankCreditView", "FinishStatementInput", "OpenItemView", "ReadStatementResult",
           "StatementFile", "StatementSummary"]


class StatementFile(BaseModel):
    name: str
    sha256: str


class BankCreditView(BaseModel):
    credit_id: str
    amount: Decimal
    currency: str
    booked_on: date | None = None
    payer: str = ""
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


class OpenItemView(BaseModel):
    order_id: str
    invoice_number: str | None = None
    open_amount: Decimal
    currency: str
    customer_name: str


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
