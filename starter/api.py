"""The HTTP API (FastAPI), thin over ``starter.service``. OpenAPI at ``/docs``.

Run with ``orders api``. Auth: ``Authorization: Bearer <key>``; keys and roles come from
``ORDERS_API_KEYS`` (``key:client,key:staff``). ``staff`` may do everything ``client`` may.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import Engine, text
from temporalio.client import Client

from activities.db import make_engine
from activities.documents import get_document
from activities.export import build_order_export, orders_of_day, parse_export_day
from activities.store import list_products
from activities.tickets import list_tickets
from models.credit import CreditNoteIn
from models.orders import (
    CancelInput,
    HoldInput,
    OrderIn,
    OrderView,
    PaymentIn,
    ReleaseInput,
    ShipmentConfirmation,
)
from settings import Settings
from starter import credits, payments, service
from worker import connect

log = logging.getLogger("orders.api")
Role = Literal["client", "staff"]
_bearer = HTTPBearer(auto_error=False)


class OrderAccepted(BaseModel):
    order_id: str
    status: str


class ShipmentConfirmationIn(ShipmentConfirmation):
    order_id: str


class Accepted(BaseModel):
    order_id: str
    accepted: bool = True


def require(role: Role) -> Callable[..., Awaitable[str]]:
    """A dependency that admits keys of ``role`` (staff keys are admitted everywhere)."""

    async def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        keys: dict[str, str] = request.app.state.api_keys
        if creds is None or creds.credentials not in keys:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key",
                                headers={"WWW-Authenticate": "Bearer"})
        granted = keys[creds.credentials]
        if role == "staff" and granted != "staff":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the staff role")
        return granted

    return check


ClientRole = Annotated[str, Depends(require("client"))]
StaffRole = Annotated[str, Depends(require("staff"))]


def resolve_api_keys(settings: Settings) -> dict[str, str]:
    """Keys from settings; without any, make a random pair and log it (demo use only)."""
    keys = settings.api_key_roles()
    if not keys:
        keys = {f"client-{secrets.token_hex(8)}": "client",
                f"staff-{secrets.token_hex(8)}": "staff"}
        log.warning("ORDERS_API_KEYS not set; generated demo keys: %s",
                    ", ".join(f"{k} ({r})" for k, r in keys.items()))
    return keys


def create_app(settings: Settings, *, client: Client | None = None,
               engine: Engine | None = None) -> FastAPI:
    keys = resolve_api_keys(settings)
    state: dict[str, Any] = {"client": client, "engine": engine}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if state["client"] is None:
            state["client"] = await connect(settings)
        if state["engine"] is None:
            state["engine"] = make_engine(settings.database_url)
        yield

    app = FastAPI(title="Auftragsmanager API", version="0.1.0", lifespan=lifespan)
    app.state.api_keys = keys

    def temporal() -> Client:
        return state["client"]  # type: ignore[no-any-return]

    @app.exception_handler(service.OrderNotFound)
    async def _not_found(_req: Request, exc: service.OrderNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(service.OrderStateConflict)
    async def _conflict(_req: Request, exc: service.OrderStateConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "status": exc.status.value}, status_code=409)

    @app.post("/orders", status_code=201, response_model=OrderAccepted)
    async def submit(order: OrderIn, response: Response, _: ClientRole) -> OrderAccepted:
        current, created = await service.submit_order(temporal(), order, settings=settings)
        if not created:
            response.status_code = 200
        return OrderAccepted(order_id=order.order_id, status=current)

    @app.get("/orders/{order_id}", response_model=OrderView)
    async def show(order_id: str, _: ClientRole) -> OrderView:
        return await service.get_order(temporal(), order_id)

    @app.get("/orders")
    async def index(_: ClientRole, status: str | None = None, channel: str | None = None,
                    q: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        found = await service.list_orders(temporal(), status=status, channel=channel, q=q,
                                          limit=limit)
        return [s.as_dict() for s in found]

    @app.post("/orders/{order_id}/release")
    async def release(order_id: str, body: ReleaseInput, _: StaffRole) -> dict[str, str]:
        was = await service.release_order(temporal(), order_id, body)
        return {"order_id": order_id, "previous_status": was, "status": "released"}

    @app.post("/orders/{order_id}/hold")
    async def hold(order_id: str, body: HoldInput, _: StaffRole) -> dict[str, str]:
        was = await service.hold_order(temporal(), order_id, body)
        return {"order_id": order_id, "previous_status": was, "status": "hold_requested"}

    @app.post("/orders/{order_id}/cancel")
    async def cancel(order_id: str, body: CancelInput, _: StaffRole) -> dict[str, str]:
        was = await service.cancel_order(temporal(), order_id, body)
        return {"order_id": order_id, "previous_status": was, "status": "cancel_requested"}

    @app.post("/orders/{order_id}/payments", status_code=202, response_model=Accepted)
    async def pay(order_id: str, body: PaymentIn, _: ClientRole) -> Accepted:
        await service.record_payment(temporal(), order_id, body)
        return Accepted(order_id=order_id)

    @app.exception_handler(credits.NotInvoiced)
    async def _not_invoiced(_req: Request, exc: credits.NotInvoiced) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(credits.CreditNoteRejected)
    async def _rejected(_req: Request, exc: credits.CreditNoteRejected) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body", *exc.field.split(".")],
                                         "msg": exc.reason, "type": "credit_rejected"}]},
                            status_code=422)

    @app.post("/orders/{order_id}/credit-notes", status_code=202)
    async def credit_note(order_id: str, body: CreditNoteIn, response: Response,
                          _: StaffRole) -> dict[str, Any]:
        workflow_id, started = await credits.request_credit_note(
            temporal(), state["engine"], settings, order_id, body)
        if not started:
            response.status_code = 200
        return {"order_id": order_id, "request_id": body.request_id,
                "workflow_id": workflow_id, "status": "issuing" if started else "requested"}

    @app.get("/orders/{order_id}/credit-notes")
    async def credit_notes(order_id: str, _: ClientRole) -> list[dict[str, Any]]:
        return await asyncio.to_thread(credits.list_credit_notes, state["engine"], order_id)

    @app.post("/shipments/confirmations", status_code=202, response_model=Accepted)
    async def confirm(body: ShipmentConfirmationIn, _: ClientRole) -> Accepted:
        confirmation = ShipmentConfirmation.model_validate(body.model_dump(exclude={"order_id"}))
        await service.confirm_shipment(temporal(), body.order_id, confirmation)
        return Accepted(order_id=body.order_id)

    @app.get("/documents/{document_id}")
    async def document(document_id: str, _: ClientRole) -> Response:
        doc = await asyncio.to_thread(get_document, state["engine"], document_id)
        if doc is None:
            raise HTTPException(404, f"document {document_id} not found")
        return Response(doc.content, media_type=doc.media_type,
                        headers={"Content-Disposition": f'inline; filename="{doc.filename}"'})

    @app.get("/tickets")
    async def tickets(_: StaffRole, status: str | None = "open") -> list[dict[str, Any]]:
        return await asyncio.to_thread(list_tickets, state["engine"], status=status)

    @app.get("/products")
    async def products(_: ClientRole) -> list[dict[str, Any]]:
        return await asyncio.to_thread(list_products, state["engine"])

    @app.post("/stock-lists")
    async def stock_list(request: Request, _: ClientRole,
                         source: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
                         = "partner") -> dict[str, Any]:
        """A warehouse's stock list (the XML of the stock sync) pushed by a partner: the
        levels are applied at once, then backordered orders are woken, oldest first."""
        data = await _read_limited(request, settings.stock_file_max_bytes)
        if data is None:
            reason = f"body over the limit of {settings.stock_file_max_bytes} bytes"
            ticket_id = await asyncio.to_thread(service.reject_pushed_stock_list,
                                                state["engine"], source, reason)
            raise HTTPException(413, {"field": "body", "reason": reason,
                                      "ticket_id": ticket_id})
        try:
            result = await asyncio.to_thread(service.apply_pushed_stock_list, state["engine"],
                                             settings, data, source=source)
        except service.StockListRejected as exc:
            raise HTTPException(422, {"field": "body", "reason": exc.reason,
                                      "ticket_id": exc.ticket_id}) from None
        if not result["already_imported"]:
            result["wake_workflow_id"] = await service.wake_backorders(
                temporal(), settings, result["sha256"])
        return result

    async def payment_file(request: Request, response: Response, upload: Any,
                           wait: bool) -> dict[str, Any]:
        """Read the body (413 over the limit), hand it to ``upload`` (422 when it cannot be
        read); 202 while it is imported, 200 with the summary or when seen before."""
        data = await _read_limited(request, settings.bank_file_max_bytes)
        if data is None:
            raise HTTPException(413, {"field": "body", "reason": "body over the limit of "
                                      f"{settings.bank_file_max_bytes} bytes"})
        try:
            result: dict[str, Any] = await upload(temporal(), state["engine"], settings,
                                                  data, wait=wait)
        except payments.StatementRejected as exc:
            raise HTTPException(422, {"field": "body", "reason": exc.reason}) from None
        done = result["already_imported"] or result.get("summary") is not None
        response.status_code = 200 if done else 202
        return result

    @app.post("/payments/statements")
    async def bank_statement(request: Request, response: Response, _: StaffRole,
                             wait: bool = False) -> dict[str, Any]:
        """A bank statement (camt.053.001.02 or .08): matched to open orders and invoices."""
        return await payment_file(request, response, payments.upload_statement, wait)

    @app.post("/payments/settlements")
    async def settlement(request: Request, response: Response, _: StaffRole,
                         wait: bool = False) -> dict[str, Any]:
        """A marketplace settlement report (Amazon flat file V2, tab-separated), matched to
        the orders by the marketplace's order id."""
        return await payment_file(request, response, payments.upload_settlement, wait)

    @app.get("/exports/orders/{day}")
    async def order_export(day: str, _: StaffRole) -> Response:
        """The order export of a day (YYYY-MM-DD, shop time zone), built now."""
        try:
            parsed = parse_export_day(day)
        except ValueError:
            raise HTTPException(422, {"field": "day", "reason": "expected YYYY-MM-DD"}) from None
        content = await asyncio.to_thread(_order_export, state["engine"], settings, parsed)
        return Response(content, media_type="application/xml", headers={
            "Content-Disposition": f'attachment; filename="orders-{parsed.isoformat()}.xml"'})

    @app.get("/health")
    async def health() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(temporal().service_client.check_health(), timeout=5)
            checks["temporal"] = "ok"
        except Exception as err:
            checks["temporal"] = f"error: {err}"
        try:
            await asyncio.to_thread(_ping_db, state["engine"])
            checks["database"] = "ok"
        except Exception as err:
            checks["database"] = f"error: {err}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks},
                            status_code=200 if ok else 503)

    return app


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body; ``None`` as soon as it passes ``limit`` bytes (not read further)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _order_export(engine: Engine, settings: Settings, day: date) -> bytes:
    zone = settings.shop_timezone
    return build_order_export(orders_of_day(engine, day, zone), day, zone,
                              supplier_name=settings.shop_name, tax=settings.tax)


def _ping_db(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def main() -> None:
    import uvicorn

    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level="info")
