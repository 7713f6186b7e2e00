"""Hand-off to the fulfillment partner: the order's documents into the partner's FTP inbox.

Atomic and idempotent per file:

1. Files that already have an ``Upload`` row (partner, remote path) are skipped.
2. A file that exists remotely with the right size but has no row (the worker crashed
   between the rename and the insert) is recorded and skipped.
3. Everything else is stored as ``<name>.part`` and renamed to ``<name>``, so the partner
   never sees half a file; only then is the ``Upload`` row written.

Errors: a document id without a ``Document`` row is a non-retryable
``ApplicationError(type="DocumentMissing")``, an unusable file name one of type
``InvalidFilename``; FTP, network and database errors propagate, so Temporal retries.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import posixpath
from collections.abc import Iterable

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.handoff_http import deliver_json, idempotency_key, shipment_json
from models.activities import HandOffInput, HandOffResult
from models.tables import Document, Upload
from settings import BankFtp, Partner, Settings

__all__ = ["DOCUMENT_MISSING", "PARTNER_UNKNOWN", "PartnerActivities", "connect",
           "load_documents"]

DOCUMENT_MISSING = "DocumentMissing"
PARTNER_UNKNOWN = "PartnerUnknown"
INVALID_FILENAME = "InvalidFilename"
PART_SUFFIX = ".part"
FTP_TIMEOUT = 30.0  # seconds, per blocking FTP operation


def load_documents(engine: Engine, document_ids: Iterable[str]) -> list[Document]:
    """The ``Document`` rows in the order of ``document_ids``; a missing one is a
    non-retryable ``DocumentMissing`` (documents are written before anyone refers to them)."""
    ids = list(document_ids)
    with Session(engine) as session:
        rows = session.exec(select(Document).where(col(Document.document_id).in_(ids),
                                                   col(Document.content).is_not(None))).all()
    found = {row.document_id: row for row in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ApplicationError(f"unknown document(s): {', '.join(missing)}", missing,
                               type=DOCUMENT_MISSING, non_retryable=True)
    return [found[i] for i in ids]


class PartnerActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    def hand_off(self, input: HandOffInput) -> HandOffResult:
        """Hand the shipment to the partner by its channel; once, whatever the retries."""
        try:
            partner = self.settings.partner_for(input.partner)
        except KeyError:
            raise ApplicationError(f"unknown partner {input.partner!r} (not in the settings)",
                                   type=PARTNER_UNKNOWN, non_retryable=True) from None
        documents = load_documents(self.engine, input.document_ids)
        if partner.channel == "http":
            return self._post(partner, input, documents)
        paths = {doc.document_id: remote_path(partner.inbox, doc.filename)
                 for doc in documents}
        done = self._recorded(partner.code, paths.values())
        todo = [doc for doc in documents if paths[doc.document_id] not in done]
        if todo:
            with connect(partner) as ftp:
                ensure_directory(ftp, partner.inbox)
                for doc in todo:
                    path = paths[doc.document_id]
                    if remote_size(ftp, path) != len(doc.content):
                        upload_atomically(ftp, path, doc.content)
                    self._record(order_id=input.order_id, partner=partner.code, path=path,
                                 sha256=doc.sha256)
        return HandOffResult(partner=partner.code,
                             files=[paths[doc.document_id] for doc in documents])

    def _post(self, partner: Partner, input: HandOffInput,
              documents: list[Document]) -> HandOffResult:
        """The shipment as JSON to ``partner.url``; recorded like an upload once accepted."""
        key = idempotency_key(input.order_id, input.shipment_id)
        target = f"{partner.url}#{key}"
        if target not in self._recorded(partner.code, [target]):
            if input.order is None:
                raise ApplicationError("the http channel needs the order in the input",
                                       type="InvalidHandOff", non_retryable=True)
            deliver_json(partner, shipment_json(input.order, input.shipment_id, documents),
                         key)
            digest = hashlib.sha256(key.encode()).hexdigest()
            self._record(order_id=input.order_id, partner=partner.code, path=target,
                         sha256=digest)
        return HandOffResult(partner=partner.code, files=[target])

    # --- database ----------------------------------------------------------------------

    def _recorded(self, partner: str, paths: Iterable[str]) -> set[str]:
        with Session(self.engine) as session:
            rows = session.exec(select(Upload.remote_path).where(
                Upload.partner == partner, col(Upload.remote_path).in_(list(paths)))).all()
        return set(rows)

    def _record(self, *, order_id: str, partner: str, path: str, sha256: str) -> None:
        with Session(self.engine) as session:
            session.add(Upload(order_id=order_id, partner=partner, remote_path=path,
                               sha256=sha256))
            try:
                session.commit()
            except IntegrityError:  # a concurrent attempt recorded it first: same outcome
                session.rollback()



# --- FTP -------------------------------------------------------------------------------


def connect(partner: Partner | BankFtp) -> ftplib.FTP:
    """A logged-in connection in binary mode (SIZE answers in bytes); use it in ``with``."""
    ftp = ftplib.FTP(timeout=FTP_TIMEOUT)
    try:
        ftp.connect(partner.host, partner.port)
        ftp.login(partner.user, partner.password)
        ftp.voidcmd("TYPE I")
    except BaseException:
        ftp.close()
        raise
    return ftp


def remote_path(inbox: str, filename: str) -> str:
    """``inbox/filename``; the file name must be a plain name (no directories, no control
    characters), anything else is a non-retryable ``InvalidFilename``."""
    if (not filename or filename in (".", "..") or "/" in filename or "\\" in filename
            or any(ord(c) < 32 or ord(c) == 127 for c in filename)):
        raise ApplicationError(f"unusable file name for the partner: {filename!r}",
                               type=INVALID_FILENAME, non_retryable=True)
    return posixpath.join(inbox or ".", filename)


def ensure_directory(ftp: ftplib.FTP, path: str) -> None:
    """Create ``path`` (and its parents) unless it exists."""
    try:
        ftp.cwd(path)
        return
    except ftplib.error_perm:
        pass
    current = "/" if path.startswith("/") else ""
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part) if current else part
        try:
            ftp.mkd(current)
        except ftplib.error_perm:  # exists already (or a race with another worker)
            pass
    ftp.cwd(path)  # raises if it still is not there


def remote_size(ftp: ftplib.FTP, path: str) -> int | None:
    """Size of the remote file in bytes, ``None`` when it does not exist."""
    try:
        return ftp.size(path)
    except ftplib.error_perm:  # 550: no such file
        return None


def upload_atomically(ftp: ftplib.FTP, path: str, content: bytes) -> None:
    """Store as ``path.part``, then rename: the partner sees the whole file or nothing.
    A stale ``.part`` from an earlier attempt is simply overwritten."""
    temporary = path + PART_SUFFIX
    ftp.storbinary(f"STOR {temporary}", io.BytesIO(content))
    try:
        ftp.rename(temporary, path)
    except ftplib.error_perm:
        # Some servers refuse to rename onto an existing file (here: a stale copy of
        # another size); replace it.
        if remote_size(ftp, path) is None:
            raise
        ftp.delete(path)
        ftp.rename(temporary, path)
