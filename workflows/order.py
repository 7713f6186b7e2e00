"""OrderWorkflow: the lifecycle of one order, from intake to the review request.

``run`` reads as the lifecycle; each step is a small private method. All I/O happens in
activities; this module only orchestrates (timers, signals, search attributes, details).
Staff and partners steer it with the signals of the contract; ``status`` returns the same
body as ``GET /orders/{order_id}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # pydantic validates EmailStr with these lazily; load them outside the sandbox up front
    import email_validator  # noqa: F401
    import idna  # noqa: F401

    from activities.handoff_http import PARTNER_REJECTED
    from models.activities import ReserveStockInput, StockLine
    from models.orders import (
        CLOSED_STATUSES,
        STATUS_QUERY,
        CancelInput,
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
    from workflows.steps import OrderSteps

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
class OrderWorkflow(OrderSteps):
    @workflow.init
    def __init__(self, input: OrderWorkflowInput) -> None:
        super().__init__(input, compute_totals(input.order))
        self._release: ReleaseInput | None = None
        self._cancel: CancelInput | None = None
        self._hold: HoldInput | None = None
        self._confirmation: ShipmentConfirmation | None = None
        self._payments_seen = 0

    # --- the lifecycle -----------------------------------------------------------------

    @workflow.run
    async def run(self, input: OrderWorkflowInput) -> str:
        try:
            await self.record()
            await self._check()
            await self._reserve()
            await self.send_customer_mail("confirmation", "order_confirmation")
            await self._await_payment()
            await self._checkpoint()
            await self.allocate()
            await self._choose_carrier()
            await self._checkpoint()
            await self._hand_off()
            await self._await_shipment()
            await self.notify_shipped(self._confirmation_or_fail())
            await self._checkpoint()
            await self.invoice()
            if self.order.payment.method == "invoice":
                await self._wait_paid_in_full("payment of the invoice")
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
        lines = [StockLine(sku=line.sku, quantity=line.quantity) for line in self.order.lines]
        while True:
            result = await self.reserve(ReserveStockInput(order_id=self.order_id, lines=lines))
            if result.reserved:
                return
            detail = ", ".join(
                f"{m.sku}: {m.requested} wanted, {m.available} available" for m in result.missing
            )
            await self._hold_until_released(
                [HoldView(reason=HoldReason.OUT_OF_STOCK, detail=detail)],
                kind="backorder", status=OrderStatus.BACKORDERED,
            )

    async def _choose_carrier(self) -> None:
        while True:
            choice = await self.choose_carrier()
            if choice.decision.chosen is not None:
                return
            await self._hold_until_released(
                [HoldView(reason=HoldReason.NO_CARRIER, detail=choice.explanation)],
                kind="no-carrier")

    async def _hand_off(self) -> None:
        while True:
            try:
                await self.hand_off()
                return
            except ActivityError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == PARTNER_REJECTED):
                    raise
                await self._hold_until_released(
                    [HoldView(reason=HoldReason.HANDOFF_REJECTED, detail=cause.message)],
                    kind="handoff")

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

    async def _await_shipment(self) -> None:
        shipment = self.view.shipments[0]
        self.wait_for(f"waiting for the shipping confirmation of {shipment.shipment_id} "
                      f"since {workflow.now():%Y-%m-%d %H:%M} UTC")
        confirmed = await self._wait(lambda: self._confirmation is not None,
                                     self.policy.ship_confirmation_timeout, cancellable=False)
        if confirmed:
            return
        await self.escalate(shipment.shipment_id)
        self.wait_for(f"escalated: no shipping confirmation for {shipment.shipment_id} after "
                      f"{format_duration(self.policy.ship_confirmation_timeout)}; still waiting")
        await self._wait(lambda: self._confirmation is not None, None, cancellable=False)
        await self.resolve_escalation(self._confirmation_or_fail())

    async def _wait_paid_in_full(self, what: str) -> None:
        self.wait_for(f"waiting for {what}: {self.open_amount()} {self.order.currency} open")
        await self._wait(self.paid_in_full, None, cancellable=False)

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
        running), a cancel ends it. Returns whether ``done()`` became true."""
        deadline = None if timeout is None else workflow.now() + timeout
        while True:
            remaining = None if deadline is None else deadline - workflow.now()
            if remaining is not None and remaining <= timedelta(0):
                return done()
            try:
                await workflow.wait_condition(
                    lambda: done() or self._hold is not None
                    or (cancellable and self._cancel is not None),
                    timeout=remaining,
                )
            except TimeoutError:
                return done()
            if done():
                return True
            await self._checkpoint(cancellable=cancellable)

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

    def _confirmation_or_fail(self) -> ShipmentConfirmation:
        if self._confirmation is None:
            raise ApplicationError("no shipping confirmation", type="InvalidState",
                                   non_retryable=True)
        return self._confirmation

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

    @workflow.signal(description="Money arrived: {amount, currency, reference, paid_at}")
    async def payment_received(self, input: PaymentIn) -> None:
        self._payments_seen += 1
        await self.apply_payment(input, key=f"payment-{self._payments_seen}")

    @workflow.signal(
        description="The partner shipped: {carrier, tracking_number, shipped_at, shipment_id?}"
    )
    def shipment_confirmed(self, input: ShipmentConfirmation) -> None:
        if self._confirmation is not None:
            self.event("signal", f"duplicate shipping confirmation {input.tracking_number} "
                                 "ignored")
            return
        if self.view.status in CLOSED_STATUSES:
            self.event("signal", f"shipping confirmation ignored: order is {self.view.status}")
            return
        self._confirmation = input
        self.event("shipment_confirmed", f"shipping confirmation received: {input.carrier} "
                                         f"{input.tracking_number}")

    @workflow.query(name=STATUS_QUERY, description="The order as GET /orders/{order_id} shows it")
    def status(self) -> OrderView:
        return self.view

    def paid_in_full(self) -> bool:
        return self.open_amount() <= Decimal("0")
