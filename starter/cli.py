"""The ``orders`` command: submit, inspect and steer orders; run the worker and the API.

Every command prints JSON (or a table for ``list``) and ends with ``os._exit`` after
flushing, because the Temporal client's native threads can abort a short-lived Python
process at interpreter exit (temporalio/sdk-python#300).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.exceptions import TemporalError

from activities.db import make_engine
from models.credit import CreditNoteIn
from models.orders import (
    CancelInput,
    HoldInput,
    OrderIn,
    PaymentIn,
    ReleaseInput,
    ShipmentConfirmation,
)
from settings import PROJECT_DIR, Settings
from starter import credits, service

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


async def _client(settings: Settings) -> Any:
    from worker import connect

    return await connect(settings)


async def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    order = OrderIn.model_validate_json(raw)
    status, created = await service.submit_order(await _client(settings), order,
                                                 settings=settings)
    _print({"order_id": order.order_id, "status": status, "created": created})
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    found = await service.list_orders(await _client(settings), status=args.status,
                                      channel=args.channel, q=args.q, limit=args.limit)
    if args.json:
        _print([s.as_dict() for s in found])
        return EXIT_OK
    print(f"{'ORDER':<28} {'STATUS':<18} {'PAYMENT':<15} {'TOTAL':>10}  {'HOLD':<20} CUSTOMER")
    for s in found:
        total = f"{s.total:.2f}" if s.total is not None else ""
        print(f"{s.order_id:<28} {s.status:<18} {s.payment_status or '':<15} {total:>10}  "
              f"{s.hold_reason or '':<20} {s.customer_email or ''}")
    return EXIT_OK


async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    view = await service.get_order(await _client(settings), args.order_id)
    _print(view.model_dump(mode="json"))
    return EXIT_OK


async def _steer(args: argparse.Namespace, settings: Settings, action: Any, body: Any,
                 outcome: str) -> int:
    """Release, hold or cancel: the same call and the same answer, staff's three levers."""
    was = await action(await _client(settings), args.order_id, body)
    _print({"order_id": args.order_id, "previous_status": was, "status": outcome})
    return EXIT_OK


async def cmd_release(args: argparse.Namespace, settings: Settings) -> int:
    return await _steer(args, settings, service.release_order,
                        ReleaseInput(by=args.by, note=args.note or ""), "released")


async def cmd_hold(args: argparse.Namespace, settings: Settings) -> int:
    return await _steer(args, settings, service.hold_order,
                        HoldInput(by=args.by, reason=args.reason or ""), "hold_requested")


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    return await _steer(args, settings, service.cancel_order,
                        CancelInput(by=args.by, reason=args.reason or ""), "cancel_requested")


async def cmd_pay(args: argparse.Namespace, settings: Settings) -> int:
    payment = PaymentIn(amount=args.amount, currency=args.currency,  # pydantic checks it
                        reference=args.reference, paid_at=datetime.now(UTC),
                        payment_id=args.payment_id)
    await service.record_payment(await _client(settings), args.order_id, payment)
    _print({"order_id": args.order_id, "accepted": True})
    return EXIT_OK


async def cmd_ship(args: argparse.Namespace, settings: Settings) -> int:
    confirmation = ShipmentConfirmation(carrier=args.carrier, tracking_number=args.tracking,
                                        shipped_at=datetime.now(UTC),
                                        shipment_id=args.shipment_id)
    await service.confirm_shipment(await _client(settings), args.order_id, confirmation)
    _print({"order_id": args.order_id, "accepted": True})
    return EXIT_OK


async def cmd_credit_note(args: argparse.Namespace, settings: Settings) -> int:
    lines = []
    for item in args.line or []:
        sku, _, quantity = item.rpartition(":")
        if not sku or not quantity.isdigit():
            raise ValueError(f"--line expects SKU:QUANTITY, got {item!r}")
        lines.append({"sku": sku, "quantity": int(quantity)})
    request = CreditNoteIn.model_validate({
        "request_id": args.request_id, "reason": args.reason, "lines": lines,
        "shipping": args.shipping, "amount": args.amount, "tax_rate": args.tax_rate,
        "invoice_number": args.invoice_number, "by": args.by})
    engine = make_engine(settings.database_url)
    try:
        workflow_id, started = await credits.request_credit_note(
            await _client(settings), engine, settings, args.order_id, request)
    finally:
        engine.dispose()
    _print({"order_id": args.order_id, "request_id": request.request_id,
            "workflow_id": workflow_id, "status": "issuing" if started else "requested"})
    return EXIT_OK


def cmd_worker(_args: argparse.Namespace, _settings: Settings) -> int:
    import worker

    worker.main()  # runs its own event loop until Ctrl-C / SIGTERM
    return EXIT_OK


def cmd_api(_args: argparse.Namespace, _settings: Settings) -> int:
    from starter import api

    api.main()  # uvicorn runs its own event loop until Ctrl-C / SIGTERM
    return EXIT_OK


