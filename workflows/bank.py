"""Bank statements (camt.053) become payments on orders.

``BankStatementWorkflow`` handles one file (workflow id ``bank-statement-{sha256[:32]}``: one
run per content at a time). It reads the statement (XSD-validated), takes the open items,
and matches every booked credit with ``models.matching.match_credit`` (reference in the
remittance lines, else amount and payer). A match signals ``payment_received`` to the order
(with a ``payment_id`` from the file's hash and the credit's position, which the order
ignores if it has seen it); a partial payment leaves the rest open; one transfer may pay
several orders. A surplus, an ambiguous or an unmatched credit, or a payment for an order
that has closed, opens a ``payment`` ticket listing the candidates. Then the file's content
is recorded and the file archived: the same statement imported again (another name, another
upload) is archived without being applied twice. A file that is not a valid camt.053 goes
to ``error/`` with an ``import`` ticket.

``BankInboxWorkflow`` (Schedule ``bank-statements``) first fetches the files waiting in the
bank's FTP folder into the inbox (when one is configured; a file too large to take and an
unreachable server become ``import`` tickets, the latter once a day, and the local inbox is
read all the same), then runs ``BankStatementWorkflow`` for every file in the inbox.

``SettlementWorkflow`` handles a marketplace settlement report (Amazon flat file V2, by
upload; workflow id ``settlement-{sha256[:32]}``), matched by the marketplace's order id:
for an order the marketplace collected the money of (method ``paid``) the payout is recorded
(for the books) and a ticket opened when it differs from the order total; an order waiting
for money gets ``payment_received``; refunds and unknown orders become tickets. Once per
content, like the bank statements.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401
    import idna  # noqa: F401
    from pydantic import ValidationError

    from activities.payments import PaymentActivities
    from activities.tickets import TicketActivities
    from models.activities import OpenTicketInput
    from models.matching import Credit, MatchResult, OpenItem, match_credit
    from models.orders import PaymentIn
    from models.payments import (
        BankCreditView,
        FetchResult,
        FinishStatementInput,
        MarketplacePaymentInput,
        OpenItemView,
        ReadSettlementResult,
        ReadStatementResult,
        SettlementItem,
        SettlementSummary,
        StatementFile,
        StatementSummary,
    )
    from workflows.order import OrderWorkflow

PAYMENT_ID = re.compile(r"^[A-Za-z0-9:/#._-]{1,80}$")  # models.orders.PaymentId

__all__ = ["BankInboxWorkflow", "BankStatementWorkflow", "SettlementWorkflow",
           "settlement_workflow_id", "statement_workflow_id"]

_OPTIONS = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


def _settlement_key(read: ReadSettlementResult, index: int) -> str:
    """One payout of a report: by its settlement id and order, so the same report sent
    again as other bytes (other line ends) pays nothing twice."""
    item = read.items[index]
    key = f"settlement-{read.settlement_id}-{item.marketplace_order_id}"
    return key if len(key) <= 80 and PAYMENT_ID.match(key) else \
        f"settlement-{read.sha256[:16]}-{index}"


def statement_workflow_id(sha256: str) -> str:
    return f"bank-statement-{sha256[:32]}"


def settlement_workflow_id(sha256: str) -> str:
    return f"settlement-{sha256[:32]}"


class _FileImport:
    """What the two imports share: tickets keyed by the file's hash, the final move."""

    prefix: str  # of ticket keys
    finish_method: Any  # the activity that records and moves the file
    summary: StatementSummary | SettlementSummary | None

    async def _ticket(self, read: ReadStatementResult | ReadSettlementResult, key: str,
                      kind: str, text: str) -> None:
        assert self.summary is not None
        self.summary.tickets += 1
        await workflow.execute_activity_method(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=None, key=f"{self.prefix}-{read.sha256[:16]}-{key}",
                            kind=kind, title=text[:200], body=text),
            summary="open a ticket", **_OPTIONS)

    async def _finish(self, read: ReadStatementResult | ReadSettlementResult, outcome: str,
                      detail: str) -> None:
        await workflow.execute_activity_method(
            self.finish_method,
            FinishStatementInput(name=read.name, sha256=read.sha256, outcome=outcome,
                                 detail=detail),
            summary=f"record and move {read.name}", **_OPTIONS)


