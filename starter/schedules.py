"""The Temporal Schedules of the periodic jobs: created, or updated to the settings.

``make run`` applies them at start; elsewhere run ``orders schedules``. Each schedule is
visible (and can be paused or triggered) in the web UI under *Schedules*.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleOverlapPolicy as Overlap

from settings import Settings
from workflows.bank import BankInboxWorkflow
from workflows.collective import CollectiveInvoiceWorkflow
from workflows.jobs import (
    DatevExportWorkflow,
    OrderExportWorkflow,
    ShippingAdviceImportWorkflow,
    StockSyncWorkflow,
)

__all__ = ["BANK_STATEMENTS_SCHEDULE", "COLLECTIVE_INVOICES_SCHEDULE", "DATEV_EXPORT_SCHEDULE",
           "ORDER_EXPORT_SCHEDULE", "SHIPPING_ADVICE_SCHEDULE", "STOCK_SYNC_SCHEDULE",
           "apply_schedules", "bank_statements_schedule", "collective_invoices_schedule",
           "datev_export_schedule", "order_export_schedule", "shipping_advice_schedule",
           "stock_sync_schedule"]

BANK_STATEMENTS_SCHEDULE = "bank-statements"
COLLECTIVE_INVOICES_SCHEDULE = "collective-invoices"
DATEV_EXPORT_SCHEDULE = "datev-export"
ORDER_EXPORT_SCHEDULE = "order-export"
SHIPPING_ADVICE_SCHEDULE = "shipping-advice-import"
STOCK_SYNC_SCHEDULE = "stock-sync"


def _schedule(workflow_run: Any, spec: ScheduleSpec, note: str, settings: Settings, *,
              task_queue: str | None, workflow_id: str, timeout: timedelta) -> Schedule:
    """A schedule that starts ``workflow_run`` without arguments, one run at a time."""
    return Schedule(
        action=ScheduleActionStartWorkflow(workflow_run, id=workflow_id,
                                           task_queue=task_queue or settings.task_queue,
                                           execution_timeout=timeout),
        spec=spec, policy=SchedulePolicy(overlap=Overlap.SKIP), state=ScheduleState(note=note))


def shipping_advice_schedule(settings: Settings, *, task_queue: str | None = None,
                             workflow_id: str = SHIPPING_ADVICE_SCHEDULE) -> Schedule:
    return _schedule(
        ShippingAdviceImportWorkflow.run,
        ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.shipping_advice_interval)]),
        "Imports the partners' shipping advice (openTRANS DISPATCHNOTIFICATION, CSV) from "
        "their FTP outboxes", settings, task_queue=task_queue, workflow_id=workflow_id,
        timeout=timedelta(hours=1))


def stock_sync_schedule(settings: Settings, *, task_queue: str | None = None,
                        workflow_id: str = STOCK_SYNC_SCHEDULE) -> Schedule:
    return _schedule(
        StockSyncWorkflow.run,
        ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.stock_sync_interval)]),
        "Imports the warehouses' stock lists (absolute levels) from the partners' FTP stock "
        "folders and wakes backordered orders", settings, task_queue=task_queue,
        workflow_id=workflow_id, timeout=timedelta(hours=2))


def order_export_schedule(settings: Settings, *, task_queue: str | None = None,
                          workflow_id: str = ORDER_EXPORT_SCHEDULE) -> Schedule:
    hour, minute = (int(part) for part in settings.order_export_at.split(":"))
    return _schedule(
        OrderExportWorkflow.run,
        ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)],
                                                     minute=[ScheduleRange(minute)])],
                     time_zone_name=settings.shop_timezone),
        "Writes yesterday's orders as one XML file (openTRANS ORDERs) into "
        "ORDERS_ORDER_EXPORT_DIR", settings, task_queue=task_queue, workflow_id=workflow_id,
        timeout=timedelta(hours=1))


def bank_statements_schedule(settings: Settings, *, task_queue: str | None = None,
                             workflow_id: str = BANK_STATEMENTS_SCHEDULE) -> Schedule:
    return _schedule(
        BankInboxWorkflow.run,
        ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.bank_statement_interval)]),
        "Imports bank statements (camt.053) from ORDERS_BANK_INBOX_DIR (after fetching "
        "the bank's FTP folder, if ORDERS_BANK_FTP__HOST is set) and matches the "
        "credits to open orders and invoices", settings, task_queue=task_queue,
        workflow_id=workflow_id, timeout=timedelta(hours=1))


def datev_export_schedule(settings: Settings, *, task_queue: str | None = None,
                          workflow_id: str = DATEV_EXPORT_SCHEDULE) -> Schedule:
    return _schedule(
        DatevExportWorkflow.run,
        ScheduleSpec(calendars=[ScheduleCalendarSpec(day_of_month=[ScheduleRange(1)],
                                                     hour=[ScheduleRange(3)],
                                                     minute=[ScheduleRange(0)])],
                     time_zone_name=settings.shop_timezone),
        "Writes last month's invoices, credit notes and payments as a DATEV Buchungsstapel "
        "into ORDERS_DATEV_EXPORT_DIR (on the 1st, 03:00 shop time)", settings,
        task_queue=task_queue, workflow_id=workflow_id, timeout=timedelta(hours=1))


def collective_invoices_schedule(settings: Settings, *, task_queue: str | None = None,
                                 workflow_id: str = COLLECTIVE_INVOICES_SCHEDULE) -> Schedule:
    hour, minute = (int(part) for part in settings.collective_invoice_at.split(":"))
    return _schedule(
        CollectiveInvoiceWorkflow.run,
        ScheduleSpec(calendars=[ScheduleCalendarSpec(
            day_of_month=[ScheduleRange(settings.collective_invoice_day)],
            hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])],
            time_zone_name=settings.shop_timezone),
        "Issues last month's collective invoices of the customers flagged collective_invoice "
        "and mails them", settings, task_queue=task_queue, workflow_id=workflow_id,
        timeout=timedelta(hours=6))


async def apply_schedules(client: Client, settings: Settings, *,
                          task_queue: str | None = None, prefix: str = "") -> list[str]:
    """Create each schedule, or bring an existing one in line with the settings."""
    advice_id = f"{prefix}{SHIPPING_ADVICE_SCHEDULE}"
    stock_id = f"{prefix}{STOCK_SYNC_SCHEDULE}"
    export_id = f"{prefix}{ORDER_EXPORT_SCHEDULE}"
    bank_id = f"{prefix}{BANK_STATEMENTS_SCHEDULE}"
    datev_id = f"{prefix}{DATEV_EXPORT_SCHEDULE}"
    collective_id = f"{prefix}{COLLECTIVE_INVOICES_SCHEDULE}"
    wanted = {advice_id: shipping_advice_schedule(settings, task_queue=task_queue,
                                                  workflow_id=advice_id),
              stock_id: stock_sync_schedule(settings, task_queue=task_queue,
                                            workflow_id=stock_id),
              export_id: order_export_schedule(settings, task_queue=task_queue,
                                               workflow_id=export_id),
              bank_id: bank_statements_schedule(settings, task_queue=task_queue,
                                                workflow_id=bank_id),
              datev_id: datev_export_schedule(settings, task_queue=task_queue,
                                              workflow_id=datev_id),
              collective_id: collective_invoices_schedule(settings, task_queue=task_queue,
                                                          workflow_id=collective_id)}
    for schedule_id, schedule in wanted.items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            async def replace(_: ScheduleUpdateInput, new: Schedule = schedule,
                              ) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(replace)
    return sorted(wanted)
