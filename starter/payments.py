"""Bank statement uploads (``POST /payments/statements``): checked at once, then imported by
``BankStatementWorkflow`` like a file the Schedule finds in the inbox, once per content."""

from __future__ import annotations

import asyncio
import hashlib
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
    """Not a valid camt.053 statement (HTTP 422)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_and_save(engine: Engine, settings: Settings, data: bytes) -> dict[str, Any]:
    sha256 = hashlib.sha256(data).hexdigest()
    if was_imported(engine, BANK_SOURCE, sha256):
        return {"sha256": sha256, "already_imported": True}
    try:
        statement = parse_statement(data, max_bytes=settings.bank_file_max_bytes)
    except StatementError as exc:
        raise StatementRejected(str(exc)) from None
    name, _ = save_upload(settings.bank_inbox_dir, data)
    return {"sha256": sha256, "already_imported": False, "file": name,
            "message_id": statement.message_id, "version": f"camt.053.001.{statement.version}",
            "credits": len(statement.credits)}


async def upload_statement(client: Client, engine: Engine, settings: Settings, data: bytes, *,
                           wait: bool = False) -> dict[str, Any]:
    """Check, save into the inbox and import a statement; with ``wait`` the import's summary
    (matched, partial, tickets) is returned when it finishes within a minute."""
    result = await asyncio.to_thread(_check_and_save, engine, settings, data)
    if result["already_imported"]:
        return result
    workflow_id = statement_workflow_id(result["sha256"])
    handle = await client.start_workflow(
        BankStatementWorkflow.run, StatementFile(name=result["file"], sha256=result["sha256"]),
        id=workflow_id, task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"bank statement {result['message_id']} (upload)")
    result["workflow_id"] = workflow_id
    if wait:
        try:
            summary = await asyncio.wait_for(handle.result(), timeout=60)
            result["summary"] = summary.model_dump(mode="json")
        except TimeoutError:
            result["summary"] = None
    return result


def _check_and_save_settlement(engine: Engine, settings: Settings,
                               data: bytes) -> dict[str, Any]:
    sha256 = hashlib.sha256(data).hexdigest()
    if was_imported(engine, SETTLEMENT_SOURCE, sha256):
        return {"sha256": sha256, "already_imported": True}
    try:
        settlement = parse_settlement(data, max_bytes=settings.bank_file_max_bytes)
    except SettlementError as exc:
        raise StatementRejected(str(exc)) from None
    name, _ = save_upload(settlement_inbox(settings), data, suffix=".txt")
    return {"sha256": sha256, "already_imported": False, "file": name,
            "settlement_id": settlement.settlement_id, "orders": len(settlement.orders),
            "total": str(settlement.total), "currency": settlement.currency}


async def upload_settlement(client: Client, engine: Engine, settings: Settings, data: bytes,
                            *, wait: bool = False) -> dict[str, Any]:
    """Check, save and import a marketplace settlement report (once per content)."""
    result = await asyncio.to_thread(_check_and_save_settlement, engine, settings, data)
    if result["already_imported"]:
        return result
    workflow_id = settlement_workflow_id(result["sha256"])
    handle = await client.start_workflow(
        SettlementWorkflow.run, StatementFile(name=result["file"], sha256=result["sha256"]),
        id=workflow_id, task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"settlement {result['settlement_id']} (upload)")
    result["workflow_id"] = workflow_id
    if wait:
        try:
            summary = await asyncio.wait_for(handle.result(), timeout=60)
            result["summary"] = summary.model_dump(mode="json")
        except TimeoutError:
            result["summary"] = None
    return result