async def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from activities.db import migrate

    migrate(settings.database_url)
    _print({"migrated": settings.database_url})
    return EXIT_OK


async def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from activities.masterdata import load_master_data

    counts = load_master_data(make_engine(settings.database_url), Path(args.file))
    _print({"loaded": str(args.file), **counts})
    return EXIT_OK


async def cmd_partner_advice(args: argparse.Namespace, settings: Settings) -> int:
    """Play the fulfillment partner: upload a shipping advice for ORDER_ID to its outbox."""
    import ftplib
    import io

    from activities.dispatch import build_dispatch_notification
    from activities.partners import connect

    view = await service.get_order(await _client(settings), args.order_id)
    open_ = [s for s in view.shipments if s.status != "shipped"
             and (args.shipment_id is None or s.shipment_id == args.shipment_id)]
    if not open_:
        raise service.OrderStateConflict(args.order_id, view.status, "send shipping advice for")
    shipment = open_[0]
    lines = [(line.sku, line.quantity) for line in shipment.lines or view.lines]
    content = build_dispatch_notification(
        notification_id=f"DN-{uuid.uuid4().hex[:10]}", order_id=args.order_id,
        shipment_id=shipment.shipment_id, carrier=args.carrier, tracking_number=args.tracking,
        shipped_at=datetime.now(UTC), lines=lines)
    partner = settings.partner
    name = f"{shipment.shipment_id}-advice.xml"
    with connect(partner) as ftp:
        try:
            ftp.mkd(partner.outbox)
        except ftplib.error_perm:  # exists already
            pass
        ftp.storbinary(f"STOR {partner.outbox}/{name}.part", io.BytesIO(content))
        ftp.rename(f"{partner.outbox}/{name}.part", f"{partner.outbox}/{name}")
    _print({"uploaded": f"{partner.outbox}/{name}", "bytes": len(content)})
    return EXIT_OK


async def cmd_schedules(_args: argparse.Namespace, settings: Settings) -> int:
    from starter.schedules import apply_schedules

    applied = await apply_schedules(await _client(settings), settings)
    _print({"schedules": applied})
    return EXIT_OK


