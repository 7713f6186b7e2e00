"""``CollectiveInvoiceWorkflow``: the monthly collective invoices (Schedule
``collective-invoices``, or ``orders collective-invoices [--period YYYY-MM]``).

For each customer with orders waiting (shipped up to the end of the period, flagged
``collective_invoice``) it issues one invoice (``activities/collective.py``), mails it once
(the PDF, or the XRechnung XML for customers who take it) and signals
``collective_invoiced`` to each order on it, which then waits for its money like any
invoiced order (dunning included). A customer whose invoice fails (or does not get through
within ``customer_timeout``, e.g. SMTP down) does not stop the others; the workflow opens a
ticket and fails at the end naming them. A rerun (``orders collective-invoices --period``)
picks up what is left: customers with orders still waiting, and invoices an earlier run
numbered but did not store or mail, which it renders under the same number, signals again
(an order takes one collective invoice; the same one again is ignored) and mails once.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    # pydantic validates EmailStr with these lazily; load them outside the sandbox up front
    import email_validator  # noqa: F401
    import idna  # noqa: F401

    from activities.collective import COLLECTIVE_MAIL, NOTHING_TO_INVOICE, CollectiveActivities
    from activities.mail import MailActivities
    from activities.tickets import TicketActivities
    from models.activities import OpenTicketInput, SendMailInput
    from models.billing import (
        PERIOD_PATTERN,
        CollectiveInvoiced,
        CollectiveResult,
        IssueCollectiveInput,
    )
    from workflows.order import OrderWorkflow

__all__ = ["CollectiveInvoiceInput", "CollectiveInvoiceSummary", "CollectiveInvoiceWorkflow"]


class CollectiveInvoiceInput(BaseModel):
    period: str | None = Field(default=None, pattern=PERIOD_PATTERN)  # None: last month
    activity_timeout: timedelta = timedelta(seconds=120)  # one attempt of a step
    customer_timeout: timedelta = timedelta(minutes=30)  # all attempts of a step


class CollectiveInvoiceSummary(BaseModel):
    period: str
    invoices: list[str] = Field(default_factory=list)  # the numbers issued
    orders: int = 0
    resumed: list[str] = Field(default_factory=list)  # earlier runs' invoices finished now


@workflow.defn
class CollectiveInvoiceWorkflow:
    @workflow.run
    async def run(self, input: CollectiveInvoiceInput | None = None
                  ) -> CollectiveInvoiceSummary:
        input = input or CollectiveInvoiceInput()  # the Schedule: last month
        options = {"start_to_close_timeout": input.activity_timeout,
                   "schedule_to_close_timeout": input.customer_timeout,
                   "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30),
                                               non_retryable_error_types=[NOTHING_TO_INVOICE])}
        period, customers = await workflow.execute_activity_method(
            CollectiveActivities.collective_customers, input.period,
            summary="find the customers with orders waiting", **options)
        summary = CollectiveInvoiceSummary(period=period)
        failed: list[str] = []
        for customer_id in customers:
            try:
                result: CollectiveResult = await workflow.execute_activity_method(
                    CollectiveActivities.issue_collective_invoice,
                    IssueCollectiveInput(customer_id=customer_id, period=period),
                    summary=f"issue the collective invoice of customer #{customer_id}",
                    **options)
                await self._deliver(result, period, options)
            except ActivityError as exc:
                cause = exc.cause if exc.cause is not None else exc
                if isinstance(cause, ApplicationError) and cause.type == NOTHING_TO_INVOICE:
                    continue  # a concurrent run took its orders
                workflow.logger.error("collective invoice of customer #%s failed: %s",
                                      customer_id, cause)
                failed.append(f"customer #{customer_id}: {cause}")
                continue
            number = result.document.number or ""
            (summary.resumed if result.resumed else summary.invoices).append(number)
            summary.orders += len(result.orders)
        if failed:
            text = (f"collective invoices of {period} failed for {'; '.join(failed)}. Fix the "
                    f"cause, then run `orders collective-invoices --period {period}`: it "
                    "finishes these and issues nothing twice.")
            await workflow.execute_activity_method(
                TicketActivities.open_ticket,
                OpenTicketInput(order_id=None, kind="invoice", title=text[:200], body=text,
                                key=f"collective-{period}-{workflow.info().run_id}"),
                summary="open a ticket for the failed collective invoices",
                start_to_close_timeout=input.activity_timeout,
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)))
            raise ApplicationError(text, type="CollectiveInvoiceFailed")
        return summary

    async def _deliver(self, result: CollectiveResult, period: str,
                       options: dict[str, object]) -> None:
        """Signal the orders, then mail the invoice: a sent mail marks the invoice as
        delivered (a run stopped before it is finished by the next)."""
        doc = result.document
        number = doc.number or ""
        for order_id, amount in result.orders:
            handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run, order_id)
            try:
                await handle.signal(OrderWorkflow.collective_invoiced, CollectiveInvoiced(
                    number=number, document_id=doc.document_id, amount=amount,
                    issued_at=result.issued_at, payment_term=result.payment_term,
                    einvoice_id=doc.einvoice_id))
            except FailureError:  # the order's workflow is gone (terminated by staff)
                workflow.logger.warning("order %s is closed; collective invoice %s not "
                                        "signalled", order_id, number)
        await workflow.execute_activity_method(
            MailActivities.send_mail,
            SendMailInput(order_id=doc.document_id, key=COLLECTIVE_MAIL, to=result.email,
                          template="collective_invoice",
                          context={"invoice_number": number, "period": period,
                                   "invoice_total": str(result.total),
                                   "currency": result.currency,
                                   "due_on": f"{result.due_on:%d.%m.%Y}",
                                   "customer_name": result.customer_name,
                                   "orders": [{"order_id": o, "amount": str(a)}
                                              for o, a in result.orders],
                                   "xrechnung": doc.einvoice_id is not None},
                          attachments=[doc.einvoice_id or doc.document_id]),
            summary=f"mail the collective invoice {number}", **options)  # type: ignore[arg-type]
