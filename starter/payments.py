"""Payment file uploads: bank statements (``POST /payments/statements``, camt.053) and
marketplace settlement reports (``POST /payments/settlements``). Each is checked at once,
saved where the import reads it, then imported by its workflow like any other file of its
kind, once per content (``imported_file``; one workflow per content hash at a time)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.advice import was_imported
from activities.camt import StatementError, parse_statement
from activities.payments import BANK_SOURCE, SETTLEMENT_SOURCE, save_upload, settlement_inbox
from activities.settlement import SettlementError, parse_settlement
from models.payments import StatementFile
from settings import Settings
from starter import service
from workflows.bank import (
    BankStatementWorkflow,
    SettlementWorkflow,
    settlement_workflow_id,
    statement_workflow_id,
)

__all__ = ["StatementRejected", "upload_settlement", "upload_statement"]


class StatementRejected(service.ServiceError):
    """Not a readable statement or report (HTTP 422)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Kind:
    """One kind of payment file: how it is checked, where it waits, what imports it."""

    source: str  # imported_file.partner
    inbox: Callable[[Settings], Path]
    suffix: str
    describe: Callable[[bytes, Settings], dict[str, Any]]  # ValueError: rejected
    run: Any  # the workflow's run method
    workflow_id: Callable[[str], str]
    label: str


def _statement(data: bytes, settings: Settings) -> dict[str, Any]:
    statement = parse_statement(data, max_bytes=settings.bank_file_max_bytes)
    return {"message_id": statement.message_id, "credits": len(statement.credits),
            "version": f"camt.053.001.{statement.version}"}


def _settlement(data: bytes, settings: Settings) -> dict[str, Any]:
    settlement = parse_settlement(data, max_bytes=settings.bank_file_max_bytes)
    return {"settlement_id": settlement.settlement_id, "orders": len(settlement.orders),
            "total": str(settlement.total), "currency": settlement.currency}


STATEMENT = _Kind(BANK_SOURCE, lambda s: s.bank_inbox_dir, ".xml", _statement,
                  BankStatementWorkflow.run, statement_workflow_id, "bank statement")
SETTLEMENT = _Kind(SETTLEMENT_SOURCE, settlement_inbox, ".txt", _settlement,
                   SettlementWorkflow.run, settlement_workflow_id, "settlement")


def _check_and_save(kind: _Kind, engine: Engine, settings: Settings,
                    data: bytes) -> dict[str, Any]:
    sha256 = hashlib.sha256(data).hexdigest()
    if was_imported(engine, kind.source, sha256):
        return {"sha256": sha256, "already_imported": True}
    try:
        described = kind.describe(data, settings)
    except (StatementError, SettlementError) as exc:
        raise StatementRejected(str(exc)) from None
    name, _ = save_upload(kind.inbox(settings), data, suffix=kind.suffix)
    return {"sha256": sha256, "already_imported": False, "file": name, **described}


async def _upload(kind: _Kind, client: Client, engine: Engine, settings: Settings,
                  data: bytes, wait: bool) -> dict[str, Any]:
    result = await asyncio.to_thread(_check_and_save, kind, engine, settings, data)
    if result["already_imported"]:
        return result
    workflow_id = kind.workflow_id(result["sha256"])
    handle = await client.start_workflow(
        kind.run, StatementFile(name=result["file"], sha256=result["sha256"]),
        id=workflow_id, task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"{kind.label} {result['file']} (upload)")
    result["workflow_id"] = workflow_id
    if wait:
        try:
            summary = await asyncio.wait_for(handle.result(), timeout=60)
            result["summary"] = summary.model_dump(mode="json")
        except TimeoutError:
            result["summary"] = None
    return result


async def upload_statement(client: Client, engine: Engine, settings: Settings, data: bytes, *,
                           wait: bool = False) -> dict[str, Any]:
    """Check, save into the bank inbox and import a camt.053 statement; with ``wait`` the
    import's summary (matched, partial, tickets) when it finishes within a minute."""
    return await _upload(STATEMENT, client, engine, settings, data, wait)


async def upload_settlement(client: Client, engine: Engine, settings: Settings, data: bytes,
                            *, wait: bool = False) -> dict[str, Any]:
    """Check, save and import a marketplace settlement report (``wait`` as above)."""
    return await _upload(SETTLEMENT, client, engine, settings, data, wait)
