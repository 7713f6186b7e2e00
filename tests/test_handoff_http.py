"""Hand-off over HTTP to a real loopback partner server: retries while it is down, one
delivery in the end (idempotency key), a refusal puts the order on hold for a human."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.partners import PartnerActivities
from models.activities import HandOffInput
from models.orders import OrderStatus, ReleaseInput
from settings import Partner, Settings
from tests.fixtures_partners import make_document
from tests.helpers import FAST, Stack, make_order, running_stack, seed
from workflows.order import OrderWorkflow


@dataclass
class FakePartner:
    """An HTTP partner API: answers 503 ``down_for`` times, 422 while ``refusing``, else
    201 and keeps one delivery per idempotency key."""

    down_for: int = 0
    refusing: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/shipments"


@pytest.fixture
def fake_partner() -> Iterator[FakePartner]:
    partner = FakePartner()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key", "")
            partner.requests.append({"key": key, "auth": self.headers.get("Authorization"),
                                     "body": body})
            if partner.down_for > 0:
                partner.down_for -= 1
                return self._answer(503, {"error": "maintenance"})
            if partner.refusing:
                return self._answer(422, {"error": "unknown warehouse"})
            partner.deliveries.setdefault(key, body)
            return self._answer(201, {"received": key})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    partner.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield partner
    server.shutdown()
    server.server_close()


def http_settings(settings: Settings, partner: FakePartner, token: str | None = None,
                  ) -> Settings:
    return settings.model_copy(update={"partner": Partner(
        channel="http", url=partner.url, token=token)})


def test_activity_retries_until_accepted_and_delivers_once(
        partner_settings: Settings, sqlite_engine: Any, fake_partner: FakePartner,
        tmp_path: Path) -> None:
    from tests.test_documents import make_order as order_view  # an OrderView factory

    view = order_view()
    doc = make_document(sqlite_engine, view.order_id, kind="delivery_note",
                        filename=f"{view.order_id}-1-lieferschein.pdf",
                        media_type="application/pdf", content=b"%PDF-1.4 demo")
    activities = PartnerActivities(sqlite_engine,
                                   http_settings(partner_settings, fake_partner, "s3cret"))
    hand_off = HandOffInput(order_id=view.order_id, shipment_id=f"{view.order_id}-1",
                            document_ids=[doc.document_id], order=view)
    fake_partner.down_for = 2
    for _ in range(2):
        with pytest.raises(RuntimeError, match="503"):
            activities.hand_off(hand_off)
    result = activities.hand_off(hand_off)
    again = activities.hand_off(hand_off)  # a retry after success sends nothing
    assert result == again
    assert len(fake_partner.requests) == 3
    assert {r["key"] for r in fake_partner.requests} == {f"{view.order_id}/{view.order_id}-1"}
    assert {r["auth"] for r in fake_partner.requests} == {"Bearer s3cret"}
    (delivery,) = fake_partner.deliveries.values()
    assert [line["sku"] for line in delivery["lines"]] == [line.sku for line in view.lines]
    assert "unit_price" not in json.dumps(delivery)  # the partner sees no prices
    assert base64.b64decode(delivery["documents"][0]["content_base64"]) == b"%PDF-1.4 demo"


def test_refusal_is_not_retried(partner_settings: Settings, sqlite_engine: Any,
                                fake_partner: FakePartner) -> None:
    from tests.test_documents import make_order as order_view

    view = order_view()
    fake_partner.refusing = True
    activities = PartnerActivities(sqlite_engine, http_settings(partner_settings, fake_partner))
    with pytest.raises(ApplicationError) as caught:
        activities.hand_off(HandOffInput(order_id=view.order_id, shipment_id="s-1",
                                         document_ids=[], order=view))
    assert caught.value.type == "PartnerRejected" and caught.value.non_retryable
    assert "422" in str(caught.value)


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                fake_partner: FakePartner, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = http_settings(partner_settings, fake_partner).model_copy(
        update={**FAST, "task_queue": task_queue})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


async def test_partner_down_for_a_while_then_delivered_once(stack: Stack,
                                                            fake_partner: FakePartner) -> None:
    fake_partner.down_for = 2
    order = make_order()
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    assert len(fake_partner.requests) == 3 and len(fake_partner.deliveries) == 1
    assert view.shipments[0].files == [f"{fake_partner.url}#{order.order_id}/"
                                       f"{order.order_id}-1"]


async def test_refused_hand_off_waits_for_staff(stack: Stack, fake_partner: FakePartner) -> None:
    fake_partner.refusing = True
    order = make_order()
    await stack.submit(order)
    view = await stack.wait_status(order.order_id, OrderStatus.ON_HOLD)
    assert view.hold_reasons[0].reason.value == "handoff_rejected"
    assert "422" in view.hold_reasons[0].detail
    assert any(t.kind == "handoff" and t.status == "open" for t in view.tickets)
    fake_partner.refusing = False  # the partner fixed its side
    await stack.client.get_workflow_handle(order.order_id).signal(
        OrderWorkflow.release, ReleaseInput(by="maria", note="Lager beim Partner angelegt"))
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    assert len(fake_partner.deliveries) == 1
    assert len([d for d in view.documents if d.kind == "delivery_note"]) == 1


async def test_email_channel_mails_the_partner_once(
        client: Client, task_queue: str, partner_settings: Settings, mail_catcher: Any,
        tmp_path: Path) -> None:
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue,
        "partner": Partner(channel="email", email="auftraege@fulfillment.example")})
    async with running_stack(client, settings, task_queue) as stack:
        seed(stack.engine, tmp_path)
        order = make_order(comment=None)
        await stack.submit(order)
        view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
        partner_mails = [m for m in mail_catcher.messages()
                         if "auftraege@fulfillment.example" in str(m["To"])]
        assert len(partner_mails) == 1
        mail = partner_mails[0]
        assert str(mail["Subject"]).startswith(f"Versandauftrag {order.order_id}-1")
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "TENT-2P" in body and "Lindenweg 4" in body and "Anna Berg" not in str(mail["To"])
        kinds = sorted(a.get_content_type() for a in mail.iter_attachments())
        assert kinds == ["application/pdf", "application/xml"]
        assert view.shipments[0].files[0].startswith("mailto:auftraege@fulfillment.example")


async def test_csv_format_puts_a_csv_next_to_the_delivery_note(
        client: Client, task_queue: str, partner_settings: Settings, ftp_drop: Any,
        tmp_path: Path) -> None:
    import csv
    import io

    partner = partner_settings.partner.model_copy(update={"format": "csv"})
    settings = partner_settings.model_copy(update={**FAST, "task_queue": task_queue,
                                                   "partner": partner})
    async with running_stack(client, settings, task_queue) as stack:
        seed(stack.engine, tmp_path)
        order = make_order(name="=HYPERLINK(\"http://evil.example\")",
                           lines=[("TENT-2P", 1, "229.00"), ("STOVE-1", 3, "39.90")],
                           total=None)
        await stack.submit(order)
        await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    inbox = Path(ftp_drop.root) / "inbox"
    names = sorted(p.name for p in inbox.glob(f"{order.order_id}-1*"))
    assert names == [f"{order.order_id}-1-lieferschein.pdf", f"{order.order_id}-1.csv"]
    text = (inbox / f"{order.order_id}-1.csv").read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert [(r["sku"], r["quantity"]) for r in rows] == [("TENT-2P", "1"), ("STOVE-1", "3")]
    assert {r["shipment_id"] for r in rows} == {f"{order.order_id}-1"}
    assert rows[0]["delivery_name"].startswith("'=")  # never a formula in a spreadsheet
    assert "unit_price" not in rows[0]  # no prices for the partner
    assert "229.00" not in text and "39.90" not in text


def test_a_format_the_channel_cannot_send_is_refused() -> None:
    with pytest.raises(ValueError, match="format 'csv' is not possible on channel 'http'"):
        Partner(code="p", channel="http", url="https://partner.example/orders", format="csv")
    with pytest.raises(ValueError, match="channel email needs an address"):
        Partner(code="p", channel="email")