@workflow.defn
class BankStatementWorkflow(_FileImport):
    prefix = "bank"
    finish_method = PaymentActivities.finish_statement

    def __init__(self) -> None:
        self.items: list[OpenItemView] = []
        self.summary: StatementSummary | None = None

    @workflow.run
    async def run(self, file: StatementFile) -> StatementSummary:
        read: ReadStatementResult = await workflow.execute_activity_method(
            PaymentActivities.read_statement, file, summary=f"read {file.name}", **_OPTIONS)
        summary = self.summary = StatementSummary(name=file.name, sha256=read.sha256,
                                                  outcome="archived",
                                                  credits=len(read.credits))
        if read.already_imported:
            summary.outcome = "already_imported"
            await self._finish(read, "archived", "the same content was imported before")
            return summary
        if read.error is not None:
            summary.outcome = "rejected"
            await self._ticket(read, "file", "import",
                               f"bank statement {file.name} rejected: {read.error}")
            await self._finish(read, "rejected", read.error)
            return summary
        self.items = await workflow.execute_activity_method(
            PaymentActivities.open_items, summary="the orders that still owe money",
            **_OPTIONS)
        for index, credit in enumerate(read.credits):
            await self._apply(read, index, credit)
        for number, reversal in enumerate(read.reversals):  # not payments: a human books them
            what = ("returned to us (a refund or transfer of ours that bounced?)"
                    if reversal.credit else "taken back (a customer's payment reversed?)")
            await self._ticket(read, f"reversal-{number}", "payment",
                               f"bank statement {read.name}: {reversal.amount} "
                               f"{reversal.currency} {what}; "
                               f"{' / '.join(reversal.remittance) or 'no reference'} "
                               f"({reversal.entry_id}): check the order and book by hand")
        await self._finish(read, "archived", f"{summary.credits} credits: {summary.matched} "
                                             f"matched, {summary.partial} partial, "
                                             f"{summary.tickets} tickets")
        return summary

    async def _apply(self, read: ReadStatementResult, index: int,
                     credit: BankCreditView) -> None:
        assert self.summary is not None
        candidates = [i for i in self.items
                      if i.currency == credit.currency and i.open_amount > 0]
        result = match_credit(
            Credit(amount=credit.amount, payer=credit.payer, remittance=credit.remittance),
            [OpenItem(order_id=i.order_id, invoice_number=i.invoice_number,
                      other_numbers=tuple(i.other_numbers),
                      open_amount=i.open_amount, customer_name=i.customer_name,
                      cancelled=i.cancelled)
             for i in candidates])
        what = (f"credit {credit.amount} {credit.currency} from {credit.payer or 'unknown'} "
                f"({' / '.join(credit.remittance) or 'no reference'}; {credit.credit_id})")
        if result.outcome in ("ambiguous", "unmatched"):
            await self._ticket(read, f"{index}", "payment", _unmatched_text(what, result))
            return
        self.summary.matched += result.outcome == "matched"
        self.summary.partial += result.outcome == "partial"
        paid_at = (datetime.combine(credit.booked_on, datetime.min.time(), UTC)
                   if credit.booked_on else workflow.now())
        for number, match in enumerate(result.matches):
            if match.amount <= 0:
                continue
            try:
                payment = PaymentIn(amount=match.amount, currency=credit.currency,
                                    reference=" ".join(credit.remittance)[:140],
                                    paid_at=paid_at,
                                    payment_id=f"camt:{read.sha256[:16]}:{index}:{number}")
            except ValidationError as exc:  # the parser checks amounts and currency
                await self._ticket(read, f"{index}-{number}-invalid", "payment",
                                   f"{what} cannot be booked on {match.order_id}: {exc}")
                continue
            handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run,
                                                               match.order_id)
            try:
                await handle.signal(OrderWorkflow.payment_received, payment)
            except FailureError:
                await self._ticket(read, f"{index}-{number}-closed", "payment",
                                   f"{what} pays {match.amount} for order {match.order_id}, "
                                   "which is closed (cancelled?): refund or book by hand")
                continue
            self.summary.signalled_orders.append(match.order_id)
            self.items = [replace_open(i, match.amount) if i.order_id == match.order_id
                          else i for i in self.items]
        if result.surplus > 0:
            await self._ticket(read, f"{index}-surplus", "payment",
                               f"{what}: {result.surplus} {credit.currency} more than was "
                               f"open on {', '.join(m.order_id for m in result.matches)}: "
                               "refund or credit needed")

def replace_open(item: OpenItemView, paid: Decimal) -> OpenItemView:
    """``item`` with ``paid`` taken off what is open (so later credits see the rest)."""
    return item.model_copy(update={"open_amount": max(item.open_amount - paid, Decimal(0))})


def _unmatched_text(what: str, result: MatchResult) -> str:
    candidates = f"; candidates: {', '.join(result.candidates)}" if result.candidates else ""
    return f"{what} not matched ({result.outcome}: {result.reason}){candidates}"


