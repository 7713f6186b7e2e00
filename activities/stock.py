"""Stock sync: a warehouse's stock list (XML) sets absolute stock levels, in batches.

The file (``schemas/stocklist/stocklist-1.0.xsd``)::

    <STOCK_LIST xmlns="urn:auftragsmanager:stocklist:1" warehouse="MAIN"
                generated_at="2026-11-25T06:00:00+01:00">
      <ITEM sku="TENT-2P" on_hand="12"/>
      <ITEM sku="RARE-1" on_hand="0" expected_at="2026-12-03"/>
    </STOCK_LIST>

``parse_stock_list`` refuses anything unsafe or invalid before a row is applied: files over
the size limit, any DOCTYPE (no DTD, no entities, so no XXE and no billion laughs), network
access, malformed XML, and anything the schema rejects (one row per SKU). A file that names
an unknown warehouse is rejected as a whole. ``apply_stock_list`` then sets ``on_hand`` (and
the expected date) per row, ``batch_size`` rows per transaction; SKUs not in the catalog are
counted and skipped, and a row older than the level it would replace (``generated_at`` not
after the row's last sync) is skipped as stale, so an old file sent again changes nothing.

``StockActivities`` runs it for the partner's FTP stock folder (the Schedule
``stock-sync``); the HTTP API takes the same file for push partners (``POST /stock-lists``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache

from lxml import etree
from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, col, select
from temporalio import activity

from activities.advice import (
    ensure_folder,
    fetch_file,
    file_names,
    free_name,
    move_file,
    record_import,
    was_imported,
)
from activities.partners import connect, remote_path, remote_size
from activities.safexml import UntrustedXmlError, parse_untrusted, schema_errors
from models.activities import AdviceFile, StockImportResult, StockSyncSummary
from models.tables import Product, Stock, Warehouse
from settings import PROJECT_DIR, Partner, Settings

__all__ = ["STOCK_NS", "StockActivities", "StockFileError", "StockList", "StockRow",
           "apply_stock_list", "build_stock_list", "digest", "parse_stock_list"]

STOCK_NS = "urn:auftragsmanager:stocklist:1"
SCHEMA = PROJECT_DIR / "schemas" / "stocklist" / "stocklist-1.0.xsd"


class StockFileError(ValueError):
    """The file is not a usable stock list; ``reason`` says why (for the ticket or 422)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StockRow:
    sku: str
    on_hand: int
    expected_at: datetime | None = None


@dataclass(frozen=True)
class StockList:
    warehouse: str
    generated_at: datetime
    rows: list[StockRow] = field(default_factory=list)


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def parse_stock_list(data: bytes, *, max_bytes: int) -> StockList:
    """The validated stock list; raises ``StockFileError`` with the reason."""
    try:
        root = parse_untrusted(data, max_bytes=max_bytes)
    except UntrustedXmlError as exc:
        raise StockFileError(exc.reason) from None
    if errors := schema_errors(_schema(), root):
        raise StockFileError("not a valid stock list: " + "; ".join(errors))
    generated_at = datetime.fromisoformat(root.get("generated_at", ""))
    if generated_at.tzinfo is None:
        raise StockFileError("generated_at needs a time zone (e.g. 2026-11-25T06:00:00+01:00)")
    rows = [StockRow(sku=item.get("sku", ""), on_hand=int(item.get("on_hand", "0")),
                     expected_at=_date(item.get("expected_at")))
            for item in root.iterchildren(f"{{{STOCK_NS}}}ITEM")]
    return StockList(warehouse=root.get("warehouse", ""), generated_at=generated_at, rows=rows)


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.combine(date.fromisoformat(text[:10]), time(0, 0), tzinfo=UTC)


def build_stock_list(warehouse: str, rows: list[StockRow], *,
                     generated_at: datetime) -> bytes:
    """A stock list as the partner sends it (the demo partner, tests, the benchmark)."""
    root = etree.Element(f"{{{STOCK_NS}}}STOCK_LIST", nsmap={None: STOCK_NS},
                         warehouse=warehouse, generated_at=generated_at.isoformat())
    for row in rows:
        item = etree.SubElement(root, f"{{{STOCK_NS}}}ITEM", sku=row.sku,
                                on_hand=str(row.on_hand))
        if row.expected_at is not None:
            item.set("expected_at", row.expected_at.date().isoformat())
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def apply_stock_list(engine: Engine, stock: StockList, *, batch_size: int = 1000,
                     progress: Callable[[int, int], None] | None = None) -> StockSyncSummary:
    """Set the absolute levels, ``batch_size`` rows per transaction. Raises
    ``StockFileError`` when the warehouse is unknown (nothing is applied then)."""
    with Session(engine) as session:
        if session.get(Warehouse, stock.warehouse) is None:
            raise StockFileError(f"unknown warehouse {stock.warehouse!r}")
    summary = StockSyncSummary(warehouse=stock.warehouse, rows=len(stock.rows))
    for start in range(0, len(stock.rows), batch_size):
        _apply_batch(engine, stock, stock.rows[start:start + batch_size], summary)
        if progress is not None:
            progress(min(start + batch_size, len(stock.rows)), len(stock.rows))
    return summary


