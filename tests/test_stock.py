"""Stock sync: safe parsing of stock lists, absolute levels in batches, and backordered orders
resumed by a stock file (FTP, Schedule workflow) or a push (HTTP) without staff action."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client

from activities.stock import (
    StockFileError,
    StockList,
    StockRow,
    apply_stock_list,
    build_stock_list,
    parse_stock_list,
)
from activities.tickets import list_tickets
from models.orders import CancelInput, OrderStatus, ShipmentConfirmation
from models.tables import Product, Stock, Warehouse
from settings import Settings
from starter.api import create_app
from tests.helpers import FAST, Stack, make_order, running_stack, seed
from tests.test_order_workflow import mails_for
from workflows.jobs import StockSyncWorkflow
from workflows.order import OrderWorkflow

LIMIT = 1024 * 1024
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<STOCK_LIST xmlns="urn:auftragsmanager:stocklist:1" warehouse="MAIN"
  generated_at="2026-11-25T06:00:00+01:00"><ITEM sku="&e;" on_hand="1"/></STOCK_LIST>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<STOCK_LIST xmlns="urn:auftragsmanager:stocklist:1" warehouse="MAIN"
  generated_at="2026-11-25T06:00:00+01:00"><ITEM sku="A" on_hand="1"/>&lol3;</STOCK_LIST>"""


def uid() -> str:
    return uuid.uuid4().hex[:8].upper()


def stock_list(warehouse: str, rows: dict[str, int], *, at: datetime = NOW,
               expected: dict[str, datetime] | None = None) -> bytes:
    return build_stock_list(warehouse, [StockRow(sku=sku, on_hand=qty,
                                                 expected_at=(expected or {}).get(sku))
                                        for sku, qty in rows.items()], generated_at=at)


def make_products(engine: Engine, warehouse: str, levels: dict[str, int | None]) -> None:
    """Products with their stock in ``warehouse`` (``None``: no stock row yet)."""
    with Session(engine) as session:
        if session.get(Warehouse, warehouse) is None:
            session.add(Warehouse(code=warehouse, name=warehouse, priority=5))
        for sku, on_hand in levels.items():
            session.add(Product(sku=sku, name=sku, weight_g=500, length_mm=100, width_mm=100,
                                height_mm=100, price=Decimal("9.90")))
            session.flush()
            if on_hand is not None:
                session.add(Stock(warehouse=warehouse, sku=sku, on_hand=on_hand))
        session.commit()


def on_hand(engine: Engine, warehouse: str, sku: str) -> int | None:
    with Session(engine) as session:
        row = session.exec(select(Stock).where(Stock.warehouse == warehouse,
                                               Stock.sku == sku)).first()
        return None if row is None else row.on_hand


# --- parsing -----------------------------------------------------------------------------


def test_a_stock_list_round_trips() -> None:
    data = stock_list("MAIN", {"A-1": 3, "B-2": 0}, expected={"B-2": NOW + timedelta(days=8)})
    parsed = parse_stock_list(data, max_bytes=LIMIT)
    assert (parsed.warehouse, parsed.generated_at) == ("MAIN", NOW)
    assert [(r.sku, r.on_hand) for r in parsed.rows] == [("A-1", 3), ("B-2", 0)]
    assert parsed.rows[1].expected_at == datetime(2026, 12, 3, tzinfo=UTC)


@pytest.mark.parametrize(("data", "reason"), [
    (XXE, "DOCTYPE"),
    (LAUGHS, "DOCTYPE"),
    (b"<STOCK_LIST", "not well-formed"),
    (b'<?xml version="1.0"?><ORDER xmlns="urn:x"/>', "not a valid stock list"),
    (stock_list("MAIN", {"A": 1}).replace(b'on_hand="1"', b'on_hand="-4"'),
     "not a valid stock list"),
    (stock_list("MAIN", {"A": 1}).replace(b"</STOCK_LIST>",
                                          b'<ITEM sku="A" on_hand="2"/></STOCK_LIST>'),
     "not a valid stock list"),  # the same SKU twice
    (stock_list("MAIN", {"A": 1}).replace(b"+00:00", b""), "time zone"),
    (b" " * (LIMIT + 1), "over the limit"),
], ids=["xxe", "billion-laughs", "malformed", "wrong-root", "negative", "duplicate-sku",
        "naive-time", "too-large"])