@workflow.defn
class BankInboxWorkflow:
    @workflow.run
    async def run(self) -> list[StatementSummary]:
        await self._fetch()
        files: list[StatementFile] = await workflow.execute_activity_method(
            PaymentActivities.list_statement_files, summary="list the bank inbox", **_OPTIONS)
        summaries = []
        for file in files:
            try:
                summary = await workflow.execute_child_workflow(
                    BankStatementWorkflow.run, file, id=statement_workflow_id(file.sha256),
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    static_summary=f"bank statement {file.name}")
            except WorkflowAlreadyStartedError:  # an upload of the same content is running
                workflow.logger.info("statement %s is being imported already", file.name)
                continue
            summaries.append(summary)
        return summaries

    async def _fetch(self) -> None:
        """Fetch from the bank's FTP folder; trouble there becomes a ticket, and the files
        already in the inbox are imported all the same."""
        try:
            fetched: FetchResult = await workflow.execute_activity_method(
                PaymentActivities.fetch_bank_files, summary="fetch from the bank's FTP folder",
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30),
                                         maximum_attempts=3))
        except FailureError as exc:
            cause = exc.cause if exc.cause is not None else exc
            day = workflow.now().date().isoformat()
            await self._ticket(f"bank-ftp-{day}",
                               f"bank statements could not be fetched from the bank's FTP "
                               f"folder: {cause.message}")
            return
        for refused in fetched.refused:  # each has its ticket already
            workflow.logger.warning("%s", refused.reason)

    async def _ticket(self, key: str, text: str) -> None:
        await workflow.execute_activity_method(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=None, key=key, kind="import", title=text[:200],
                            body=text),
            summary="open a ticket", **_OPTIONS)



@workflow.defn
class SettlementWorkflow(_FileImport):
    prefix = "settlement"
    finish_method = PaymentActivities.finish_settlement

    def __init__(self) -> None:
        self.summary: SettlementSummary | None = None

    @workflow.run
    async def run(self, file: StatementFile) -> SettlementSummary:
        read: ReadSettlementResult = await workflow.execute_activity_method(
            PaymentActivities.read_settlement, file, summary=f"read {file.name}", **_OPTIONS)
        summary = self.summary = SettlementSummary(
            name=file.name, sha256=read.sha256, outcome="archived",
            settlement_id=read.settlement_id, orders=len(read.items),
            fees=sum((i.fees for i in read.items), read.other))
        if read.already_imported or read.error is not None:
            summary.outcome = "already_imported" if read.already_imported else "rejected"
            if read.error is not None:
                await self._ticket(read, "file", "import",
                                   f"settlement report {file.name} rejected: {read.error}")
            await self._finish(read, "rejected" if read.error else "archived",
                               read.error or "the same content was imported before")
            return summary
        for index, item in enumerate(read.items):
            await self._apply(read, index, item)
        await self._finish(read, "archived", f"settlement {read.settlement_id}: "
                                             f"{summary.orders} orders, {summary.tickets} "
                                             "tickets")
        return summary

    async def _apply(self, read: ReadSettlementResult, index: int, item: SettlementItem) -> None:
        assert self.summary is not None
        what = (f"settlement {read.settlement_id}: order {item.marketplace_order_id} paid "
                f"{item.paid} {read.currency}")
        if item.order_id is None:
            await self._ticket(read, f"{index}-unknown", "payment",
                               f"{what}, but no such order is known here")
            return
        if item.refunded:
            await self._ticket(read, f"{index}-refund", "refund",
                               f"{what}; the marketplace refunded {-item.refunded} "
                               f"{read.currency} to the customer: issue a credit note for "
                               f"order {item.order_id}")
        if item.paid <= 0:
            return
        if item.payment_method == "paid":
            await workflow.execute_activity_method(
                PaymentActivities.record_marketplace_payment,
                MarketplacePaymentInput(order_id=item.order_id,
                                        key=_settlement_key(read, index),
                                        amount=item.paid, currency=read.currency,
                                        reference=f"settlement {read.settlement_id}"),
                summary=f"record the payout for {item.order_id}", **_OPTIONS)
            self.summary.recorded += 1
            if item.order_total is not None and item.paid != item.order_total:
                await self._ticket(read, f"{index}-differs", "payment",
                                   f"{what} for order {item.order_id}, whose total is "
                                   f"{item.order_total}: check the difference")
            return
        try:
            payment = PaymentIn(amount=item.paid, currency=read.currency,
                                reference=f"settlement {read.settlement_id}"[:140],
                                payment_id=_settlement_key(read, index).replace("-", ":", 1))
        except ValidationError as exc:  # the parser checks amounts and currency; never stuck
            await self._ticket(read, f"{index}-invalid", "payment",
                               f"{what} for order {item.order_id} cannot be booked: {exc}")
            return
        handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run, item.order_id)
        try:
            await handle.signal(OrderWorkflow.payment_received, payment)
            self.summary.signalled += 1
        except FailureError:
            await self._ticket(read, f"{index}-closed", "payment",
                               f"{what} for order {item.order_id}, which is closed")
