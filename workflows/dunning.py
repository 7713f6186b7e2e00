"""Dunning of an unpaid invoice (payment method ``invoice``), as part of the order workflow.

After the invoice the order waits ``payment_term`` for its money (the due date), then takes
the dunning levels of its policy in turn, each ``after`` the due date: a mail (template
``dunning``) and, for levels with ``letter``, a PDF letter (``mahnung.html``); a level's fee
is added to what is owed. After ``collection_after`` a ``collection`` ticket asks a human to
hand the claim over; the order keeps waiting for the money. Every wait ends as soon as the
order is settled: paid in full (counting a payment whose recording is still under way), or
its invoice credited in full (fees alone are not dunned); no further step is taken then,
and a step whose timer runs out together with the payment's arrival is not taken either.

The dates count from the invoice's issue (a collective invoice's ``issued_at``), not from
when dunning starts, so a late start (an invoice mail retried for hours, a collective
invoice signalled by a rerun days later) does not move the due date. Each wait is a timer
(at least a second, so the same timers are started on replay).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.documents import DocumentActivities
    from activities.tickets import TicketActivities
    from models.activities import DunningInput, DunningNotice, OpenTicketInput
    from models.workflow_io import DunningLevel, german_duration
    from workflows.fulfilment import Fulfilment

__all__ = ["Dunning"]


class Dunning(Fulfilment):
    async def _wait(self, done: Callable[[], bool], timeout: timedelta | None, *,
                    cancellable: bool = True) -> bool:
        raise NotImplementedError  # OrderWorkflow's

    def settled(self) -> bool:
        """Nothing left to chase: paid in full (counting payments still being recorded), or
        the invoice credited in full (what is left then is fees, which are not dunned)."""
        totals = self.view.totals
        if totals.total - totals.credited <= 0:
            return True
        return self.open_amount() - self.arriving <= 0

    async def _until(self, moment: datetime) -> bool:
        """Wait until ``moment`` (at least a second) or until settled; whether settled."""
        wait = max(moment - workflow.now(), timedelta(seconds=1))
        return await self._wait(self.settled, wait, cancellable=False) or self.settled()

    async def dun(self) -> None:
        """Wait for the invoice's money, dunning on the way (see the module docstring)."""
        policy = self.policy
        invoiced_at = self._issued_at()
        term = self.payment_term()
        due_at = invoiced_at + term
        self.wait_for(f"waiting for payment of the invoice: {self.open_amount()} "
                      f"{self.order.currency} open, due in {german_duration(term)}")
        if await self._until(due_at):
            return
        since_due = timedelta(0)
        for level in policy.dunning.levels:
            if await self._until(due_at + level.after):
                return
            since_due = level.after
            await self._dunning_step(level, invoiced_at)
        if await self._until(due_at + policy.dunning.collection_after):
            return
        text = (f"invoice {self._invoice_number()} unpaid {german_duration(since_due)} "
                f"after the last dunning level: {self.open_amount()} {self.order.currency} "
                "open; hand over to collection or write off")
        ticket = await self._activity(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=self.order_id, key="collection", kind="collection",
                            title=f"Order {self.order_id}: {text}", body=text),
            "open a collection ticket")
        self._add_ticket(ticket)
        self.event("collection", f"{text}; ticket #{ticket.ticket_id}")
        self.wait_for(f"waiting for payment: {self.open_amount()} {self.order.currency} open, "
                      f"collection ticket #{ticket.ticket_id}")
        await self._wait(self.settled, None, cancellable=False)

    def _issued_at(self) -> datetime:
        if self.collective_invoiced_with is not None:
            return self.collective_invoiced_with.issued_at
        return self.invoiced_at or workflow.now()

    def payment_term(self) -> timedelta:
        """The collective invoice's term, else the customer's, else the policy's."""
        if self.collective_invoiced_with is not None:
            return self.collective_invoiced_with.payment_term
        term = self.billing.payment_term  # the customer's own, 0 days included
        return term if term is not None else self.policy.payment_term

    def _invoice_number(self) -> str:
        """The invoice dunned: the final (or collective) one, the last of the invoices."""
        numbers = [d.number or "" for d in self.view.documents if d.kind == "invoice"]
        return numbers[-1] if numbers else ""

    async def _dunning_step(self, level: DunningLevel, invoiced_at: datetime) -> None:
        totals = self.view.totals
        totals.fees += level.fee
        totals.open = self.open_amount()
        number = self._invoice_number()
        notice: DunningNotice = await self._activity(
            DocumentActivities.dunning_notice,
            DunningInput(order=self.view, level=level, invoice_number=number,
                         invoiced_at=invoiced_at, payment_term=self.payment_term(),
                         deadline=self.policy.dunning.deadline, at=workflow.now()),
            f"{level.title} (dates{', letter' if level.letter else ''})")
        attachments = []
        if notice.document is not None:
            self.view.documents.append(notice.document)
            attachments = [notice.document.document_id]
        await self.send_customer_mail(
            f"dunning-{level.name}", "dunning", attachments=attachments,
            extra={"level": level.model_dump(mode="json"), "invoice_number": number,
                   "due_on": f"{notice.due_on:%d.%m.%Y}",
                   "deadline_on": f"{notice.deadline_on:%d.%m.%Y}",
                   "open_amount": str(totals.open), "fee": str(level.fee)})
        self.event("dunning", f"{level.title} sent: {totals.open} {self.order.currency} open"
                              f"{f', fee {level.fee}' if level.fee else ''}")
        self.wait_for(f"waiting for payment after the {level.title}: {totals.open} "
                      f"{self.order.currency} open")
