"""The Temporal Schedules of the periodic jobs: created, or updated to the settings.

``make run`` applies them at start; elsewhere run ``orders schedules``. Each schedule is
visible (and can be paused or triggered) in the web UI under *Schedules*.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleOverlapPolicy as Overlap

from settings import Settings
from workflows.jobs import ShippingAdviceImportWorkflow, StockSyncWorkflow

__all__ = ["SHIPPING_ADVICE_SCHEDULE", "STOCK_SYNC_SCHEDULE", "apply_schedules",
           "shipping_advice_schedule", "stock_sync_schedule"]

SHIPPING_ADVICE_SCHEDULE = "shipping-advice-import"
STOCK_SYNC_SCHEDULE = "stock-sync"


def shipping_advice_schedule(settings: Settings, *, task_queue: str | None = None,
                             workflow_id: str = SHIPPING_ADVICE_SCHEDULE) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ShippingAdviceImportWorkflow.run, id=workflow_id,
            task_queue=task_queue or settings.task_queue,
            execution_timeout=timedelta(hours=1)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=settings.shipping_advice_interval)]),
        policy=SchedulePolicy(overlap=Overlap.SKIP),  # one import at a time
        state=ScheduleState(note="Imports the fulfillment partner's shipping advice "
                                 "(openTRANS DISPATCHNOTIFICATION) from its FTP outbox"),
    )


def stock_sync_schedule(settings: Settings, *, task_queue: str | None = None,
                        workflow_id: str = STOCK_SYNC_SCHEDULE) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            StockSyncWorkflow.run, id=workflow_id,
            task_queue=task_queue or settings.task_queue,
            execution_timeout=timedelta(hours=2)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.stock_sync_interval)]),
        policy=SchedulePolicy(overlap=Overlap.SKIP),
        state=ScheduleState(note="Imports the warehouses' stock lists (absolute levels) from "
                                 "the partner's FTP stock folder and wakes backordered orders"),
    )


async def apply_schedules(client: Client, settings: Settings, *,
                          task_queue: str | None = None, prefix: str = "") -> list[str]:
    """Create each schedule, or bring an existing one in line with the settings."""
    advice_id = f"{prefix}{SHIPPING_ADVICE_SCHEDULE}"
    stock_id = f"{prefix}{STOCK_SYNC_SCHEDULE}"
    wanted = {advice_id: shipping_advice_schedule(settings, task_queue=task_queue,
                                                  workflow_id=advice_id),
              stock_id: stock_sync_schedule(settings, task_queue=task_queue,
                                            workflow_id=stock_id)}
    for schedule_id, schedule in wanted.items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            async def replace(_: ScheduleUpdateInput, new: Schedule = schedule,
                              ) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(replace)
    return sorted(wanted)
