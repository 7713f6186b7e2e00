"""Storing documents exactly once, and gapless document numbers.

Every document row is keyed by ``(order_id, key)``: a retried activity finds the row it
stored before and returns it, without rendering again or burning a second number.

Numbered documents (invoice, delivery note, credit note) are gapless per type and year, in
two short steps so that no lock is held while a PDF renders:

1. *reserve*: one transaction takes the next number from ``number_range`` (row lock) and
   inserts the document row with its number, issue time and basis (what it is issued for)
   but no content yet; a ``plan`` callback may check the request inside that transaction
   (credit notes: against their invoice and earlier credit notes, serialised by the lock);
2. *fill*: the PDF is rendered outside any transaction from what the row says, then stored
   with ``UPDATE ... WHERE content IS NULL`` (an issued document is never overwritten).

A crash or a failed render between the two leaves a reserved row; the retry of the same
activity finds it and renders with the same number, date and basis. So a number is never
skipped and never given twice, and a concurrent duplicate call ends on the same row.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.orders import DocumentView
from models.tables import Document, NumberRange
from models.tax import TaxConfig

__all__ = ["DocumentStore", "Planned", "Rendered", "Reserved", "Target", "bounded",
           "document_view", "find_document", "next_number", "tax_of"]

log = logging.getLogger("orders.documents")

MAX_DOCUMENT_ID = 160  # column widths in models.tables.Document
MAX_KEY = 100


@dataclass(frozen=True)
class Target:
    """Which document row an activity call produces."""

    order_id: str
    key: str
    kind: str
    document_id: str
    media_type: str
    series: str = ""  # the number range, if not ``kind``'s (a collective invoice: invoice)


@dataclass(frozen=True)
class Rendered:
    content: bytes
    filename: str


@dataclass(frozen=True)
class Planned:
    """What a plan decides besides the basis: the invoice a credit note corrects, the tax
    rules (``TaxConfig`` as JSON) the document is computed with."""

    basis: str | None
    refers_to: str | None = None
    tax: str | None = None


@dataclass(frozen=True)
class Reserved:
    """What a numbered document is rendered from (the same on every retry)."""

    number: str
    issued_at: datetime
    basis: str | None
    tax: str | None = None


def tax_of(snapshot: str | None, fallback: TaxConfig) -> TaxConfig:
    """The tax rules a document was issued under (kept with it, so a later change of rates
    or of the OSS switch never changes what an issued document says); ``fallback`` for
    documents issued before they were kept."""
    return TaxConfig.model_validate_json(snapshot) if snapshot else fallback


def bounded(text: str, limit: int) -> str:
    """``text`` if it fits the column, else a readable prefix plus a digest of the whole."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 17]}~{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def next_number(session: Session, *, kind: str, year: int) -> int:
    """Take the next number of ``(kind, year)`` inside the caller's transaction.

    The row is created if missing (safe under concurrency on SQLite and PostgreSQL), then
    incremented with ``UPDATE ... RETURNING``, which holds the row lock on PostgreSQL until
    the caller commits or rolls back (SQLite: the engine's BEGIN IMMEDIATE). A rollback
    returns the number, so the range stays gapless."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(
        session.get_bind().dialect.name)
    if insert is None:
        raise RuntimeError(f"number ranges need SQLite or PostgreSQL, not "
                           f"{session.get_bind().dialect.name}")
    session.exec(insert(NumberRange).values(kind=kind, year=year, last_number=0)
                 .on_conflict_do_nothing(index_elements=["kind", "year"]))
    bump = (update(NumberRange)
            .where(col(NumberRange.kind) == kind, col(NumberRange.year) == year)
            .values(last_number=col(NumberRange.last_number) + 1)
            .returning(col(NumberRange.last_number))
            .execution_options(synchronize_session=False))
    return int(session.exec(bump).scalar_one())


def find_document(session: Session, order_id: str, key: str) -> Document | None:
    return session.exec(select(Document).where(Document.order_id == order_id,
                                               Document.key == key)).first()


def document_view(row: Document) -> DocumentView:
    return DocumentView(document_id=row.document_id, kind=row.kind, number=row.number,
                        filename=row.filename)


class DocumentStore:
    """Exactly-once storage of documents, numbered ones in two steps (module doc)."""

    def __init__(self, engine: Engine, timezone: str = "UTC",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.zone = ZoneInfo(timezone)  # the shop's: a number's year is the printed date's
        self.clock = clock

    def create_once(self, target: Target, produce: Callable[[], Rendered],
                    basis: str | None = None) -> DocumentView:
        """Return the stored row for ``target``, or produce and insert it (unnumbered
        documents, ``basis`` kept with it); if a concurrent call stored the same document
        first, ours is rolled back and theirs returned."""
        if (found := self.existing(target)) is not None:
            return found
        try:
            rendered = produce()
            with Session(self.engine) as session:
                row = Document(
                    document_id=target.document_id, order_id=target.order_id, key=target.key,
                    kind=target.kind, filename=rendered.filename,
                    media_type=target.media_type, content=rendered.content,
                    sha256=hashlib.sha256(rendered.content).hexdigest(), basis=basis,
                    issued_at=datetime.now(UTC))
                view = document_view(row)
                session.add(row)
                session.commit()
                return view
        except IntegrityError:
            if (found := self.existing(target)) is None:
                raise
            log.info("document %s was stored concurrently; returning that one",
                     target.document_id)
            return found

    def issue_numbered(self, target: Target, number_format: str,
                       filename: Callable[[str], str], render: Callable[[Reserved], bytes],
                       plan: Callable[[Session], str | Planned | None] | None = None
                       ) -> DocumentView:
        """Reserve the next number of ``target.kind`` with the document row (short
        transaction, ``plan`` gives the basis), render outside it, then fill the row once."""
        row = self.reserve(target, number_format, filename, plan)
        if row.content is not None:
            return document_view(row)
        assert row.number is not None and row.issued_at is not None
        content = render(Reserved(row.number, row.issued_at, row.basis, row.tax))
        digest = hashlib.sha256(content).hexdigest()
        with Session(self.engine) as session:
            session.exec(update(Document)
                         .where(col(Document.document_id) == row.document_id,
                                col(Document.content).is_(None))
                         .values(content=content, sha256=digest)
                         .execution_options(synchronize_session=False))
            session.commit()
        log.info("issued %s %s for order %s", target.kind, row.number, target.order_id)
        return document_view(row)

    def reserve(self, target: Target, number_format: str, filename: Callable[[str], str],
                plan: Callable[[Session], str | Planned | None] | None = None) -> Document:
        """The row of ``target``: the one a previous attempt reserved or filled, or a new one
        with the next number (taken and inserted in one transaction, so a failure, a
        rejected plan or a concurrent duplicate gives the number back)."""
        with Session(self.engine, expire_on_commit=False) as session:
            if (row := find_document(session, target.order_id, target.key)) is not None:
                return row
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                issued_at = self.clock()
                year = issued_at.astimezone(self.zone).year  # 00:30 on 1 January: the new
                sequence = next_number(session, kind=target.series or target.kind,
                                       year=year)
                planned = plan(session) if plan is not None else None
                if not isinstance(planned, Planned):
                    planned = Planned(planned)
                number = number_format.format(year=year, number=sequence)
                row = Document(
                    document_id=target.document_id, order_id=target.order_id, key=target.key,
                    kind=target.kind, number=number, filename=filename(number),
                    media_type=target.media_type, issued_at=issued_at, basis=planned.basis,
                    refers_to=planned.refers_to, tax=planned.tax)
                session.add(row)
                session.commit()
                return row
        except IntegrityError:
            with Session(self.engine, expire_on_commit=False) as session:
                if (row := find_document(session, target.order_id, target.key)) is None:
                    raise
                log.info("%s was reserved concurrently; using that one", target.document_id)
                return row

    def existing(self, target: Target) -> DocumentView | None:
        with Session(self.engine) as session:
            row = find_document(session, target.order_id, target.key)
            return document_view(row) if row is not None else None
