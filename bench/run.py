"""`make bench`: N prepaid orders through the whole lifecycle on the embedded stack.

Starts its own Temporal dev server, worker process, SMTP catcher and FTP drop (free ports,
a temporary folder), submits and pays the orders through the HTTP API (in process), plays
the partner (shipping confirmations), and prints:

- orders per second (first submit to last completion);
- p50/p95 from the payment to the order XML on the partner's FTP;
- worker and server CPU seconds per order;
- PDF milliseconds per document (delivery note, invoice);
- the same number of no-op workflows with the same activities, signals and timers, on the
  same server, and the ratio of the two;
- the fulfillment network (``bench/network.py``): allocation + carrier selection per order
  at 10,000 SKUs in 5 warehouses, and stock-sync rows/s for a 100,000-row stock list.

Usage: ``make bench`` or ``BENCH_ARGS="--orders 50" make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.db import make_engine, migrate
from activities.masterdata import load_master_data
from bench.network import report as report_network
from bench.network import run as run_network
from bench.noop import NOOP_TASK_QUEUE, NoopOrderWorkflow
from bench.pdf import measure_pdf_ms, report_pdf
from models.orders import OrderStatus, SearchAttr
from settings import PROJECT_DIR, Partner, Settings
from starter import service
from starter.api import create_app
from starter.embedded import FtpDrop, MailCatcher
from tests.conftest import free_port, temporal_cli
from tests.helpers import CATALOG, order_payload
from worker import connect

HEADERS = {"Authorization": "Bearer bench-client"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def bounded(n: int, items: list[Any], func: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(item: Any) -> Any:
        async with sem:
            return await func(item)

    return await asyncio.gather(*(one(i) for i in items))


async def poll(check: Callable[[], Awaitable[bool]], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        await asyncio.sleep(0.05)


class Stack:
    """Dev server + worker process + partners in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings(
            temporal_address=f"127.0.0.1:{free_port()}",
            database_url=f"sqlite:///{root / 'orders.db'}",
            smtp_port=free_port(), mail_dir=root / "mail", ftp_root=root / "ftp",
            partner=Partner(port=free_port()), api_keys="bench-client:client",
            task_queue="bench-orders", review_request_after="1s",
            payment_reminder_after="1h", cancel_unpaid_after="2h",
            ship_confirmation_timeout="1h",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        s = self.settings
        return {**os.environ, "ORDERS_TEMPORAL_ADDRESS": s.temporal_address,
                "ORDERS_DATABASE_URL": s.database_url, "ORDERS_SMTP_PORT": str(s.smtp_port),
                "ORDERS_PARTNER__PORT": str(s.partner.port), "ORDERS_TASK_QUEUE": s.task_queue,
                "ORDERS_CONFIG": str(self.root / "empty.toml")}

    async def start(self) -> Client:
        (self.root / "empty.toml").write_text("")
        migrate(self.settings.database_url)
        (self.root / "catalog.toml").write_text(CATALOG.replace("on_hand = 1000",
                                                                "on_hand = 100000"))
        load_master_data(make_engine(self.settings.database_url), self.root / "catalog.toml")
        self.mail = MailCatcher("127.0.0.1", self.settings.smtp_port, self.settings.mail_dir)
        self.ftp = FtpDrop("127.0.0.1", self.settings.partner.port, self.settings.ftp_root,
                           self.settings.partner.user, self.settings.partner.password)
        self.mail.start()
        self.ftp.start()
        port = self.settings.temporal_address.rsplit(":", 1)[1]
        argv = [temporal_cli(), "server", "start-dev", "--headless", "--port", port,
                "--db-filename", str(self.root / "temporal.db"), "--log-level", "error"]
        for name, kind in SearchAttr.TYPES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        self.procs["server"] = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                client = await connect(self.settings)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        self.procs["worker"] = subprocess.Popen([sys.executable, "-m", "bench.worker"],
                                                env=self.env(), cwd=PROJECT_DIR)
        return client

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
            proc.wait(15)
        self.ftp.stop()
        self.mail.stop()


async def run_orders(stack: Stack, client: Client, n: int, *,
                     concurrency: int = 50) -> dict[str, float]:
    app = create_app(stack.settings, client=client,
                     engine=make_engine(stack.settings.database_url))
    inbox = stack.settings.ftp_root / "inbox"
    paid_at: dict[str, float] = {}
    on_ftp: dict[str, float] = {}
    payloads = [order_payload(method="prepaid") for _ in range(n)]
    ids = [f"webshop-{p['external_id']}" for p in payloads]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api", headers=HEADERS, timeout=60) as api:
        async def view(order_id: str) -> Any:
            return await service.get_order(client, order_id)

        async def submit(payload: dict[str, Any]) -> None:
            (await api.post("/orders", json=payload)).raise_for_status()

        async def wait_status(order_id: str, status: OrderStatus) -> None:
            async def ready() -> bool:
                return (await view(order_id)).status == status
            await poll(ready)

        async def pay(order_id: str) -> None:
            await wait_status(order_id, OrderStatus.AWAITING_PAYMENT)
            paid_at[order_id] = time.time()
            (await api.post(f"/orders/{order_id}/payments", json={
                "amount": "233.90", "currency": "EUR", "reference": order_id})).raise_for_status()

        async def ship(order_id: str) -> None:
            await wait_status(order_id, OrderStatus.HANDED_OFF)
            (await api.post("/shipments/confirmations", json={
                "order_id": order_id, "carrier": "DHL",
                "tracking_number": f"T{order_id[-10:]}"})).raise_for_status()

        async def watch_ftp() -> None:
            wanted = set(ids)
            while len(on_ftp) < n:
                if inbox.exists():
                    for path in inbox.glob("*.xml"):
                        order_id = path.name.rsplit("-", 1)[0]
                        if order_id in wanted and order_id not in on_ftp:
                            on_ftp[order_id] = path.stat().st_ctime
                await asyncio.sleep(0.02)

        cpu0, t0 = stack.cpu(), time.monotonic()
        watcher = asyncio.create_task(watch_ftp())
        await bounded(min(20, concurrency), payloads, submit)
        await bounded(concurrency, ids, pay)
        await bounded(concurrency, ids, ship)
        await bounded(concurrency, ids, lambda i: client.get_workflow_handle(i).result())
        wall, cpu1 = time.monotonic() - t0, stack.cpu()
        await asyncio.wait_for(watcher, 30)
    latencies = [on_ftp[i] - paid_at[i] for i in ids]
    return {"wall": wall, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            **{f"cpu_{k}": cpu1[k] - cpu0[k] for k in cpu0}}


async def run_noop(stack: Stack, client: Client, n: int) -> dict[str, float]:
    ids = [f"noop-{i}-{time.time_ns()}" for i in range(n)]
    cpu0, t0 = stack.cpu(), time.monotonic()

    async def one(wid: str) -> None:
        handle = await client.start_workflow(NoopOrderWorkflow.run, 1.0, id=wid,
                                             task_queue=NOOP_TASK_QUEUE)
        await handle.signal(NoopOrderWorkflow.pay)
        await handle.signal(NoopOrderWorkflow.ship)
        await handle.result()

    await bounded(50, ids, one)
    wall, cpu1 = time.monotonic() - t0, stack.cpu()
    return {"wall": wall, **{f"cpu_{k}": cpu1[k] - cpu0[k] for k in cpu0}}


async def main_async(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="orders-bench-") as tmp:
        stack = Stack(Path(tmp))
        client = await stack.start()
        try:
            print(f"benchmark: {n} prepaid orders, paid via the API, on the embedded stack")
            single = await run_orders(stack, client, 5, concurrency=1)
            orders = await run_orders(stack, client, n)
            noop = await run_noop(stack, client, n)
        finally:
            stack.stop()
        pdf = measure_pdf_ms(stack.settings, samples=20)
    network = run_network()
    print(f"orders/s                      {n / orders['wall']:8.2f}   ({n} orders in "
          f"{orders['wall']:.1f} s)")
    print(f"payment -> XML on FTP  p50    {orders['p50'] * 1000:8.0f} ms   (all {n} paid at "
          "once: mostly queueing)")
    print(f"payment -> XML on FTP  p95    {orders['p95'] * 1000:8.0f} ms")
    print(f"  one order at a time  p50    {single['p50'] * 1000:8.0f} ms   (5 orders, no load)")
    print(f"worker CPU s / order          {orders['cpu_worker'] / n:8.4f}")
    print(f"server CPU s / order          {orders['cpu_server'] / n:8.4f}")
    report_pdf(pdf)
    print(f"no-op workflows/s             {n / noop['wall']:8.2f}   (same activities, "
          "signals, timers)")
    print(f"no-op worker CPU s / wf       {noop['cpu_worker'] / n:8.4f}")
    print(f"no-op server CPU s / wf       {noop['cpu_server'] / n:8.4f}")
    print(f"ratio order/no-op wall        {orders['wall'] / noop['wall']:8.2f}   (includes the "
          "1 s review timer in both)")
    for proc in ("worker", "server"):
        ratio = orders[f"cpu_{proc}"] / max(noop[f"cpu_{proc}"], 1e-9)
        print(f"ratio order/no-op {proc} CPU  {ratio:8.2f}")
    report_network(network)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--documents-only", action="store_true",
                        help="only the document figures (PDF, Factur-X), no stack")
    args = parser.parse_args()
    if args.documents_only:
        report_pdf(measure_pdf_ms(Settings(), samples=20))
    else:
        asyncio.run(main_async(args.orders))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
