"""Periodic jobs, run by Temporal Schedules (see ``starter/schedules.py``).

``ShippingAdviceImportWorkflow``: the partner's shipping advice (openTRANS
DISPATCHNOTIFICATION files in its FTP outbox) becomes ``shipment_confirmed`` signals to the
orders. Each file is archived after its orders were signalled, or moved to the error folder
with a ticket when it cannot be read. A file's content is processed once: a second run, or a
run after a crash halfway, finds it recorded; an order ignores a repeated confirmation.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.advice import AdviceActivities
    from activities.tickets import TicketActivities
    from models.activities import (
        AdviceConfirmation,
        FinishAdviceInput,
        OpenTicketInput,
        ReadAdviceInput,
        ReadAdviceResult,
    )
    from models.orders import ShipmentConfirmation
    from workflows.order import OrderWorkflow

__all__ = ["ShippingAdviceImportWorkflow"]

_OPTIONS = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


@workflow.defn
class ShippingAdviceImportWorkflow:
    def __init__(self) -> None:
        self.summary = {"files": 0, "confirmed": 0, "rejected": 0, "skipped": 0,
                        "unknown_orders": 0}

    @workflow.run
    async def run(self) -> dict[str, int]:
        names: list[str] = await workflow.execute_activity_method(
            AdviceActivities.list_advice_files, summary="list the partner's shipping advice",
            **_OPTIONS)
        for name in names:
            self.summary["files"] += 1
            workflow.set_current_details(f"importing {name} ({self.summary['files']} of "
                                         f"{len(names)})")
            await self._import(name)
        workflow.set_current_details(
            f"done: {self.summary['confirmed']} confirmations from {len(names)} file(s), "
            f"{self.summary['rejected']} rejected, {self.summary['skipped']} already imported")
        return self.summary

    @workflow.query(description="Progress of this import run")
    def progress(self) -> dict[str, int]:
        return self.summary

    async def _import(self, name: str) -> None:
        result: ReadAdviceResult = await workflow.execute_activity_method(
            AdviceActivities.read_advice_file, ReadAdviceInput(name=name),
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