async def cmd_export_orders(args: argparse.Namespace, settings: Settings) -> int:
    """Run the export workflow for a day and wait for the file."""
    from activities.export import parse_export_day
    from workflows.jobs import OrderExportWorkflow

    if args.date is not None:
        parse_export_day(args.date)  # ValueError: exit code 1 with the reason
    client = await _client(settings)
    result = await client.execute_workflow(
        OrderExportWorkflow.run, args.date, id=f"order-export-{args.date or 'yesterday'}-"
                                               f"{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue, execution_timeout=timedelta(minutes=15))
    _print(result.model_dump())
    return EXIT_OK


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """``orders export datev --from D --to D``: run the DATEV export and wait for the file."""
    from models.activities import ExportDatevInput
    from models.datev import fiscal_year_start
    from workflows.jobs import DatevExportWorkflow

    if (args.period_from is None) != (args.period_to is None):
        raise ValueError("give both --from and --to, or neither (last month)")
    if args.period_from is not None:
        start, end = date.fromisoformat(args.period_from), date.fromisoformat(args.period_to)
        if end < start or (fiscal_year_start(settings.datev, start)
                           != fiscal_year_start(settings.datev, end)):
            raise ValueError(f"{start}..{end} must run forwards and lie within one fiscal "
                             f"year (ORDERS_DATEV__FISCAL_YEAR_START="
                             f"{settings.datev.fiscal_year_start})")
    client = await _client(settings)
    result = await client.execute_workflow(
        DatevExportWorkflow.run,
        ExportDatevInput(period_from=args.period_from, period_to=args.period_to),
        id=f"datev-export-{args.period_from or 'last-month'}-{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue, execution_timeout=timedelta(minutes=15))
    _print(result.model_dump())
    return EXIT_OK


async def cmd_collective_invoices(args: argparse.Namespace, settings: Settings) -> int:
    """``orders collective-invoices [--period YYYY-MM]``: issue the collective invoices now."""
    from activities.documents import shop_date
    from models.billing import check_period_ended
    from workflows.collective import CollectiveInvoiceInput, CollectiveInvoiceWorkflow

    wanted = CollectiveInvoiceInput(period=args.period)  # a bad period: exit code 2
    if wanted.period is not None:  # a month still running: exit code 1, nothing started
        check_period_ended(wanted.period, shop_date(datetime.now(UTC), settings))
    client = await _client(settings)
    result = await client.execute_workflow(
        CollectiveInvoiceWorkflow.run, wanted,
        id=f"collective-invoices-{args.period or 'last-month'}-{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue, execution_timeout=timedelta(hours=1))
    _print(result.model_dump())
    return EXIT_OK


Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int] | int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orders", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    add("submit", cmd_submit, "submit an order from a JSON file (- for stdin)").add_argument(
        "file")
    p = add("list", cmd_list, "list orders, newest first")
    p.add_argument("--status")
    p.add_argument("--channel")
    p.add_argument("--q", help="customer e-mail or order id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    add("show", cmd_show, "show one order with its timeline").add_argument("order_id")
    p = add("release", cmd_release, "release an order on hold")
    p.add_argument("order_id")
    p.add_argument("--by", required=True)
    p.add_argument("--note")
    for name, func, what in (("hold", cmd_hold, "put an order on hold"),
                             ("cancel", cmd_cancel, "cancel an order")):
        p = add(name, func, what)
        p.add_argument("order_id")
        p.add_argument("--by", required=True)
        p.add_argument("--reason")
    p = add("pay", cmd_pay, "record a payment")
    p.add_argument("order_id")
    p.add_argument("--amount", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--currency", default="EUR")
    p.add_argument("--payment-id", help="the payment's own id (e.g. the bank entry): the "
                   "same id again is ignored, so a repeated call pays nothing twice")
    p = add("ship", cmd_ship, "confirm that an order was shipped")
    p.add_argument("order_id")
    p.add_argument("--tracking", required=True)
    p.add_argument("--carrier", default="DHL")
    p.add_argument("--shipment-id")
    p = add("credit-note", cmd_credit_note,
            "issue a credit note for an invoiced order (return, cancellation, goodwill)")
    p.add_argument("order_id")
    p.add_argument("--request-id", required=True,
                   help="your reference, e.g. the RMA number: one credit note per id")
    p.add_argument("--reason", required=True)
    p.add_argument("--line", action="append", metavar="SKU:QUANTITY",
                   help="a returned line (repeat); none of --line/--shipping/--amount: "
                        "credit everything not yet credited")
    p.add_argument("--shipping", help="shipping to credit, as priced")
    p.add_argument("--amount", help="a free amount to credit, as priced")
    p.add_argument("--tax-rate", help="the rate of --amount (default: the invoice's highest)")
    p.add_argument("--invoice-number", help="the invoice to correct (default: the final "
                                            "one, else the only partial one)")
    p.add_argument("--by", default="staff")
    add("worker", cmd_worker, "run the Temporal worker")
    add("api", cmd_api, "run the HTTP API")
    add("migrate", cmd_migrate, "apply the database migrations")
    add("schedules", cmd_schedules, "create or update the Temporal Schedules of the jobs")
    p = add("partner-advice", cmd_partner_advice,
            "demo: play the partner and upload a shipping advice for an order")
    p.add_argument("order_id")
    p.add_argument("--tracking", required=True)
    p.add_argument("--carrier", default="DHL")
    p.add_argument("--shipment-id", default=None,
                   help="the shipment (default: the order's first open one)")
    p = add("export-orders", cmd_export_orders,
            "write the order export (openTRANS ORDERs) of a day now")
    p.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday, shop time)")
    p = add("export", cmd_export, "write an export for the tax accountant now")
    p.add_argument("kind", choices=["datev"], help="datev: EXTF Buchungsstapel (CSV)")
    p.add_argument("--from", dest="period_from", help="YYYY-MM-DD (default: last month)")
    p.add_argument("--to", dest="period_to", help="YYYY-MM-DD, inclusive")
    p = add("collective-invoices", cmd_collective_invoices,
            "issue the collective invoices of a month now (customers flagged "
            "collective_invoice)")
    p.add_argument("--period", help="YYYY-MM: orders shipped up to its end (default: last "
                                    "month)")
    add("seed", cmd_seed, "load master data (warehouses, products, stock)").add_argument(
        "file", nargs="?", default=str(PROJECT_DIR / "demo" / "masterdata.toml"))
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        result = args.func(args, settings)
        return asyncio.run(result) if asyncio.iscoroutine(result) else int(result)
    except ValidationError as err:
        print(f"error: invalid input:\n{err}", file=sys.stderr)
        return EXIT_USAGE
    except service.OrderNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (service.OrderStateConflict, credits.NotInvoiced) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFLICT
    except credits.CreditNoteRejected as err:
        print(f"error: invalid input: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RuntimeError, ValueError, ArithmeticError, TemporalError) as err:
        print(f"error: {_root_cause(err)}", file=sys.stderr)  # a failed job: why, not where
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


def _root_cause(error: BaseException) -> str:
    """The message of the innermost cause (an activity's ApplicationError, say)."""
    while (cause := getattr(error, "cause", None) or error.__cause__) is not None:
        error = cause
    return str(error)


def main() -> None:
    code = EXIT_ERROR
    try:
        code = run()
    except SystemExit as exit_:  # argparse: usage errors (2), --help (0)
        code = exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    except BaseException as err:  # whatever it was: a message, and out through os._exit
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
