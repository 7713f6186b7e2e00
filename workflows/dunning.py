"""Dunning of an unpaid invoice (payment method ``invoice``), as part of the order workflow.

After the invoice the order waits ``payment_term`` for its money (the due date), then takes
the dunning levels of its policy in turn, each ``after`` the due date: a mail (template
``dunning``) and, for levels with ``letter``, a PDF letter (``mahnung.html``); a level's fee
is added to what is owed. After ``collection_after`` a ``collection`` ticket asks a human to
hand the claim over; the order keeps waiting for the money. Every wait ends as soon as the
order is paid in full (payments, credit notes): no further step is taken then. Each wait is
a timer, so a replay takes the same path.
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

    def paid_in_full(self) -> bool:
        raise NotImplementedError  # OrderWorkflow's

    async def dun(self) -> None:
        """Wait for the invoice's money, dunning on the way (see the module docstring)."""
        policy = self.policy
        invoiced_at = workflow.now()
        term = self.payment_term()
        self.wait_for(f"waiting for payment of the invoice: {self.open_amount()} "
                      f"{self.order.currency} open, due in {german_duration(term)}")
        if await self._wait(self.paid_in_full, term, cancellable=False):
            return
        since_due = timedelta(0)
        for level in policy.dunning.levels:
            if await self._wait(self.paid_in_full, level.after - since_due, cancellable=False):
                return
            since_due = level.after
            await self._dunning_step(level, invoiced_at)
        if await self._wait(self.paid_in_full, policy.dunning.collection_after - since_due,
                            cancellable=False):
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
        await self._wait(self.paid_in_full, None, cancellable=False)

    def payment_term(self) -> timedelta:
        """The collective invoice's term, else the customer's, else the policy's."""
        if self.collective_invoiced_with is not None:
            return self.collective_invoiced_with.payment_term
        term = self.billing.payment_term  # the customer's own, 0 days included
        return term if term is not None else self.policy.payment_term

    def _invoice_number(self) -> str:
        return next((d.number or "" for d in self.view.documents if d.kind == "invoice"), "")

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
