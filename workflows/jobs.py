"""Periodic jobs, run by Temporal Schedules (see ``starter/schedules.py``).

``ShippingAdviceImportWorkflow``: the partner's shipping advice (openTRANS
DISPATCHNOTIFICATION files in its FTP outbox) becomes ``shipment_confirmed`` signals to the
orders. Each file is archived after its orders were signalled, or moved to the error folder
with a ticket when it cannot be read. A file's content is processed once: a second run, or a
run after a crash halfway, finds it recorded; an order ignores a repeated confirmation.

``StockSyncWorkflow``: the partner's stock lists (XML in its FTP stock folder) set absolute
stock levels in batches; each file is archived, or rejected with a ticket. Then
``WakeBackordersWorkflow`` (also started by ``POST /stock-lists``) reserves the stock for
backordered lines, oldest order first, and signals ``stock_arrived`` to each order that got
some, in that order.

``OrderExportWorkflow``: all orders of a day as one XML file (openTRANS ORDERs); by the
Schedule ``order-export`` for the day before, or on demand for a given day.

``DatevExportWorkflow``: the invoices, credit notes and payments of a period as a DATEV
Buchungsstapel; by the Schedule ``datev-export`` on the 1st for the month before, or on
demand (``orders export datev --from --to``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.advice import AdviceActivities
    from activities.datev import DatevActivities
    from activities.export import ExportActivities
    from activities.stock import StockActivities
    from activities.store import StoreActivities
    from activities.tickets import TicketActivities
    from models.activities import (
        AdviceConfirmation,
        ExportDatevInput,
        ExportDatevResult,
        ExportOrdersInput,
        ExportOrdersResult,
        FillBackordersInput,
        FinishAdviceInput,
        OpenTicketInput,
        ReadAdviceInput,
        ReadAdviceResult,
        StockImportResult,
    )
    from models.orders import ShipmentConfirmation
    from workflows.order import OrderWorkflow

__all__ = ["DatevExportWorkflow", "OrderExportWorkflow", "ShippingAdviceImportWorkflow",
           "StockSyncWorkflow", "WakeBackordersWorkflow"]

_OPTIONS = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


async def _partner_files(list_files: Any, what: str) -> list[tuple[str, str]]:
    """``(partner, name)`` of the files waiting on the FTP of every partner whose shipping
    advice and stock lists come by FTP (``return_channel = "ftp"``)."""
    partners: list[str] = await workflow.execute_activity_method(
        AdviceActivities.ftp_partners, summary="the partners that send files by FTP",
        **_OPTIONS)
    found: list[tuple[str, str]] = []
    for partner in partners:
        names: list[str] = await workflow.execute_activity_method(
            list_files, partner, summary=f"list the {what} of {partner}", **_OPTIONS)
        found += [(partner, name) for name in names]
    return found


@workflow.defn
class ShippingAdviceImportWorkflow:
    def __init__(self) -> None:
        self.summary = {"files": 0, "confirmed": 0, "rejected": 0, "skipped": 0,
                        "unknown_orders": 0}

    @workflow.run
    async def run(self) -> dict[str, int]:
        files = await _partner_files(AdviceActivities.list_advice_files, "shipping advice")
        for number, (partner, name) in enumerate(files, start=1):
            self.summary["files"] += 1
            workflow.set_current_details(f"importing {name} of {partner} ({number} of "
                                         f"{len(files)})")
            await self._import(name, partner)
        workflow.set_current_details(
            f"done: {self.summary['confirmed']} confirmations from {len(files)} file(s), "
            f"{self.summary['rejected']} rejected, {self.summary['skipped']} already imported")
        return self.summary

    @workflow.query(description="Progress of this import run")
    def progress(self) -> dict[str, int]:
        return self.summary

    async def _import(self, name: str, partner: str) -> None:
        result: ReadAdviceResult = await workflow.execute_activity_method(
            AdviceActivities.read_advice_file, ReadAdviceInput(name=name, partner=partner),
            summary=f"read {name}", **_OPTIONS)
        if result.already_done:
            self.summary["skipped"] += 1
            if result.file.sha256:  # a resent copy of an imported file: out of the outbox
                await workflow.execute_activity_method(
                    AdviceActivities.finish_advice_file,
                    FinishAdviceInput(file=result.file, outcome="archived",
                                      detail="same content as a file imported before"),
                    summary=f"archive {name} (imported before)", **_OPTIONS)
            return
        if result.error is not None:
            await self._reject(result, result.error)
            return
        unknown = []
        for confirmation in result.confirmations:
            if not await self._confirm(confirmation):
                unknown.append(confirmation.order_id)
        if unknown:
            self.summary["unknown_orders"] += len(unknown)
            await self._ticket(result, f"shipping advice {name}: unknown or closed order(s) "
                                       f"{', '.join(unknown)}; the other orders were confirmed")
        await workflow.execute_activity_method(
            AdviceActivities.finish_advice_file,
            FinishAdviceInput(file=result.file, outcome="archived",
                              detail=f"{len(result.confirmations)} confirmation(s)"),
            summary=f"archive {name}", **_OPTIONS)

    async def _confirm(self, confirmation: AdviceConfirmation) -> bool:
        handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run,
                                                           confirmation.order_id)
        try:
            await handle.signal(OrderWorkflow.shipment_confirmed, ShipmentConfirmation(
                carrier=confirmation.carrier, tracking_number=confirmation.tracking_number,
                shipped_at=confirmation.shipped_at, shipment_id=confirmation.shipment_id))
        except FailureError:  # no such order, or it is closed
            return False
        self.summary["confirmed"] += 1
        return True

    async def _reject(self, result: ReadAdviceResult, error: str) -> None:
        self.summary["rejected"] += 1
        await self._ticket(result, f"shipping advice {result.file.name} rejected: {error}")
        await workflow.execute_activity_method(
            AdviceActivities.finish_advice_file,
            FinishAdviceInput(file=result.file, outcome="rejected", detail=error[:2000]),
            summary=f"move {result.file.name} to the error folder", **_OPTIONS)

    async def _ticket(self, result: ReadAdviceResult, text: str) -> None:
        await workflow.execute_activity_method(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=None, key=f"advice-{result.file.sha256[:32]}",
                            kind="import", title=text[:200], body=text),
            summary="open a ticket for the import", **_OPTIONS)


@workflow.defn
class WakeBackordersWorkflow:
    """Reserve free stock for backordered lines (oldest order first), then wake each order
    that got some, in that order."""

    def __init__(self) -> None:
        self.summary = {"woken": 0, "gone": 0}

    @workflow.run
    async def run(self) -> dict[str, int]:
        workflow.set_current_details("reserving stock for backordered lines, oldest first")
        woken: list[str] = await workflow.execute_activity_method(
            StoreActivities.fill_backorders, FillBackordersInput(),
            summary="reserve free stock for backordered lines, oldest order first", **_OPTIONS)
        for order_id in woken:
            handle = workflow.get_external_workflow_handle_for(OrderWorkflow.run, order_id)
            try:
                await handle.signal(OrderWorkflow.stock_arrived)
                self.summary["woken"] += 1
            except FailureError:  # closed meanwhile (cancelled): its release returns it
                self.summary["gone"] += 1
        workflow.set_current_details(f"done: {self.summary['woken']} order(s) woken"
                                     + (f": {', '.join(woken[:20])}" if woken else ""))
        return self.summary


@workflow.defn
class StockSyncWorkflow:
    """Import every stock list in the partner's stock folder, then wake backorders."""

    def __init__(self) -> None:
        self.summary = {"files": 0, "applied": 0, "rows": 0, "rejected": 0, "skipped": 0,
                        "woken": 0}

    @workflow.run
    async def run(self) -> dict[str, int]:
        files = await _partner_files(StockActivities.list_stock_files, "stock lists")
        for number, (partner, name) in enumerate(files, start=1):
            self.summary["files"] += 1
            workflow.set_current_details(f"importing {name} of {partner} ({number} of "
                                         f"{len(files)})")
            await self._import(name, partner)
        if self.summary["applied"]:
            wake = await workflow.execute_child_workflow(
                WakeBackordersWorkflow.run, id=f"{workflow.info().workflow_id}-wake")
            self.summary["woken"] = wake["woken"]
        workflow.set_current_details(
            f"done: {self.summary['applied']} stock list(s) applied ({self.summary['rows']} "
            f"rows), {self.summary['rejected']} rejected, {self.summary['skipped']} already "
            f"imported, {self.summary['woken']} backordered order(s) woken")
        return self.summary

    @workflow.query(description="Progress of this stock sync")
    def progress(self) -> dict[str, int]:
        return self.summary

    async def _import(self, name: str, partner: str) -> None:
        result: StockImportResult = await workflow.execute_activity_method(
            StockActivities.import_stock_file, args=[name, partner], summary=f"apply {name}",
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)))
        if result.already_done:
            self.summary["skipped"] += 1
            if result.file.sha256:
                await self._finish(result)
            return
        if result.error is not None:
            self.summary["rejected"] += 1
            text = f"stock list {name} rejected, nothing applied: {result.error}"
            await workflow.execute_activity_method(
                TicketActivities.open_ticket,
                OpenTicketInput(order_id=None, key=f"stock-{result.file.sha256[:32]}",
                                kind="import", title=text[:200], body=text),
                summary="open a ticket for the rejected stock list", **_OPTIONS)
        else:
            self.summary["applied"] += 1
            self.summary["rows"] += result.summary.rows if result.summary else 0
        await self._finish(result)

    async def _finish(self, result: StockImportResult) -> None:
        await workflow.execute_activity_method(
            StockActivities.finish_stock_file, result,
            summary=f"move {result.file.name} to the "
                    f"{'error' if result.error else 'archive'} folder", **_OPTIONS)


