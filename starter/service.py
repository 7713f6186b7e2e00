"""What the API and the CLI do, as typed functions that take a Temporal ``Client``.

Exceptions::

    ServiceError                 base class
    ├── OrderNotFound            no workflow with that order id (HTTP 404)
    └── OrderStateConflict       the action does not fit the order's status (HTTP 409)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.advice import record_import, was_imported
from activities.stock import StockFileError, apply_stock_list, digest, parse_stock_list
from activities.tickets import TicketActivities
from models.activities import OpenTicketInput
from models.orders import (
    CancelInput,
    HoldInput,
    OrderIn,
    OrderStatus,
    OrderView,
    PaymentIn,
    PaymentStatus,
    ReleaseInput,
    SearchAttr,
    ShipmentConfirmation,
)
from models.rules import compute_totals
from models.workflow_io import OrderPolicy, OrderWorkflowInput, PartnerRoute
from settings import Settings
from workflows.jobs import WakeBackordersWorkflow
from workflows.order import CANCELLABLE, NOT_HOLDABLE, OrderWorkflow

__all__ = [
    "OrderNotFound", "OrderStateConflict", "OrderSummary", "ServiceError", "cancel_order",
    "confirm_shipment", "get_order", "hold_order", "list_orders", "order_status", "policy_from",
    "record_payment", "release_order", "submit_order",
]

_KEYWORD = SearchAttributeKey.for_keyword


class ServiceError(Exception):
    """Base of the errors the API and CLI turn into answers."""


class OrderNotFound(ServiceError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} not found")
        self.order_id = order_id


class OrderStateConflict(ServiceError):
    def __init__(self, order_id: str, status: OrderStatus, action: str) -> None:
        super().__init__(f"cannot {action} order {order_id}: it is {status.value}")
        self.order_id, self.status, self.action = order_id, status, action


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    status: str
    channel: str | None
    customer_email: str | None
    total: float | None
    payment_status: str | None
    hold_reason: str | None
    escalated: bool
    started_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def policy_from(settings: Settings) -> OrderPolicy:
    return OrderPolicy(
        payment_reminder_after=settings.payment_reminder_after,
        cancel_unpaid_after=settings.cancel_unpaid_after,
        ship_confirmation_timeout=settings.ship_confirmation_timeout,
        review_request_after=settings.review_request_after,
        tracking_url=settings.tracking_url,
        activity_timeout=settings.activity_timeout,
        partners={code: PartnerRoute(code=code, channel=p.channel, format=p.handoff_format,
                                     email=p.email, sla=p.sla)
                  for code, p in settings.all_partners().items()},
        default_partner=settings.partner.code,
        tax=settings.tax,
        payment_term=settings.invoice_payment_term,
        invoice_per_shipment=settings.invoice_per_shipment,
        dunning=settings.dunning,
    )


async def submit_order(client: Client, order: OrderIn, *, settings: Settings,
                       task_queue: str | None = None) -> tuple[str, bool]:
    """Start the order's workflow; returns ``(status, created)``. A known order id never
    starts a second workflow, even after the first one has closed."""
    totals = compute_totals(order, settings.tax)
    attrs = TypedSearchAttributes([
        SearchAttributePair(_KEYWORD(SearchAttr.ORDER_STATUS), OrderStatus.RECEIVED.value),
        SearchAttributePair(_KEYWORD(SearchAttr.CHANNEL), order.channel),
        SearchAttributePair(_KEYWORD(SearchAttr.CUSTOMER_EMAIL), str(order.customer.email)),
        SearchAttributePair(_KEYWORD(SearchAttr.PAYMENT_STATUS), PaymentStatus.OPEN.value),
        SearchAttributePair(SearchAttributeKey.for_float(SearchAttr.ORDER_TOTAL),
                            float(totals.total)),
        SearchAttributePair(SearchAttributeKey.for_bool(SearchAttr.ESCALATED), False),
    ])
    try:
        await client.start_workflow(
            OrderWorkflow.run,
            OrderWorkflowInput(order=order, policy=policy_from(settings)),
            id=order.order_id,
            task_queue=task_queue or settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=attrs,
            static_summary=f"Order {order.order_id} ({order.customer.email}, "
                           f"{totals.total} {order.currency})",
        )
    except WorkflowAlreadyStartedError:
        return (await order_status(client, order.order_id)).value, False
    return OrderStatus.RECEIVED.value, True


async def get_order(client: Client, order_id: str) -> OrderView:
    handle = client.get_workflow_handle_for(OrderWorkflow.run, order_id)
    try:
        return await handle.query(OrderWorkflow.status)
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise OrderNotFound(order_id) from err
        raise


async def list_orders(client: Client, *, status: str | None = None, channel: str | None = None,
                      q: str | None = None, limit: int = 100) -> list[OrderSummary]:
    """Orders from Temporal visibility, newest first."""
    clauses = ["WorkflowType = 'OrderWorkflow'"]
    if status:
        clauses.append(f"{SearchAttr.ORDER_STATUS} = {_quote(status)}")
    if channel:
        clauses.append(f"{SearchAttr.CHANNEL} = {_quote(channel)}")
    if q:
        clauses.append(f"({SearchAttr.CUSTOMER_EMAIL} = {_quote(q)} OR WorkflowId = {_quote(q)})")
    found: list[OrderSummary] = []
    async for wf in client.list_workflows(" AND ".join(clauses), limit=limit):
        attrs = wf.typed_search_attributes
        found.append(OrderSummary(
            order_id=wf.id,
            status=attrs.get(_KEYWORD(SearchAttr.ORDER_STATUS)) or "",
            channel=attrs.get(_KEYWORD(SearchAttr.CHANNEL)),
            customer_email=attrs.get(_KEYWORD(SearchAttr.CUSTOMER_EMAIL)),
            total=attrs.get(SearchAttributeKey.for_float(SearchAttr.ORDER_TOTAL)),
            payment_status=attrs.get(_KEYWORD(SearchAttr.PAYMENT_STATUS)),
            hold_reason=attrs.get(_KEYWORD(SearchAttr.HOLD_REASON)),
            escalated=bool(attrs.get(SearchAttributeKey.for_bool(SearchAttr.ESCALATED))),
            started_at=wf.start_time.isoformat() if wf.start_time else None,
        ))
    found.sort(key=lambda s: s.started_at or "", reverse=True)
    return found


async def release_order(client: Client, order_id: str, release: ReleaseInput) -> str:
    status = await order_status(client, order_id)
    if status not in (OrderStatus.ON_HOLD, OrderStatus.BACKORDERED):
        raise OrderStateConflict(order_id, status, "release")
    await _handle(client, order_id).signal(OrderWorkflow.release, release)
    return status.value


async def hold_order(client: Client, order_id: str, hold: HoldInput) -> str:
    status = await order_status(client, order_id)
    if status in NOT_HOLDABLE or status == OrderStatus.ON_HOLD:
        raise OrderStateConflict(order_id, status, "hold")
    await _handle(client, order_id).signal(OrderWorkflow.hold, hold)
    return status.value


async def cancel_order(client: Client, order_id: str, cancel: CancelInput) -> str:
    status = await order_status(client, order_id)
    if status not in CANCELLABLE:
        raise OrderStateConflict(order_id, status, "cancel")
    await _handle(client, order_id).signal(OrderWorkflow.cancel, cancel)
    return status.value


async def record_payment(client: Client, order_id: str, payment: PaymentIn) -> None:
    await _signal_running(client, order_id, "payment", OrderWorkflow.payment_received, payment)


async def confirm_shipment(client: Client, order_id: str, confirmation: ShipmentConfirmation,
                           ) -> None:
    await _signal_running(client, order_id, "confirm the shipment of",
                          OrderWorkflow.shipment_confirmed, confirmation)


# --- internals -------------------------------------------------------------------------


def _handle(client: Client, order_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(order_id)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def _describe(client: Client, order_id: str) -> Any:
    try:
        return await _handle(client, order_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise OrderNotFound(order_id) from err
        raise


async def order_status(client: Client, order_id: str) -> OrderStatus:
    """The status from the workflow's own search attribute (no worker needed)."""
    desc = await _describe(client, order_id)
    value = desc.typed_search_attributes.get(_KEYWORD(SearchAttr.ORDER_STATUS))
    return OrderStatus(value or OrderStatus.RECEIVED.value)


