"""The steps of the order workflow: each one an activity call plus the state it changes.

``OrderSteps`` holds the order's state as the ``OrderView`` that the ``status`` query
returns, so the view is never a second copy to keep in sync. ``OrderWorkflow`` (order.py)
decides *when* each step runs; this class says *what* a step does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.collective import CollectiveActivities
    from activities.documents import DocumentActivities
    from activities.mail import MailActivities
    from activities.store import StoreActivities
    from activities.tickets import TicketActivities
    from models.activities import (
        CheckOrderResult,
        DocumentInput,
        FillBackordersInput,
        OpenTicketInput,
        OrderInput,
        RecordPaymentInput,
        ReleaseStockInput,
        ReservationState,
        ReserveStockInput,
        ResolveTicketInput,
        SendMailInput,
    )
    from models.billing import BillingProfile, CollectiveInvoiced
    from models.orders import (
        CancelInput,
        DocumentView,
        HoldView,
        OrderStatus,
        PaymentIn,
        PaymentRecord,
        PaymentStatus,
        ReleaseInput,
        SearchAttr,
        ShipmentView,
        TicketView,
        TimelineEvent,
        Totals,
        initial_view,
    )
    from models.workflow_io import OrderWorkflowInput

__all__ = ["OrderSteps"]

_STATUS = SearchAttributeKey.for_keyword(SearchAttr.ORDER_STATUS)
_PAYMENT = SearchAttributeKey.for_keyword(SearchAttr.PAYMENT_STATUS)
_HOLD = SearchAttributeKey.for_keyword(SearchAttr.HOLD_REASON)
_ESCALATED = SearchAttributeKey.for_bool(SearchAttr.ESCALATED)
_CARRIER = SearchAttributeKey.for_keyword(SearchAttr.CARRIER)
_TRACKING = SearchAttributeKey.for_keyword(SearchAttr.TRACKING_NUMBER)

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


class OrderSteps:
    def __init__(self, input: OrderWorkflowInput, totals: Totals) -> None:
        order = input.order
        self.order = order
        self.order_id = order.order_id
        self.policy = input.policy
        self._hold_count = 0
        self._hold_key = ""
        self._tracking_templates: dict[str, str] = {}  # shipment -> its carrier's link
        self.billing = BillingProfile()  # the customer's terms, read when recorded
        self.collective_invoiced_with: CollectiveInvoiced | None = None
        self.invoiced_at: datetime | None = None  # when the (final) invoice was issued
        self.arriving = Decimal("0.00")  # payments signalled, still being recorded
        self.view = initial_view(order, totals)

    # --- state helpers -----------------------------------------------------------------

    def event(self, kind: str, text: str) -> None:
        self.view.timeline.append(TimelineEvent(at=workflow.now(), kind=kind, text=text))

    def wait_for(self, text: str) -> None:
        self.view.waiting_for = text
        workflow.set_current_details(text)

    def set_status(self, status: OrderStatus) -> None:
        if self.view.status != status:
            self.view.status = status
            workflow.upsert_search_attributes([_STATUS.value_set(status.value)])
            self.event("status", f"status {status.value}")

    def set_hold_attribute(self, reasons: str | None) -> None:
        workflow.upsert_search_attributes(
            [_HOLD.value_set(reasons) if reasons else _HOLD.value_unset()])

    def set_payment_status(self, status: PaymentStatus) -> None:
        if self.view.payment_status != status:
            self.view.payment_status = status
            workflow.upsert_search_attributes([_PAYMENT.value_set(status.value)])

    def open_amount(self) -> Decimal:
        totals = self.view.totals
        return max(totals.total + totals.fees - totals.credited - totals.paid, Decimal("0.00"))

    async def _activity(self, method: Any, arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=self.policy.activity_timeout,
            retry_policy=_RETRY, summary=summary,
        )

    # --- steps -------------------------------------------------------------------------

    async def record(self) -> None:
        self.wait_for("recording the order")
        result = await self._activity(StoreActivities.record_order, OrderInput(order=self.order),
                                      "store the order, find or create the customer")
        who = "new customer" if result.new_customer else "known customer"
        where = ", new address" if result.new_address and not result.new_customer else ""
        self.event("recorded", f"order recorded ({who} #{result.customer_id}{where})")
        self.billing = result.billing

    async def check(self) -> list[HoldView]:
        self.wait_for("checking totals, SKUs, address and comment")
        result: CheckOrderResult = await self._activity(
            StoreActivities.check_order, OrderInput(order=self.order),
            "check totals, SKUs, address and comment")
        if not result.holds:
            self.event("checked", "checks passed")
        return result.holds

    async def reserve(self, input: ReserveStockInput) -> ReservationState:
        self.wait_for("reserving stock")
        state: ReservationState = await self._activity(
            StoreActivities.reserve_stock, input, "reserve stock by the channel's rule")
        self._reservation_event(state)
        return state

    async def refresh_reservation(self, *, fill: bool) -> ReservationState:
        """Read the order's reservations again (after the stock sync filled some of its
        backordered lines); with ``fill`` try to fill them first (a staff release)."""
        if fill:
            await self._activity(StoreActivities.fill_backorders,
                                 FillBackordersInput(order_id=self.order_id),
                                 "reserve backordered lines from free stock")
        state: ReservationState = await self._activity(
            StoreActivities.reservation_state, self.order_id, "read the reservations")
        self._reservation_event(state)
        return state

    def _reservation_event(self, state: ReservationState) -> None:
        parts = []
        if state.pending:
            parts.append("reserved: " + ", ".join(
                f"{line.sku} x{line.quantity} in {line.warehouse}" for line in state.pending))
        if state.backordered:
            parts.append("backordered: " + ", ".join(
                f"{line.sku} x{line.quantity}" + (f" (expected {line.expected_at:%Y-%m-%d})"
                                                  if line.expected_at else "")
                for line in state.backordered))
        text = "; ".join(parts) or "nothing reserved"
        if state.explanation:
            text += f" ({state.explanation})"
        self.event("reserved" if state.pending else "backordered", text)

    async def notify_backorder(self, state: ReservationState) -> None:
        lines = {line.sku: line for line in self.order.lines}
        backordered = [{"sku": b.sku, "name": lines[b.sku].name if b.sku in lines else b.sku,
                        "quantity": b.quantity,
                        "expected_at": b.expected_at.isoformat() if b.expected_at else None}
                       for b in state.backordered]
        await self.send_customer_mail(
            "backorder", "backorder_notice",
            extra={"backordered": backordered,
                   "partial_delivery": state.partial_delivery and bool(state.pending)})

    async def put_on_hold(self, holds: list[HoldView], *, kind: str,
                          status: OrderStatus) -> None:
        self._hold_count += 1
        self._hold_key = f"{kind}-{self._hold_count}"
        self.view.hold_reasons = holds
        reasons = ", ".join(sorted({h.reason.value for h in holds}))
        body = "\n".join(f"- {h.reason.value}: {h.detail}" for h in holds)
        ticket = await self._activity(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=self.order_id, key=self._hold_key, kind=kind,
                            title=f"Order {self.order_id}: {reasons}", body=body),
            f"open a ticket: {reasons}")
        self._add_ticket(ticket)
        workflow.upsert_search_attributes([_HOLD.value_set(reasons)])
        self.set_status(status)
        self.event("on_hold", f"{status.value}: {reasons}; ticket #{ticket.ticket_id}")
        self.wait_for(f"{status.value} since {workflow.now():%Y-%m-%d %H:%M} UTC ({reasons}): "
                      f"waiting for release or cancel, ticket #{ticket.ticket_id}")

    async def release_hold(self, release: ReleaseInput, *, resume_status: OrderStatus) -> None:
        ticket = await self._activity(
            TicketActivities.resolve_ticket,
            ResolveTicketInput(order_id=self.order_id, key=self._hold_key, by=release.by,
                               note=release.note),
            f"resolve the ticket (released by {release.by})")
        if ticket is not None:
            self._add_ticket(ticket)
        self.view.hold_reasons = []
        workflow.upsert_search_attributes([_HOLD.value_unset()])
        note = f": {release.note}" if release.note else ""
        self.event("released", f"released by {release.by}{note}")
        resume = resume_status if resume_status not in (
            OrderStatus.ON_HOLD, OrderStatus.BACKORDERED) else OrderStatus.RECEIVED
        self.set_status(resume)

    async def invoice(self) -> None:
        """The order's (final) invoice: all of it, or what partial invoices left."""
        self.wait_for("issuing the invoice")
        doc = await self._activity(DocumentActivities.issue_invoice,
                                   DocumentInput(order=self.view, billing=self.billing),
                                   "issue the invoice (PDF)")
        self.view.documents.append(doc)
        self.invoiced_at = workflow.now()
        self.set_status(OrderStatus.INVOICED)
        self.event("invoiced", f"invoice {doc.number} over {doc.total} {self.order.currency}")
        await self.send_customer_mail("invoice", "invoice",
                                      attachments=[doc.einvoice_id or doc.document_id],
                                      extra={"invoice_number": doc.number,
                                             "invoice_total": str(doc.total),
                                             "xrechnung": doc.einvoice_id is not None})

    def collective(self) -> bool:
        """Invoiced monthly with the customer's other orders (master data
        ``collective_invoice``; invoice terms only)."""
        return self.billing.collective_invoice and self.order.payment.method == "invoice"

    async def collective_invoice(self) -> None:
        """Put the shipped order on its customer's collective invoice and wait for it (the
        monthly ``CollectiveInvoiceWorkflow`` signals ``collective_invoiced``)."""
        period = await self._activity(CollectiveActivities.enlist_collective, self.view,
                                      "put the order on the customer's collective invoice")
        if self.collective_invoiced_with is None:
            self.event("collective", f"on the collective invoice of {period}")
            self.wait_for(f"waiting for the collective invoice of {period} (issued after "
                          "the month's end)")
        await workflow.wait_condition(lambda: self.collective_invoiced_with is not None)
        invoiced = self.collective_invoiced_with
        assert invoiced is not None
        self.view.documents.append(DocumentView(
            document_id=invoiced.document_id, kind="invoice", number=invoiced.number,
            filename=f"{invoiced.number}.pdf", total=invoiced.amount,
            einvoice_id=invoiced.einvoice_id))
        self.set_status(OrderStatus.INVOICED)
        self.event("invoiced", f"collective invoice {invoiced.number}: {invoiced.amount} "
                               f"{self.order.currency} for this order")

    async def invoice_shipment(self, shipment: ShipmentView) -> None:
        """A partial invoice of one shipment's lines, when it ships before the rest."""
        doc = await self._activity(
            DocumentActivities.issue_invoice,
            DocumentInput(order=self.view, shipment=shipment, billing=self.billing),
            f"issue the partial invoice of {shipment.shipment_id} (PDF)")
        self.view.documents.append(doc)
        self.event("invoiced", f"partial invoice {doc.number} over {doc.total} "
                               f"{self.order.currency} for {shipment.shipment_id}")
        await self.send_customer_mail(
            f"invoice-{shipment.shipment_id}", "invoice",
            attachments=[doc.einvoice_id or doc.document_id],
            extra={"invoice_number": doc.number, "invoice_total": str(doc.total),
                   "xrechnung": doc.einvoice_id is not None})

    async def apply_payment(self, payment: PaymentIn, *, key: str) -> None:
        if payment.currency != self.order.currency:
            await self._payment_ticket(key, f"payment in {payment.currency}, order in "
                                            f"{self.order.currency}: not counted")
            return
        await self._activity(StoreActivities.record_payment,
                             RecordPaymentInput(order_id=self.order_id, key=key, payment=payment),
                             f"record a payment of {payment.amount} {payment.currency}")
        self.view.payments.append(PaymentRecord(
            amount=payment.amount, currency=payment.currency, reference=payment.reference,
            paid_at=payment.paid_at or workflow.now()))
        totals = self.view.totals
        totals.paid += payment.amount
        totals.open = self.open_amount()
        self.event("payment", f"payment of {payment.amount} {payment.currency} received "
                              f"({payment.reference or 'no reference'}); open {totals.open}")
        owed = totals.total + totals.fees - totals.credited
        if totals.paid > owed:
            await self._payment_ticket(key, f"overpaid by {totals.paid - owed} "
                                            f"{payment.currency}: refund or credit needed")
        self.set_payment_status(
            PaymentStatus.PAID if totals.paid >= owed else PaymentStatus.PARTIALLY_PAID)

    async def cancel_order(self, cancel: CancelInput) -> None:
        self.wait_for("cancelling")
        released = await self._activity(
            StoreActivities.release_stock,
            ReleaseStockInput(order_id=self.order_id, restock_allocated=True, cancelled=True),
            "release the reserved stock (and any allocated, not handed off)")
        self.view.hold_reasons = []
        self.set_status(OrderStatus.CANCELLED)
        self.event("cancelled", f"cancelled by {cancel.by}: {cancel.reason}; "
                                f"{released} reservation(s) released")
        await self.send_customer_mail("cancelled", "order_cancelled",
                                      extra={"reason": cancel.reason})
        self.wait_for("cancelled")

    async def send_customer_mail(self, key: str, template: str, *,
                                 extra: dict[str, Any] | None = None,
                                 attachments: list[str] | None = None) -> None:
        context = {"order": self.view.model_dump(mode="json"), **(extra or {})}
        result = await self._activity(
            MailActivities.send_mail,
            SendMailInput(order_id=self.order_id, key=key, to=str(self.order.customer.email),
                          template=template, context=context, attachments=attachments or []),
            f"mail to the customer: {template}")
        self.event("mail", f"mail {template} sent ({result.message_id})")

    # --- internals ---------------------------------------------------------------------

    async def _payment_ticket(self, key: str, text: str) -> None:
        ticket = await self._activity(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=self.order_id, key=f"{key}-ticket", kind="payment",
                            title=f"Order {self.order_id}: {text}", body=text),
            "open a payment ticket")
        self._add_ticket(ticket)
        self.event("payment_ticket", f"{text}; ticket #{ticket.ticket_id}")

    def _add_ticket(self, ticket: TicketView) -> None:
        self.view.tickets = [t for t in self.view.tickets if t.ticket_id != ticket.ticket_id]
        self.view.tickets.append(ticket)
