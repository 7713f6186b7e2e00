"""Credit notes from the API and the CLI: checked here first (so a caller gets a 404, 409 or
422 with the field at once), then issued by ``CreditNoteWorkflow`` (once per request id;
the workflow checks again inside the numbering transaction)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.credit_notes import NOT_INVOICED, check_credit_note, credit_notes_of
from activities.docstore import MAX_KEY, bounded, find_document
from models.credit import SHIPPING_SKU, CreditNoteIn
from models.orders import OrderView
from models.rules import line_total
from models.tables import OrderRecord
from settings import Settings
from starter import service
from workflows.credit import CreditNoteWorkflow, CreditNoteWorkflowInput, credit_workflow_id

__all__ = ["CreditNoteRejected", "NotInvoiced", "list_credit_notes", "request_credit_note"]


class CreditNoteRejected(service.ServiceError):
    """The request does not fit the invoice (HTTP 422)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class NotInvoiced(service.ServiceError):
    """The order has no invoice yet (HTTP 409)."""


def _precheck(engine: Engine, order_id: str, request: CreditNoteIn,
              settings: Settings) -> bool:
    """True if this request was issued already; else check it (raises ApplicationError;
    OrderNotFound for an order the database does not know)."""
    with Session(engine) as session:
        if session.get(OrderRecord, order_id) is None:
            raise service.OrderNotFound(order_id)
        key = bounded(f"credit_note:{request.request_id}", MAX_KEY)
        if find_document(session, order_id, key) is not None:
            return True
        check_credit_note(session, order_id, request, settings)
        return False


async def request_credit_note(client: Client, engine: Engine, settings: Settings,
                              order_id: str, request: CreditNoteIn) -> tuple[str, bool]:
    """Start the credit note's workflow; ``(workflow_id, started)``. Raises OrderNotFound,
    NotInvoiced or CreditNoteRejected. Checked against the database, not the order's
    workflow: a return months later, when Temporal no longer keeps the closed order, still
    gets its credit note."""
    try:
        await asyncio.to_thread(_precheck, engine, order_id, request, settings)
    except service.OrderNotFound:
        await service.get_order(client, order_id)  # OrderNotFound if Temporal has none either
        raise NotInvoiced(f"order {order_id} is not recorded yet, so not invoiced") from None
    except ApplicationError as exc:
        if exc.type == NOT_INVOICED:
            raise NotInvoiced(str(exc)) from None
        detail: dict[str, Any] = exc.details[0] if exc.details else {}
        raise CreditNoteRejected(detail.get("field", "body"),
                                 detail.get("reason", str(exc))) from None
    workflow_id = credit_workflow_id(order_id, request.request_id)
    try:
        await client.start_workflow(
            CreditNoteWorkflow.run,
            CreditNoteWorkflowInput(order_id=order_id, request=request,
                                    activity_timeout=settings.activity_timeout),
            id=workflow_id, task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Credit note for order {order_id}: {request.reason}")
    except WorkflowAlreadyStartedError:
        return workflow_id, False
    return workflow_id, True


def list_credit_notes(engine: Engine, order_id: str) -> list[dict[str, Any]]:
    """The order's credit notes: number, amount, document id (issued ones only)."""
    with Session(engine) as session:
        rows = credit_notes_of(session, order_id)
    found = []
    for row in rows:
        if row.content is None or row.basis is None:
            continue
        credit = OrderView.model_validate_json(row.basis)
        shipping = credit.totals.shipping + sum(
            (line_total(ln) for ln in credit.lines if ln.sku == SHIPPING_SKU), Decimal(0))
        found.append({"document_id": row.document_id, "number": row.number,
                      "invoice_number": row.refers_to,
                      "filename": row.filename, "total": str(credit.totals.total),
                      "currency": credit.currency,
                      "issued_at": row.issued_at.isoformat() if row.issued_at else None,
                      "lines": [{"sku": ln.sku, "quantity": ln.quantity}
                                for ln in credit.lines if ln.sku != SHIPPING_SKU],
                      "shipping": str(shipping)})
    return found