def test_hostile_or_broken_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(StockFileError) as caught:
        parse_stock_list(data, max_bytes=LIMIT)
    assert reason in caught.value.reason


# --- applying ----------------------------------------------------------------------------


def test_levels_are_absolute_batched_and_never_go_back(engine: Engine) -> None:
    warehouse, skus = f"W{uid()}", [f"S-{uid()}" for _ in range(5)]
    make_products(engine, warehouse, {**dict.fromkeys(skus[:4], 7), skus[4]: None})
    batches: list[tuple[int, int]] = []
    rows = {sku: i * 10 for i, sku in enumerate(skus)} | {"NOT-IN-CATALOG": 3}
    summary = apply_stock_list(
        engine, parse_stock_list(stock_list(warehouse, rows), max_bytes=LIMIT), batch_size=2,
        progress=lambda done, total: batches.append((done, total)))
    assert batches == [(2, 6), (4, 6), (6, 6)]
    assert [on_hand(engine, warehouse, sku) for sku in skus] == [0, 10, 20, 30, 40]
    assert (summary.updated, summary.created, summary.unknown_skus) == (4, 1, 1)
    assert summary.unknown_examples == ["NOT-IN-CATALOG"]
    # an older list arriving late changes nothing; a newer one does
    old = parse_stock_list(stock_list(warehouse, {skus[1]: 99}, at=NOW - timedelta(hours=1)),
                           max_bytes=LIMIT)
    assert apply_stock_list(engine, old).stale == 1
    assert on_hand(engine, warehouse, skus[1]) == 10
    new = parse_stock_list(stock_list(warehouse, {skus[1]: 5}, at=NOW + timedelta(hours=1)),
                           max_bytes=LIMIT)
    assert apply_stock_list(engine, new).updated == 1
    assert on_hand(engine, warehouse, skus[1]) == 5


def test_unknown_warehouse_applies_nothing(engine: Engine) -> None:
    sku = f"S-{uid()}"
    make_products(engine, f"W{uid()}", {sku: 1})
    with pytest.raises(StockFileError, match="unknown warehouse"):
        apply_stock_list(engine, StockList(warehouse="NOPE", generated_at=NOW,
                                           rows=[StockRow(sku=sku, on_hand=50)]))


# --- end to end --------------------------------------------------------------------------


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "ship_confirmation_timeout": timedelta(seconds=60),
        "stock_file_max_bytes": LIMIT, "stock_sync_batch_size": 2,
        "api_keys": "test-client:client"})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


def new_sku(stack: Stack, quantity: int = 0) -> str:
    sku = f"BO-{uid()}"
    make_products(stack.engine, "MAIN", {sku: quantity})
    return sku


def drop(ftp_drop: Any, name: str, content: bytes) -> Path:
    folder = Path(ftp_drop.root) / "stock"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


async def run_sync(stack: Stack) -> dict[str, int]:
    return await stack.client.execute_workflow(
        StockSyncWorkflow.run, id=f"stock-sync-{uid()}", task_queue=stack.task_queue,
        execution_timeout=timedelta(seconds=60))