def _apply_batch(engine: Engine, stock: StockList, rows: list[StockRow],
                 summary: StockSyncSummary) -> None:
    skus = [row.sku for row in rows]
    synced = stock.generated_at.astimezone(UTC)
    with Session(engine) as session:
        known = set(session.exec(select(Product.sku).where(col(Product.sku).in_(skus))))
        existing = {s.sku: (s.id, s.synced_at) for s in session.exec(
            select(Stock).where(Stock.warehouse == stock.warehouse,
                                col(Stock.sku).in_(skus)).with_for_update())}
        updates, inserts = [], []
        for row in rows:
            if row.sku not in known:
                summary.unknown_skus += 1
                if len(summary.unknown_examples) < 20:
                    summary.unknown_examples.append(row.sku)
                continue
            values = {"on_hand": row.on_hand, "expected_at": row.expected_at,
                      "synced_at": synced}
            if row.sku not in existing:
                inserts.append(Stock(warehouse=stock.warehouse, sku=row.sku, **values))
                continue
            stock_id, last = existing[row.sku]
            if last is not None and _aware(last) >= synced:
                summary.stale += 1
                continue
            updates.append({"stock_id": stock_id, **values})
        if updates:
            statement = (update(Stock).where(col(Stock.id) == bindparam("stock_id"))
                         .values(on_hand=bindparam("on_hand"),
                                 expected_at=bindparam("expected_at"),
                                 synced_at=bindparam("synced_at")))
            session.connection().execute(statement, updates)
        session.add_all(inserts)
        session.commit()
    summary.updated += len(updates)
    summary.created += len(inserts)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stock_source(partner: Partner) -> str:
    return f"{partner.code}/stock"


class StockActivities:
    """The partner's stock lists from its FTP stock folder, processed once each."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    def list_stock_files(self, partner_code: str | None = None) -> list[str]:
        """Names of the ``*.xml`` files in the partner's stock folder, by name."""
        partner = self.settings.partner_for(partner_code)
        with connect(partner) as ftp:
            ensure_folder(ftp, partner.stock_dir)
            names = file_names(ftp, partner.stock_dir)
        return sorted(n for n in names if n.lower().endswith(".xml") and not n.startswith("."))

    @activity.defn
    def import_stock_file(self, name: str, partner_code: str | None = None) -> StockImportResult:
        """Download, check and apply one stock list (heartbeats the progress per batch)."""
        partner = self.settings.partner_for(partner_code)
        limit = self.settings.stock_file_max_bytes
        with connect(partner) as ftp:
            fetched = fetch_file(ftp, remote_path(partner.stock_dir, name), name, limit=limit)
        if fetched is None:
            return StockImportResult(file=AdviceFile(name=name, sha256="", size=0,
                                                     partner=partner_code), already_done=True)
        file, data = fetched
        file.partner = partner_code
        if was_imported(self.engine, stock_source(partner), file.sha256):
            return StockImportResult(file=file, already_done=True)
        if data is None:
            return StockImportResult(file=file, error=(
                f"file is {file.size} bytes, over the limit of {limit}"))
        try:
            stock = parse_stock_list(data, max_bytes=limit)
            summary = apply_stock_list(
                self.engine, stock, batch_size=self.settings.stock_sync_batch_size,
                progress=lambda done, total: activity.heartbeat(f"{done}/{total} rows"))
        except StockFileError as exc:
            return StockImportResult(file=file, error=exc.reason)
        activity.logger.info("stock list %s: %s", name, summary.text())
        return StockImportResult(file=file, summary=summary)

    @activity.defn
    def finish_stock_file(self, input: StockImportResult) -> None:
        """Move the file to the archive or error folder, then record it. Idempotent."""
        partner = self.settings.partner_for(input.file.partner)
        file = input.file
        if not file.sha256:
            return
        source = remote_path(partner.stock_dir, file.name)
        folder = partner.archive if input.error is None else partner.error_dir
        with connect(partner) as ftp:
            if remote_size(ftp, source) == file.size:
                ensure_folder(ftp, folder)
                move_file(ftp, source, free_name(ftp, folder, file))
        detail = input.error or (input.summary.text() if input.summary else "")
        record_import(self.engine, stock_source(partner), file.name, file.sha256,
                      "rejected" if input.error else "archived", detail)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
