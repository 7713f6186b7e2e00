"""The composition root: settings, clients, activity instances, registration.

Run with ``orders worker`` (or ``python -m worker``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.advice import AdviceActivities
from activities.collective import CollectiveActivities
from activities.credit_notes import CreditNoteActivities
from activities.datev import DatevActivities
from activities.db import make_engine
from activities.documents import DocumentActivities
from activities.export import ExportActivities
from activities.mail import MailActivities
from activities.masterdata import unknown_partners
from activities.partners import PartnerActivities
from activities.payments import PaymentActivities
from activities.shipping import ShippingActivities, load_shipping_config
from activities.stock import StockActivities
from activities.store import StoreActivities
from activities.tickets import TicketActivities
from settings import Settings
from workflows.bank import BankInboxWorkflow, BankStatementWorkflow, SettlementWorkflow
from workflows.collective import CollectiveInvoiceWorkflow
from workflows.credit import CreditNoteWorkflow
from workflows.jobs import (
    DatevExportWorkflow,
    OrderExportWorkflow,
    ShippingAdviceImportWorkflow,
    StockSyncWorkflow,
    WakeBackordersWorkflow,
)
from workflows.order import OrderWorkflow

log = logging.getLogger("orders.worker")


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=pydantic_data_converter)


def build_worker(client: Client, settings: Settings, *, task_queue: str | None = None,
                 max_threads: int = 16) -> Worker:
    """A worker with every workflow and activity registered; the caller runs it."""
    engine = make_engine(settings.database_url)
    check_partners(engine, settings)
    network = load_shipping_config(settings.shipping_config)
    store = StoreActivities(engine, network.allocation, settings.backorder_lead_time,
                            settings.tax)
    tickets = TicketActivities(engine)
    documents = DocumentActivities(engine, settings)
    mail = MailActivities(engine, settings)
    partners = PartnerActivities(engine, settings)
    shipping = ShippingActivities(engine, network)
    advice = AdviceActivities(engine, settings)
    stock = StockActivities(engine, settings)
    export = ExportActivities(engine, settings)
    credit_notes = CreditNoteActivities(engine, settings)
    payments = PaymentActivities(engine, settings)
    datev = DatevActivities(engine, settings)
    collective = CollectiveActivities(engine, settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[OrderWorkflow, ShippingAdviceImportWorkflow, StockSyncWorkflow,
                   WakeBackordersWorkflow, OrderExportWorkflow, CreditNoteWorkflow,
                   BankStatementWorkflow, BankInboxWorkflow, DatevExportWorkflow,
                   SettlementWorkflow, CollectiveInvoiceWorkflow],
        activities=[
            store.record_order, store.check_order, store.reserve_stock, store.release_stock,
            store.allocate_shipments, store.reservation_state, store.fill_backorders,
            tickets.open_ticket, tickets.resolve_ticket,
            store.record_payment,
            documents.create_delivery_note, documents.create_order_xml,
            documents.create_order_csv, documents.issue_invoice, documents.dunning_notice,
            mail.send_mail, partners.hand_off, shipping.choose_carrier,
            advice.ftp_partners, advice.list_advice_files, advice.read_advice_file,
            advice.finish_advice_file,
            stock.list_stock_files, stock.import_stock_file, stock.finish_stock_file,
            export.export_orders, credit_notes.issue_credit_note,
            payments.fetch_bank_files, payments.list_statement_files, payments.read_statement,
            payments.open_items,
            payments.finish_statement, payments.read_settlement,
            payments.record_marketplace_payment, payments.finish_settlement,
            datev.export_datev, collective.enlist_collective,
            collective.collective_customers, collective.issue_collective_invoice,
        ],
        activity_executor=ThreadPoolExecutor(max_workers=max_threads),
        max_concurrent_activities=max_threads,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def check_partners(engine: Engine, settings: Settings) -> None:
    """Every partner the master data names must be configured; ValueError lists the ones
    that are not (checked at start, so no shipment waits for a partner that does not exist)."""
    try:
        problems = unknown_partners(engine, set(settings.all_partners()))
    except SQLAlchemyError as err:  # not migrated yet: `orders migrate` will say so
        log.warning("master data not checked against the partners: %s", err)
        return
    if problems:
        raise ValueError("master data names partners missing from the settings "
                         "(ORDERS_PARTNERS__<CODE>__..., [partners.<code>]): "
                         + "; ".join(problems))


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully: running activities finish
    (or are cancelled after the graceful timeout) and the server is told to stop sending
    this worker's sticky tasks here."""
    client = await connect(settings)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
        log.info("shutting down")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(run_worker(Settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