@workflow.defn
class OrderExportWorkflow:
    """Export the orders of ``day`` (YYYY-MM-DD), or of the day before when run by the
    Schedule (no day given)."""

    @workflow.run
    async def run(self, day: str | None = None) -> ExportOrdersResult:
        workflow.set_current_details(f"exporting the orders of {day or 'yesterday'}")
        result: ExportOrdersResult = await workflow.execute_activity_method(
            ExportActivities.export_orders,
            ExportOrdersInput(day=day, reference=workflow.now()),
            summary=f"write the order export of {day or 'yesterday'}",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)))
        workflow.set_current_details(f"done: {result.count} order(s) of {result.day} in "
                                     f"{result.path}")
        return result


@workflow.defn
class DatevExportWorkflow:
    """The DATEV Buchungsstapel of a period (``period_from``/``period_to``), or of the month
    before when run by the Schedule (no input)."""

    @workflow.run
    async def run(self, input: ExportDatevInput | None = None) -> ExportDatevResult:
        wanted = input or ExportDatevInput()
        what = (f"{wanted.period_from}..{wanted.period_to}" if wanted.period_from
                else "last month")
        workflow.set_current_details(f"exporting the bookings of {what} for DATEV")
        result: ExportDatevResult = await workflow.execute_activity_method(
            DatevActivities.export_datev,
            wanted.model_copy(update={"reference": workflow.now()}),
            summary=f"write the DATEV export of {what}",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30),
                                     non_retryable_error_types=["InvalidExport"]))
        workflow.set_current_details(f"done: {result.bookings} booking(s) of "
                                     f"{result.period_from}..{result.period_to} in "
                                     f"{result.path}")
        return result
