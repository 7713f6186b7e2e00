"""OrderWorkflow: the lifecycle of one order, from intake to the review request.

``run`` reads as the lifecycle; each step is a small private method. The shipments (split,
backorders, hand-offs, confirmations) are ``Fulfilment`` (fulfilment.py), the dunning of an
unpaid invoice is ``Dunning`` (dunning.py), single steps are ``OrderSteps`` (steps.py).
All I/O happens in activities; the workflow code only orchestrates (timers, signals, search
attributes, details).
Staff and partners steer it with the signals of the contract; ``status`` returns the same
body as ``GET /orders/{order_id}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # pydantic validates EmailStr with these lazily; load them outside the sandbox up front
    import email_validator  # noqa: F401
    import idna  # noqa: F401

    from models.activities import ReservationState, ReserveStockInput, StockLine
    from models.billing import CollectiveInvoiced
    from models.orders import (
        CLOSED_STATUSES,
        STATUS_QUERY,
        CancelInput,
        CreditIssued,
        HoldInput,
        HoldReason,
        HoldView,
        OrderStatus,
        OrderView,
        PaymentIn,
        PaymentStatus,
        ReleaseInput,
        ShipmentConfirmation,
    )
    from models.rules import compute_totals
    from models.workflow_io import OrderWorkflowInput, format_duration, german_duration
    from workflows.dunning import Dunning

__all__ = ["OrderCancelled", "OrderWorkflow"]

# Statuses in which a cancel is still possible (the goods have not left with a partner yet).
CANCELLABLE = frozenset({
    OrderStatus.RECEIVED, OrderStatus.ON_HOLD, OrderStatus.AWAITING_PAYMENT,
    OrderStatus.ALLOCATING, OrderStatus.BACKORDERED,
})
# Statuses in which a staff hold is refused (shipped or closed).
NOT_HOLDABLE = frozenset({
    OrderStatus.SHIPPED, OrderStatus.PARTIALLY_SHIPPED, OrderStatus.INVOICED, *CLOSED_STATUSES,
})


class OrderCancelled(Exception):
    """Raised inside the workflow when a cancel takes effect; ``run`` turns it into the
    cancellation step."""


@workflow.defn
class OrderWorkflow(Dunning):
    @workflow.init
    def __init__(self, input: OrderWorkflowInput) -> None:
        super().__init__(input, compute_totals(input.order, input.policy.tax))
        self._release: ReleaseInput | None = None
        self._cancel: CancelInput | None = None
        self._hold: HoldInput | None = None
        self._confirmations: list[ShipmentConfirmation] = []  # received, not yet applied
        self._seen_confirmations: set[tuple[str, str]] = set()
        self._stock_arrived = False
        self._reservation = ReservationState()
        self._round = 1  # allocation round: one more per later delivery of backordered lines
        # Shipments whose confirmation timer ran out. The timers decide, not a comparison with
        # workflow.now(): a decision on the clock can differ when a history is replayed.
        self._overdue: list[str] = []
        self._deadlines: dict[str, asyncio.Task[None]] = {}
        self._payments_seen = 0
        self._credit_notes: set[str] = set()
        self._payment_ids: set[str] = set()

    # --- the lifecycle -----------------------------------------------------------------

    @workflow.run
    async def run(self, input: OrderWorkflowInput) -> str:
        try:
            await self.record()
            await self._check()
            await self._reserve()
            await self.send_customer_mail("confirmation", "order_confirmation")
            if self._reservation.backordered:
                await self.notify_backorder(self._reservation)
            await self._await_payment()
            await self._checkpoint()
            await self._fulfil()
            await self._checkpoint()
            if self.collective():
                await self.collective_invoice()
            else:
                await self.invoice()
            if self.order.payment.method == "invoice":
                await self.dun()
            await self._review()
        except OrderCancelled:
            assert self._cancel is not None
            await self.cancel_order(self._cancel)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view.status.value

    async def _check(self) -> None:
        holds = await self.check()
        if holds:
            await self._hold_until_released(holds, kind="hold")

    async def _reserve(self) -> None:
        order = self.order
        lines = [StockLine(sku=line.sku, quantity=line.quantity) for line in order.lines]
        self._reservation = await self.reserve(ReserveStockInput(
            order_id=self.order_id, lines=lines, channel=order.channel,
            country=order.delivery_address.country))

    async def _await_payment(self) -> None:
        method = self.order.payment.method
        if method == "paid":
            self.view.totals.paid, self.view.totals.open = self.view.totals.total, Decimal(0)
            self.set_payment_status(PaymentStatus.PAID)
            self.event("payment", "paid by the channel (captured by the marketplace or PSP)")
            return
        if method != "prepaid":
            self.event("payment", f"payment method {method}: no payment wait before shipping")
            return
        self.set_status(OrderStatus.AWAITING_PAYMENT)
        policy = self.policy
        since = workflow.now()
        self.wait_for(f"waiting for payment of {self.open_amount()} {self.order.currency} "
                      f"since {since:%Y-%m-%d %H:%M} UTC")
        if await self._wait(self.paid_in_full, policy.payment_reminder_after):
            return
        await self.send_customer_mail(
            "payment_reminder", "payment_reminder", extra={"open_amount": str(self.open_amount())}
        )
        self.wait_for(f"waiting for payment since {since:%Y-%m-%d %H:%M} UTC, reminder sent "
                      f"{workflow.now():%Y-%m-%d %H:%M} UTC")
        remaining = policy.cancel_unpaid_after - policy.payment_reminder_after
        if await self._wait(self.paid_in_full, max(remaining, timedelta(seconds=1))):
            return
        self._cancel = CancelInput(
            by="system",
            reason=f"Zahlung nicht innerhalb von {german_duration(policy.cancel_unpaid_after)} "
                   "eingegangen (Vorkasse)",
        )
        raise OrderCancelled

    async def _review(self) -> None:
        self.wait_for(f"review request due in {format_duration(self.policy.review_request_after)}")
        await workflow.sleep(self.policy.review_request_after)
        await self.send_customer_mail("review", "review_request")
        self.set_status(OrderStatus.COMPLETED)
        self.wait_for("completed")
        self.event("completed", "order completed")

    # --- waiting, holds and cancels ----------------------------------------------------

    async def _wait(
        self, done: Callable[[], bool], timeout: timedelta | None, *, cancellable: bool = True
    ) -> bool:
        """Wait until ``done()`` or the timeout; a staff hold pauses the wait (the clock keeps
        running), a cancel ends it. Returns whether ``done()`` became true. The timeout is a
        timer that runs out, never a comparison with ``workflow.now()``, so a replay takes
        the same path."""
        expired = False

        async def run_out(duration: timedelta) -> None:
            nonlocal expired
            await workflow.sleep(duration)
            expired = True

        timer = asyncio.create_task(run_out(timeout)) if timeout is not None else None
        try:
            while True:
                await workflow.wait_condition(
                    lambda: done() or expired or self._hold is not None
                    or (cancellable and self._cancel is not None))
                if done() or expired:
                    return done()
                await self._checkpoint(cancellable=cancellable)
        finally:
            if timer is not None and not timer.done():
                timer.cancel()

    async def _checkpoint(self, *, cancellable: bool = True) -> None:
        """Between steps: apply a pending cancel or staff hold."""
        if cancellable and self._cancel is not None:
            raise OrderCancelled
        if self._hold is not None:
            hold, self._hold = self._hold, None
            reason = f"{hold.reason} (by {hold.by})" if hold.reason else f"held by {hold.by}"
            await self._hold_until_released([HoldView(reason=HoldReason.STAFF, detail=reason)],
                                            kind="staff-hold", cancellable=cancellable)

    async def _hold_until_released(
        self, holds: list[HoldView], *, kind: str,
        status: OrderStatus = OrderStatus.ON_HOLD, cancellable: bool = True,
    ) -> None:
        previous, waiting_for = self.view.status, self.view.waiting_for
        await self.put_on_hold(holds, kind=kind, status=status)
        self._release = None
        await workflow.wait_condition(
            lambda: self._release is not None or (cancellable and self._cancel is not None)
        )
        if self._release is None:
            raise OrderCancelled
        release, self._release = self._release, None
        await self.release_hold(release, resume_status=previous)
        self.wait_for(waiting_for)

    # --- signals and the query ---------------------------------------------------------

    @workflow.signal(description="Release an order that is on hold or backordered: {by, note}")
    def release(self, input: ReleaseInput) -> None:
        if self.view.status not in (OrderStatus.ON_HOLD, OrderStatus.BACKORDERED):
            self.event("signal", f"release by {input.by} ignored: order is {self.view.status}")
            return
        self._release = input

    @workflow.signal(description="Put the order on hold until released: {by, reason}")
    def hold(self, input: HoldInput) -> None:
        if self.view.status in NOT_HOLDABLE or self.view.status == OrderStatus.ON_HOLD:
            self.event("signal", f"hold by {input.by} ignored: order is {self.view.status}")
            return
        self._hold = input
        self.event("hold_requested", f"hold requested by {input.by}: {input.reason}")

    @workflow.signal(description="Cancel the order (refused once handed off): {by, reason}")
    def cancel(self, input: CancelInput) -> None:
        if self.view.status not in CANCELLABLE:
            self.event("signal", f"cancel by {input.by} refused: order is {self.view.status}")
            return
        self._cancel = input
        self.event("cancel_requested", f"cancel requested by {input.by}: {input.reason}")

    @workflow.signal(description="Money arrived: {amount, currency, reference, paid_at, "
                                 "payment_id?} (a payment_id seen before is ignored)")
    async def payment_received(self, input: PaymentIn) -> None:
        if input.payment_id is not None:
            if input.payment_id in self._payment_ids:
                self.event("signal", f"payment {input.payment_id} seen before: ignored")
                return
            self._payment_ids.add(input.payment_id)
        self._payments_seen += 1
        # counted at once: a dunning step due while the payment is being recorded (or in
        # the same workflow task) sees that the money has come
        arriving = input.amount if input.currency == self.order.currency else Decimal(0)
        self.arriving += arriving
        try:
            await self.apply_payment(input, key=f"payment-{self._payments_seen}")
        finally:
            self.arriving -= arriving

    @workflow.signal(
        description="The partner shipped: {carrier, tracking_number, shipped_at, shipment_id?}"
    )
    def shipment_confirmed(self, input: ShipmentConfirmation) -> None:
        key = (input.shipment_id or "", input.tracking_number)
        if key in self._seen_confirmations or any(
                s.tracking_number == input.tracking_number for s in self.view.shipments):
            self.event("signal", f"duplicate shipping confirmation {input.tracking_number} "
                                 "ignored")
            return
        if self.view.status in CLOSED_STATUSES or self.view.status in (
                OrderStatus.SHIPPED, OrderStatus.INVOICED):
            self.event("signal", f"shipping confirmation ignored: order is {self.view.status}")
            return
        self._seen_confirmations.add(key)
        self._confirmations.append(input)
        self.event("shipment_confirmed", f"shipping confirmation received: {input.carrier} "
                                         f"{input.tracking_number}")

    @workflow.signal(description="Stock arrived for backordered lines (the stock sync sends "
                                 "it after reserving them): no input")
    def stock_arrived(self) -> None:
        self._stock_arrived = True

    @workflow.signal(description="A credit note was issued for the invoice (sent by its "
                                 "credit-note workflow): {number, amount}")
    def credit_note_issued(self, input: CreditIssued) -> None:
        if input.number in self._credit_notes:
            return
        self._credit_notes.add(input.number)
        totals = self.view.totals
        totals.credited += input.amount
        totals.open = self.open_amount()
        self.event("credit_note", f"credit note {input.number} over {input.amount} "
                                  f"{self.order.currency}; open {totals.open}")
        if totals.open == 0 and totals.paid > 0:
            self.set_payment_status(PaymentStatus.PAID)

    @workflow.signal(description="The order is on a collective invoice (sent by the monthly "
                                 "collective-invoice workflow): {number, document_id, amount, "
                                 "issued_at, payment_term}")
    def collective_invoiced(self, input: CollectiveInvoiced) -> None:
        if not self.collective():
            self.event("signal", f"collective invoice {input.number} ignored: the order is "
                                 "not invoiced collectively")
            return
        if self.collective_invoiced_with is not None:
            if self.collective_invoiced_with.number != input.number:
                self.event("signal", f"collective invoice {input.number} ignored: already "
                                     f"on {self.collective_invoiced_with.number}")
            return  # the same one again: a rerun finishing its delivery
        self.collective_invoiced_with = input

    @workflow.query(name=STATUS_QUERY, description="The order as GET /orders/{order_id} shows it")
    def status(self) -> OrderView:
        return self.view

    def paid_in_full(self) -> bool:
        return self.open_amount() <= Decimal("0")
