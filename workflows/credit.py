"""``CreditNoteWorkflow``: one credit note for an invoiced order, started by
``POST /orders/{order_id}/credit-notes`` or ``orders credit-note`` (workflow id
``{order_id}-credit-{request_id}``, so a request is carried out once).

It issues the credit note (checked against the invoice and earlier credit notes, numbered,
Factur-X), mails it to the customer, opens a ``refund`` ticket when money has to go back
(the engine does not move money), and tells the order's workflow, which lowers what is still
open (if the order is still waiting for payment, a credit that covers the rest ends the
wait). A request that does not fit the invoice fails the workflow with the reason; nothing
is numbered then.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    # pydantic validates EmailStr with these lazily; load them outside the sandbox up front
    import email_validator  # noqa: F401
    import idna  # noqa: F401

    from activities.credit_notes import CREDIT_REJECTED, NOT_INVOICED, CreditNoteActivities
    from activities.mail import MailActivities
    from activities.tickets import TicketActivities
    from models.activities import (
        CreditNoteInput,
        CreditNoteResult,
        OpenTicketInput,
        SendMailInput,
    )
    from models.credit import CreditNoteIn
    from models.orders import CreditIssued
    from workflows.order import OrderWorkflow

__all__ = ["CreditNoteSummary", "CreditNoteWorkflow", "CreditNoteWorkflowInput",
           "credit_workflow_id"]


class CreditNoteWorkflowInput(BaseModel):
    order_id: str
    request: CreditNoteIn
    activity_timeout: timedelta = timedelta(seconds=60)


class CreditNoteSummary(BaseModel):
    document_id: str
    number: str
    invoice_number: str
    total: Decimal
    currency: str
    refund: Decimal


def credit_workflow_id(order_id: str, request_id: str) -> str:
    return f"{order_id}-credit-{request_id}"


@workflow.defn
class CreditNoteWorkflow:
    @workflow.run
    async def run(self, input: CreditNoteWorkflowInput) -> CreditNoteSummary:
        options = {"start_to_close_timeout": input.activity_timeout,
                   "retry_policy": RetryPolicy(
                       maximum_interval=timedelta(seconds=30),
                       non_retryable_error_types=[CREDIT_REJECTED, NOT_INVOICED])}
        order_id, request = input.order_id, input.request
        result: CreditNoteResult = await workflow.execute_activity_method(
            CreditNoteActivities.issue_credit_note,
            CreditNoteInput(order_id=order_id, request=request),
            summary=f"issue the credit note ({request.reason})", **options)
        number = result.document.number or ""
        refund = result.refund_due
        credit = result.credit
        await workflow.execute_activity_method(
            MailActivities.send_mail,
            SendMailInput(order_id=order_id, key=f"credit-note-{request.request_id}",
                          to=str(credit.customer.email), template="credit_note",
                          context={"order": credit.model_dump(mode="json"),
                                   "credit_note_number": number,
                                   "invoice_number": result.invoice_number,
                                   "amount": str(result.total), "currency": result.currency,
                                   "refund": str(refund), "reason": request.reason,
                                   "xrechnung": result.document.einvoice_id is not None},
                          attachments=[result.document.einvoice_id
                                       or result.document.document_id]),
            summary="mail the credit note to the customer", **options)
        if refund > 0:
            text = (f"refund {refund} {result.currency} to the customer: credit note {number} "
                    f"for invoice {result.invoice_number} ({request.reason})")
            await workflow.execute_activity_method(
                TicketActivities.open_ticket,
                OpenTicketInput(order_id=order_id, key=f"credit-{request.request_id}-refund",
                                kind="refund", title=f"Order {order_id}: {text}", body=text),
                summary="open a refund ticket", **options)
        handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run, order_id)
        try:
            await handle.signal(OrderWorkflow.credit_note_issued,
                                CreditIssued(number=number, amount=result.total))
        except FailureError:  # the order's workflow has completed: nothing waits for money
            workflow.logger.info("order %s is closed; credit note %s not signalled",
                                 order_id, number)
        return CreditNoteSummary(document_id=result.document.document_id, number=number,
                                 invoice_number=result.invoice_number, total=result.total,
                                 currency=result.currency, refund=refund)
