"""Order export: all orders received on one day as one XML file of openTRANS ORDERs.

The file (``schemas/orderexport/orderexport-1.0.xsd``) wraps one openTRANS 2.1 ``ORDER``
per order (the same document the fulfillment partner gets, with all lines and prices) in an
``ORDER_EXPORT`` element that names the day, the shop's time zone and the count. It is
validated against the schema (which imports the official openTRANS schema) before it is
written. The day runs from midnight to midnight in ``ORDERS_SHOP_TIMEZONE``.

``ExportActivities.export_orders`` writes ``orders-YYYY-MM-DD.xml`` into
``ORDERS_ORDER_EXPORT_DIR`` (a temporary file, then an atomic rename: a reader never sees a
half file; running it again replaces the file with the same orders). The Schedule
``order-export`` runs it every day for the day before; ``orders export-orders`` and
``GET /exports/orders/{date}`` run it on demand.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.opentrans import build_order
from activities.safexml import schema_errors
from models.activities import ExportOrdersInput, ExportOrdersResult
from models.orders import OrderIn, initial_view
from models.rules import compute_totals
from models.tables import OrderRecord
from models.tax import TaxConfig
from settings import PROJECT_DIR, Settings

__all__ = ["EXPORT_NS", "ExportActivities", "build_order_export", "export_day",
           "orders_of_day", "parse_export_day", "write_atomically"]

EXPORT_NS = "urn:auftragsmanager:orderexport:1"
SCHEMA = PROJECT_DIR / "schemas" / "orderexport" / "orderexport-1.0.xsd"


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def write_atomically(folder: Path, name: str, content: bytes) -> Path:
    """Write ``folder/name`` under a temporary name, then rename it: a reader never sees a
    half file, and writing it again replaces it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as tmp:
        tmp.write(content)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)
    return target


def parse_export_day(text: str) -> date:
    """``YYYY-MM-DD`` of an order export, or ``ValueError`` (the day after it must exist)."""
    day = date.fromisoformat(text)
    if day == date.max:
        raise ValueError(f"no order export for {text}")
    return day


def export_day(reference: datetime, zone: str) -> date:
    """The day before ``reference`` in the shop's time zone (what a nightly run exports)."""
    return (reference.astimezone(ZoneInfo(zone)) - timedelta(days=1)).date()


def orders_of_day(engine: Engine, day: date, zone: str) -> list[OrderIn]:
    """The orders received on ``day`` (shop time), oldest first."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=tz).astimezone(UTC)
    with Session(engine) as session:
        rows = session.exec(select(OrderRecord).where(
            col(OrderRecord.created_at) >= start, col(OrderRecord.created_at) < end)
            .order_by(col(OrderRecord.created_at), col(OrderRecord.order_id))).all()
        return [OrderIn.model_validate_json(row.payload) for row in rows]


def build_order_export(orders: list[OrderIn], day: date, zone: str, *, supplier_name: str,
                       generated_at: datetime | None = None,
                       tax: TaxConfig | None = None) -> bytes:
    """The validated export file as UTF-8 bytes."""
    now = generated_at or datetime.now(UTC)
    root = etree.Element(f"{{{EXPORT_NS}}}ORDER_EXPORT", nsmap={None: EXPORT_NS},
                         date=day.isoformat(), time_zone=zone,
                         generated_at=now.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds"),
                         count=str(len(orders)))
    for order in orders:
        root.append(build_order(initial_view(order, compute_totals(order, tax)),
                                supplier_name=supplier_name, generated_at=now))
    if errors := schema_errors(_schema(), root):
        raise ApplicationError("order export does not validate: " + "; ".join(errors),
                               type="InvalidDocument", non_retryable=True)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


class ExportActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    def export_orders(self, input: ExportOrdersInput) -> ExportOrdersResult:
        """Write the export of ``input.day`` (default: the day before ``input.reference``)."""
        zone = self.settings.shop_timezone
        day = (parse_export_day(input.day) if input.day
               else export_day(input.reference or datetime.now(UTC), zone))
        orders = orders_of_day(self.engine, day, zone)
        content = build_order_export(orders, day, zone, supplier_name=self.settings.shop_name,
                                     tax=self.settings.tax)
        target = write_atomically(Path(self.settings.order_export_dir),
                                  f"orders-{day.isoformat()}.xml", content)
        activity.logger.info("order export %s: %d orders, %d bytes", target, len(orders),
                             len(content))
        return ExportOrdersResult(day=day.isoformat(), path=str(target), count=len(orders),
                                  sha256=hashlib.sha256(content).hexdigest())
