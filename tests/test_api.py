"""The HTTP API against the real stack (ASGI in process, real Temporal, real partners)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from models.orders import OrderStatus
from settings import Settings
from tests.helpers import FAST, Stack, order_payload, running_stack, seed

CLIENT = {"Authorization": "Bearer test-client"}
STAFF = {"Authorization": "Bearer test-staff"}


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "payment_reminder_after": timedelta(seconds=60),
        "cancel_unpaid_after": timedelta(seconds=120),
        "task_queue": task_queue, "api_keys": "test-client:client,test-staff:staff"})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s



async def test_auth_roles(api: httpx.AsyncClient) -> None:
    assert (await api.get("/products")).status_code == 401
    assert (await api.get("/products", headers={"Authorization": "Bearer nope"})).status_code \
        == 401
    assert (await api.get("/tickets", headers=CLIENT)).status_code == 403
    assert (await api.get("/tickets", headers=STAFF)).status_code == 200
    assert (await api.get("/health")).json()["status"] == "ok"


def _broken(path: str, value: Any) -> dict[str, Any]:
    payload = order_payload()
    target: Any = payload
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return payload


@pytest.mark.parametrize(("path", "value", "field"), [
    ("customer", ..., "customer"),
    ("lines", ..., "lines"),
    ("lines.0.quantity", -1, "quantity"),
    ("currency", "EURO", "currency"),
    ("currency", "XYZ", "currency"),
    ("customer.email", "anna-at-example", "email"),
    ("billing_address.country", "Germany", "country"),
    ("lines.0.unit_price", "12.345", "unit_price"),
    ("customer.first_name", "Anna\r\nBcc: x@example.com", "first_name"),
    ("comment", "Bitte \uffff klingeln", "comment"),  # XML cannot carry it (documents)
    ("lines.0.name", "Zelt \ufffe", "name"),
    ("lines.0.sku", "VERSAND", "lines"),  # reserved for the documents' shipping lines
    ("lines.0.sku", "GUTSCHRIFT", "lines"),
])
async def test_invalid_payload_is_422_naming_the_field(api: httpx.AsyncClient, path: str,
                                                       value: Any, field: str) -> None:
    response = await api.post("/orders", json=_broken(path, value), headers=CLIENT)
    assert response.status_code == 422, response.text
    locations = [err["loc"] for err in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations


async def test_submit_show_list_and_duplicate(api: httpx.AsyncClient, stack: Stack) -> None:
    payload = {**order_payload(method="prepaid"), "gift_message": "Viel Spaß beim Zelten!",
               "packer_note": "Bitte ohne Rechnung im Paket"}
    first = await api.post("/orders", json=payload, headers=CLIENT)
    assert first.status_code == 201
    order_id = first.json()["order_id"]
    assert order_id == f"webshop-{payload['external_id']}"
    await stack.wait_status(order_id, OrderStatus.AWAITING_PAYMENT)
    again = await api.post("/orders", json=payload, headers=CLIENT)
    assert again.status_code == 200
    assert again.json() == {"order_id": order_id, "status": "awaiting_payment"}

    shown = (await api.get(f"/orders/{order_id}", headers=CLIENT)).json()
    assert shown == (await stack.view(order_id)).model_dump(mode="json")
    assert shown["totals"]["total"] == "233.90"
    assert (shown["gift_message"], shown["packer_note"]) == ("Viel Spaß beim Zelten!",
                                                             "Bitte ohne Rechnung im Paket")
    assert (await api.get("/orders/webshop-nope", headers=CLIENT)).status_code == 404

    for _ in range(50):  # visibility is eventually consistent
        listed = (await api.get("/orders", params={"status": "awaiting_payment"},
                                headers=CLIENT)).json()
        if any(o["order_id"] == order_id for o in listed):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("order not listed")

    paid = await api.post(f"/orders/{order_id}/payments", headers=CLIENT,
                          json={"amount": "233.90", "currency": "EUR", "reference": order_id,
                                "paid_at": "2026-11-25T10:00:00+01:00"})
    assert paid.status_code == 202
    await stack.wait_status(order_id, OrderStatus.HANDED_OFF)
    assert (await api.post(f"/orders/{order_id}/cancel", headers=STAFF,
                           json={"by": "maria", "reason": "zu spät"})).status_code == 409
    confirm = await api.post("/shipments/confirmations", headers=CLIENT, json={
        "order_id": order_id, "carrier": "DHL", "tracking_number": "JJD0001",
        "shipped_at": "2026-11-25T12:00:00+01:00"})
    assert confirm.status_code == 202
    view = await stack.wait_status(order_id, OrderStatus.INVOICED, OrderStatus.COMPLETED)
    doc = next(d for d in view.documents if d.kind == "invoice")
    pdf = await api.get(f"/documents/{doc.document_id}", headers=CLIENT)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


async def test_unknown_order_notifications_are_404(api: httpx.AsyncClient) -> None:
    confirm = await api.post("/shipments/confirmations", headers=CLIENT, json={
        "order_id": "webshop-unknown", "carrier": "DHL", "tracking_number": "X1"})
    assert confirm.status_code == 404
    pay = await api.post("/orders/webshop-unknown/payments", headers=CLIENT,
                         json={"amount": "1.00", "currency": "EUR", "reference": "x"})
    assert pay.status_code == 404


async def test_hold_and_release_by_api(api: httpx.AsyncClient, stack: Stack) -> None:
    payload = order_payload(method="prepaid")
    order_id = (await api.post("/orders", json=payload, headers=CLIENT)).json()["order_id"]
    await stack.wait_status(order_id, OrderStatus.AWAITING_PAYMENT)
    release = await api.post(f"/orders/{order_id}/release", headers=STAFF,
                             json={"by": "maria", "note": "x"})
    assert release.status_code == 409  # not on hold
    hold = await api.post(f"/orders/{order_id}/hold", headers=STAFF,
                          json={"by": "maria", "reason": "Adresse prüfen"})
    assert hold.status_code == 200
    view = await stack.wait_status(order_id, OrderStatus.ON_HOLD)
    assert view.hold_reasons[0].reason.value == "staff"
    tickets = (await api.get("/tickets", headers=STAFF)).json()
    assert any(t["order_id"] == order_id and t["status"] == "open" for t in tickets)
    release = await api.post(f"/orders/{order_id}/release", headers=STAFF,
                             json={"by": "maria", "note": "Adresse ok"})
    assert release.status_code == 200
    view = await stack.wait_status(order_id, OrderStatus.AWAITING_PAYMENT)
    assert any(e.kind == "released" and "maria" in e.text for e in view.timeline)
    products = (await api.get("/products", headers=CLIENT)).json()
    tent = next(p for p in products if p["sku"] == "TENT-2P")
    assert tent["weight_g"] == 2400
