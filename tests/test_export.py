"""Order export: the orders of a day as one XML file of openTRANS ORDERs, validated, written
atomically by the workflow (Schedule or on demand) and served by the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from activities.export import EXPORT_NS, SCHEMA, build_order_export, export_day, orders_of_day
from activities.opentrans import OPENTRANS_NS
from activities.store import StoreActivities
from models.activities import OrderInput
from models.orders import OrderStatus
from models.tables import OrderRecord
from settings import Settings
from starter.api import create_app
from tests.helpers import FAST, Stack, make_order, running_stack, seed
from workflows.jobs import OrderExportWorkflow

NS = {"x": EXPORT_NS, "ot": OPENTRANS_NS}


def record(engine: Engine, created_at: datetime) -> str:
    order = make_order()
    StoreActivities(engine).record_order(OrderInput(order=order))
    with Session(engine) as session:
        row = session.get(OrderRecord, order.order_id)
        assert row is not None
        row.created_at = created_at
        session.commit()
    return order.order_id


def test_the_day_runs_midnight_to_midnight_in_shop_time(engine: Engine) -> None:
    day = date(2031, 3, 14)  # a day no other test records orders on
    inside_early = record(engine, datetime(2031, 3, 13, 23, 30, tzinfo=UTC))  # 00:30 Berlin
    inside_late = record(engine, datetime(2031, 3, 14, 22, 59, tzinfo=UTC))  # 23:59 Berlin
    record(engine, datetime(2031, 3, 13, 22, 59, tzinfo=UTC))  # 23:59 the day before
    after = record(engine, datetime(2031, 3, 14, 23, 0, tzinfo=UTC))  # 00:00 the day after
    found = [o.order_id for o in orders_of_day(engine, day, "Europe/Berlin")]
    assert found == [inside_early, inside_late]
    in_utc = [o.order_id for o in orders_of_day(engine, day, "UTC")]
    assert in_utc == [inside_late, after]


def test_the_export_validates_and_holds_every_order() -> None:
    orders = [make_order(lines=[("TENT-2P", 2, "229.00")], total=None), make_order()]
    content = build_order_export(orders, date(2026, 11, 25), "Europe/Berlin",
                                 supplier_name="Demo-Shop")
    root = etree.fromstring(content)
    assert etree.XMLSchema(etree.parse(str(SCHEMA))).validate(root)
    assert (root.get("date"), root.get("count")) == ("2026-11-25", "2")
    ids = root.xpath("ot:ORDER/ot:ORDER_HEADER/ot:ORDER_INFO/ot:ORDER_ID/text()", namespaces=NS)
    assert ids == [o.order_id for o in orders]
    quantities = root.xpath("ot:ORDER[1]//ot:ORDER_ITEM/ot:QUANTITY/text()", namespaces=NS)
    assert quantities == ["2"]
    empty = etree.fromstring(build_order_export([], date(2026, 11, 25), "Europe/Berlin",
                                                supplier_name="Demo-Shop"))
    assert empty.get("count") == "0" and len(empty) == 0


def test_yesterday_is_taken_in_shop_time() -> None:
    assert export_day(datetime(2026, 11, 25, 23, 30, tzinfo=UTC), "Europe/Berlin") == date(
        2026, 11, 25)  # already the 26th in Berlin
    assert export_day(datetime(2026, 11, 25, 22, 30, tzinfo=UTC), "Europe/Berlin") == date(
        2026, 11, 24)


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "order_export_dir": tmp_path / "exports",
        "shop_timezone": "UTC", "api_keys": "test-staff:staff,test-client:client"})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


async def test_export_on_demand_writes_the_file_and_the_api_serves_it(stack: Stack) -> None:
    orders = [make_order(), make_order()]
    for order in orders:
        await stack.submit(order)
        await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF, query=False)
    today = datetime.now(UTC).date().isoformat()
    result = await stack.client.execute_workflow(
        OrderExportWorkflow.run, today, id=f"export-{uuid.uuid4().hex[:6]}",
        task_queue=stack.task_queue, execution_timeout=timedelta(seconds=60))
    path = Path(result.path)
    assert path == stack.settings.order_export_dir / f"orders-{today}.xml"
    root = etree.parse(str(path)).getroot()
    exported = root.xpath("ot:ORDER/ot:ORDER_HEADER/ot:ORDER_INFO/ot:ORDER_ID/text()",
                          namespaces=NS)
    assert {o.order_id for o in orders} <= set(exported)
    assert result.count == len(exported) == int(root.get("count"))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files
    app = create_app(stack.settings, client=stack.client, engine=stack.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as api:
        staff = {"Authorization": "Bearer test-staff"}
        answer = await api.get(f"/exports/orders/{today}", headers=staff)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/xml")
        served = etree.fromstring(answer.content)
        assert {o.order_id for o in orders} <= set(served.xpath(
            "ot:ORDER/ot:ORDER_HEADER/ot:ORDER_INFO/ot:ORDER_ID/text()", namespaces=NS))
        bad = await api.get("/exports/orders/25.11.2026", headers=staff)
        assert bad.status_code == 422 and bad.json()["detail"]["field"] == "day"
        last = await api.get("/exports/orders/9999-12-31", headers=staff)  # was a 500
        assert last.status_code == 422 and last.json()["detail"]["field"] == "day"
        client_role = await api.get(f"/exports/orders/{today}",
                                    headers={"Authorization": "Bearer test-client"})
        assert client_role.status_code == 403