async def _signal_running(client: Client, order_id: str, action: str, signal: Any,
                          arg: Any) -> None:
    desc = await _describe(client, order_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.typed_search_attributes.get(_KEYWORD(SearchAttr.ORDER_STATUS))
        raise OrderStateConflict(order_id, OrderStatus(status or "completed"), action)
    await _handle(client, order_id).signal(signal, arg)


# --- stock lists pushed over HTTP ---------------------------------------------------------


class StockListRejected(Exception):
    """The pushed stock list is unusable; ``reason`` says why (a ticket was opened)."""

    def __init__(self, reason: str, ticket_id: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ticket_id = ticket_id


def apply_pushed_stock_list(engine: Engine, settings: Settings, data: bytes,
                            *, source: str) -> dict[str, Any]:
    """Check and apply a stock list pushed by a partner, once per content. Raises
    ``StockListRejected`` (after opening a ticket) when it cannot be used."""
    sha = digest(data)
    if was_imported(engine, f"push/{source}", sha):
        return {"sha256": sha, "already_imported": True}
    try:
        stock = parse_stock_list(data, max_bytes=settings.stock_file_max_bytes)
        summary = apply_stock_list(engine, stock, batch_size=settings.stock_sync_batch_size)
    except StockFileError as exc:
        ticket_id = reject_pushed_stock_list(engine, source, exc.reason, key=sha[:32])
        record_import(engine, f"push/{source}", "http-push", sha, "rejected", exc.reason)
        raise StockListRejected(exc.reason, ticket_id) from None
    record_import(engine, f"push/{source}", "http-push", sha, "archived", summary.text())
    return {"sha256": sha, "already_imported": False, **summary.model_dump()}


def reject_pushed_stock_list(engine: Engine, source: str, reason: str, *,
                             key: str | None = None) -> int:
    """Open the ticket for a rejected push; returns its id."""
    text = f"stock list pushed by {source} rejected, nothing applied: {reason}"
    ticket = TicketActivities(engine).open_ticket(OpenTicketInput(
        order_id=None, key=f"stock-push-{key or uuid.uuid4().hex}", kind="import",
        title=text[:200], body=text))
    return ticket.ticket_id


async def wake_backorders(client: Client, settings: Settings, key: str) -> str:
    """Start the workflow that reserves free stock for backorders and wakes the orders."""
    workflow_id = f"wake-backorders-{key[:24]}"
    await client.start_workflow(
        WakeBackordersWorkflow.run, id=workflow_id, task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    return workflow_id
