"""The `orders` CLI and the `temporal` CLI's signals, as staff use them, against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from models.orders import OrderStatus
from settings import Settings
from tests.conftest import temporal_cli
from tests.helpers import FAST, Stack, order_payload, running_stack, seed

ORDERS = str(Path(sys.executable).parent / "orders")


@pytest.fixture
async def stack(client: Client, task_queue: str, partner_settings: Settings,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = partner_settings.model_copy(update={
        **FAST, "task_queue": task_queue, "payment_reminder_after": timedelta(seconds=60),
        "cancel_unpaid_after": timedelta(seconds=120)})
    async with running_stack(client, settings, task_queue) as s:
        seed(s.engine, tmp_path)
        yield s


async def orders_cli(stack: Stack, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "ORDERS_CONFIG": str(config),
           "ORDERS_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
           "ORDERS_TASK_QUEUE": stack.task_queue,
           "ORDERS_DATABASE_URL": stack.settings.database_url,
           "ORDERS_PARTNER__HOST": stack.settings.partner.host,
           "ORDERS_PARTNER__PORT": str(stack.settings.partner.port),
           "ORDERS_PARTNER__USER": stack.settings.partner.user,
           "ORDERS_PARTNER__PASSWORD": stack.settings.partner.password,
           "ORDERS_PAYMENT_REMINDER_AFTER": "60s", "ORDERS_CANCEL_UNPAID_AFTER": "120s",
           "ORDERS_REVIEW_REQUEST_AFTER": "1s", "ORDERS_SHIP_CONFIRMATION_TIMEOUT": "30s"}
    proc = await asyncio.create_subprocess_exec(
        ORDERS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_staff_workflow_through_the_cli(stack: Stack, tmp_path: Path) -> None:
    payload = order_payload(method="prepaid")
    order_file = tmp_path / "order.json"
    order_file.write_text(json.dumps(payload), encoding="utf-8")
    order_id = f"webshop-{payload['external_id']}"

    code, out, err = await orders_cli(stack, tmp_path, "submit", str(order_file))
    assert code == 0, err
    assert json.loads(out) == {"order_id": order_id, "status": "received", "created": True}
    code, out, _ = await orders_cli(stack, tmp_path, "submit", str(order_file))
    assert (code, json.loads(out)["created"]) == (0, False)
    await stack.wait_status(order_id, OrderStatus.AWAITING_PAYMENT)

    code, _, err = await orders_cli(stack, tmp_path, "release", order_id, "--by", "maria")
    assert code == 4 and "awaiting_payment" in err  # not on hold: conflict
    code, _, err = await orders_cli(stack, tmp_path, "hold", order_id, "--by", "maria",
                                    "--reason", "Adresse prüfen")
    assert code == 0, err
    await stack.wait_status(order_id, OrderStatus.ON_HOLD)
    code, out, _ = await orders_cli(stack, tmp_path, "list", "--status", "on_hold", "--json")
    for _ in range(30):  # visibility is eventually consistent
        if any(o["order_id"] == order_id for o in json.loads(out)):
            break
        await asyncio.sleep(0.2)
        code, out, _ = await orders_cli(stack, tmp_path, "list", "--status", "on_hold", "--json")
    else:
        raise AssertionError(f"{order_id} not listed as on_hold: {out}")
    code, _, err = await orders_cli(stack, tmp_path, "release", order_id, "--by", "maria",
                                    "--note", "Adresse ok")
    assert code == 0, err
    await stack.wait_status(order_id, OrderStatus.AWAITING_PAYMENT)

    code, _, err = await orders_cli(stack, tmp_path, "pay", order_id, "--amount", "233.90",
                                    "--reference", order_id)
    assert code == 0, err
    await stack.wait_status(order_id, OrderStatus.HANDED_OFF, query=False)
    code, _, err = await orders_cli(stack, tmp_path, "ship", order_id, "--tracking", "JJD01",
                                    "--carrier", "DHL")
    assert code == 0, err
    assert await stack.result(order_id) == "completed"

    code, out, _ = await orders_cli(stack, tmp_path, "show", order_id)
    shown: dict[str, Any] = json.loads(out)
    assert (code, shown["status"], shown["shipments"][0]["tracking_number"]) == \
        (0, "completed", "JJD01")
    assert [e["kind"] for e in shown["timeline"]].count("released") == 1


async def test_partner_advice_from_the_cli_is_imported(stack: Stack, tmp_path: Path,
                                                        ftp_drop: Any) -> None:
    from tests.helpers import make_order
    from tests.test_jobs import run_import

    order = make_order()
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    code, _, err = await orders_cli(stack, tmp_path, "partner-advice", order.order_id,
                                      "--tracking", "JJD0042", "--carrier", "DPD")
    assert code == 0, err
    assert (Path(ftp_drop.root) / "outbox" / f"{order.order_id}-1-advice.xml").exists()
    assert (await run_import(stack))["confirmed"] == 1
    assert await stack.result(order.order_id) == "completed"
    view = await stack.view(order.order_id)
    assert (view.shipments[0].carrier, view.shipments[0].tracking_number) == ("DPD", "JJD0042")


async def test_cli_errors_have_exit_codes(stack: Stack, tmp_path: Path) -> None:
    code, _, err = await orders_cli(stack, tmp_path, "show", "webshop-does-not-exist")
    assert code == 3 and "not found" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**order_payload(), "currency": "EURO"}), encoding="utf-8")
    code, _, err = await orders_cli(stack, tmp_path, "submit", str(bad))
    assert code == 2 and "currency" in err
    for amount in ("1,50", "abc", "-3"):  # pydantic names the field, no traceback
        code, _, err = await orders_cli(stack, tmp_path, "pay", "webshop-x", "--amount",
                                        amount, "--reference", "r")
        assert code == 2 and "amount" in err and "Traceback" not in err, (amount, err)
    code, _, err = await orders_cli(stack, tmp_path, "export", "datev", "--from",
                                    "2025-12-01", "--to", "2026-01-31")
    assert code == 1 and "Traceback" not in err and "fiscal year" in err, err
    code, _, err = await orders_cli(stack, tmp_path, "pay")  # argparse: usage
    assert code == 2 and "usage" in err


async def test_release_with_the_temporal_cli(stack: Stack, tmp_path: Path) -> None:
    """What staff do in the web UI (Send a Signal, JSON input) works the same from the CLI."""
    from tests.helpers import make_order

    order = make_order(comment="Bitte klingeln")
    await stack.submit(order)
    await stack.wait_status(order.order_id, OrderStatus.ON_HOLD)
    proc = await asyncio.create_subprocess_exec(
        temporal_cli(), "workflow", "signal", "--address",
        stack.client.service_client.config.target_host, "--workflow-id", order.order_id,
        "--name", "release", "--input", json.dumps({"by": "maria", "note": "gelesen"}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    view = await stack.wait_status(order.order_id, OrderStatus.HANDED_OFF)
    assert view is not None
    assert any(e.kind == "released" and "gelesen" in e.text for e in view.timeline)


async def test_export_orders_from_the_cli(stack: Stack, tmp_path: Path) -> None:
    code, out, err = await orders_cli(stack, tmp_path, "export-orders", "--date", "2031-01-02")
    assert code == 0, err
    result = json.loads(out)
    assert (result["day"], result["count"]) == ("2031-01-02", 0)
    assert Path(result["path"]) == stack.settings.order_export_dir / "orders-2031-01-02.xml"
    assert Path(result["path"]).read_bytes().startswith(b"<?xml")
    code, _, err = await orders_cli(stack, tmp_path, "export-orders", "--date", "2.1.2031")
    assert code == 1 and "2.1.2031" in err


async def test_collective_invoices_from_the_cli(stack: Stack, tmp_path: Path) -> None:
    code, out, err = await orders_cli(stack, tmp_path, "collective-invoices", "--period",
                                      "2001-01")  # nothing shipped that early
    assert code == 0, err
    assert json.loads(out) == {"period": "2001-01", "invoices": [], "orders": 0, "resumed": []}
    code, _, err = await orders_cli(stack, tmp_path, "collective-invoices", "--period", "2031-1")
    assert code == 2 and "period" in err
    code, _, err = await orders_cli(stack, tmp_path, "collective-invoices", "--period",
                                    "2999-12")  # typed for a month that is still to come
    assert code == 1 and "2999-12 has not ended yet" in err