async def test_a_stock_file_resumes_backorders_oldest_first(stack: Stack, ftp_drop: Any,
                                                            mail_catcher: Any) -> None:
    sku = new_sku(stack)
    older = make_order(lines=[(sku, 2, "9.90"), ("TENT-2P", 1, "229.00")], total=None)
    newer = make_order(lines=[(sku, 1, "9.90")], total=None)
    await stack.submit(older)
    view = await stack.wait_status(older.order_id, OrderStatus.HANDED_OFF)  # the tent ships
    assert [(ln.sku, ln.quantity) for ln in view.shipments[0].lines] == [("TENT-2P", 1)]
    await stack.submit(newer)
    await stack.wait_status(newer.order_id, OrderStatus.BACKORDERED)
    expected = datetime(2026, 12, 3, tzinfo=UTC)
    body = stock_list("MAIN", {sku: 2}, at=datetime.now(UTC), expected={sku: expected})
    drop(ftp_drop, "lager-main.xml", body)
    summary = await run_sync(stack)
    assert summary["applied"] == 1 and summary["woken"] >= 1
    assert (Path(ftp_drop.root) / "archive" / "lager-main.xml").exists()
    assert not (Path(ftp_drop.root) / "stock" / "lager-main.xml").exists()
    # the older order got both units and ships its second parcel, without a staff action
    for _ in range(300):
        view = await stack.view(older.order_id)
        if len(view.shipments) == 2 and view.shipments[1].status == "handed_off":
            break
        await asyncio.sleep(0.1)
    second = view.shipments[1]
    assert (second.shipment_id, [(ln.sku, ln.quantity) for ln in second.lines]) == (
        f"{older.order_id}-2", [(sku, 2)])
    assert view.status == OrderStatus.HANDED_OFF
    newer_view = await stack.view(newer.order_id)
    assert newer_view.status == OrderStatus.BACKORDERED and newer_view.shipments == []
    # both parcels confirmed: the order completes
    handle = stack.client.get_workflow_handle(older.order_id)
    for shipment, tracking in ((view.shipments[0], "T-ONE"), (second, "T-TWO")):
        await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
            carrier="DHL", tracking_number=tracking, shipment_id=shipment.shipment_id))
    assert await stack.result(older.order_id) == "completed"
    notice = [m for m in mails_for(mail_catcher, str(older.customer.email))
              if "Lieferverzögerung" in str(m["Subject"])]
    assert len(notice) == 1 and "Die vorrätigen Artikel schicken wir" in notice[0].get_content()
    # the same file sent again under another name: recognised, archived, nothing applied
    drop(ftp_drop, "lager-main-copy.xml", body)
    again = await run_sync(stack)
    assert (again["applied"], again["skipped"]) == (0, 1)
    assert not (Path(ftp_drop.root) / "stock" / "lager-main-copy.xml").exists()
    await stack.client.get_workflow_handle(newer.order_id).signal(
        OrderWorkflow.cancel, CancelInput(by="test", reason="done"))
    assert await stack.result(newer.order_id) == "cancelled"


async def test_a_hostile_stock_file_is_rejected_with_a_ticket(stack: Stack,
                                                              ftp_drop: Any) -> None:
    sku = new_sku(stack, quantity=4)
    name = f"evil-{uid()}.xml"
    drop(ftp_drop, name, XXE.replace(b"&e;", sku.encode()))
    summary = await run_sync(stack)
    assert summary["rejected"] >= 1
    assert (Path(ftp_drop.root) / "error" / name).exists()
    assert on_hand(stack.engine, "MAIN", sku) == 4  # nothing changed
    titles = [t["title"] for t in list_tickets(stack.engine, status="open")]
    assert any(name in title and "DOCTYPE" in title for title in titles)


async def test_a_pushed_stock_list_wakes_the_backorder(stack: Stack) -> None:
    sku = new_sku(stack)
    order = make_order(lines=[(sku, 1, "9.90")], total=None)
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.BACKORDERED)
    app = create_app(stack.settings, client=stack.client, engine=stack.engine)
    headers = {"Authorization": "Bearer test-client", "Content-Type": "application/xml"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as api:
        body = stock_list("MAIN", {sku: 3}, at=datetime.now(UTC))
        answer = await api.post("/stock-lists", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["updated"], answer.json()["already_imported"]) == (1, False)
        assert (await api.post("/stock-lists", content=body,
                               headers=headers)).json()["already_imported"] is True
        await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
        assert on_hand(stack.engine, "MAIN", sku) == 2  # 3 arrived, 1 allocated
        hostile = await api.post("/stock-lists", content=XXE, headers=headers)
        assert hostile.status_code == 422 and "DOCTYPE" in hostile.json()["detail"]["reason"]
        twice = await api.post("/stock-lists", content=XXE, headers=headers)  # sent again
        assert twice.status_code == 422
        assert twice.json()["detail"]["ticket_id"] == hostile.json()["detail"]["ticket_id"]
        huge = await api.post("/stock-lists", content=b" " * (LIMIT + 10), headers=headers)
        assert huge.status_code == 413 and huge.json()["detail"]["ticket_id"] > 0
    assert on_hand(stack.engine, "MAIN", sku) == 2



def test_doctype_is_refused_even_past_the_byte_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser's own check (no DTD at all) holds when the quick byte scan is bypassed."""
    import activities.safexml as safexml

    monkeypatch.setattr(safexml, "_DOCTYPE_MARKERS", ())
    for data in (XXE, LAUGHS):
        with pytest.raises(StockFileError, match=r"DOCTYPE|well-formed"):
            parse_stock_list(data, max_bytes=LIMIT)
