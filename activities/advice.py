"""Shipping advice from the partner's FTP outbox: list, read, then archive or reject each file.

The import workflow calls, per run: ``list_advice_files``, then for each name
``read_advice_file`` and, after it signalled the orders (or opened a ticket),
``finish_advice_file``. Every file's content is processed once:

1. A file is identified by the SHA-256 of its content. ``finish_advice_file`` records it in
   ``imported_file`` (unique per partner and digest), so the same content is skipped
   (``already_done``) even when the partner uploads it again under another name. A
   rejected content is read again (and rejected again, or applied if it now can be).
2. ``finish_advice_file`` first moves the file (outbox → archive or error folder), then
   writes the row. A retry after a crash between the two finds the file gone and only
   writes the row; a duplicate row from a concurrent run is the same outcome.
3. A file that disappears between listing and reading was finished by another run:
   ``already_done`` too.

Bad content never raises: ``read_advice_file`` returns ``error`` (the workflow rejects the
file with a ticket). A file over ``MAX_ADVICE_BYTES`` by SIZE is refused without
downloading it; its identity is then the digest of its name, size and modification time.
FTP, network and database errors propagate, so Temporal retries; an unusable file name is a
non-retryable ``ApplicationError(type="InvalidFilename")``.
"""

from __future__ import annotations

import ftplib
import hashlib
import itertools
import posixpath

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.advice_csv import parse_csv_advice
from activities.dispatch import MAX_ADVICE_BYTES, AdviceError, parse_dispatch_notification
from activities.partners import (
    PART_SUFFIX,
    connect,
    ensure_directory,
    remote_path,
    remote_size,
)
from models.activities import (
    AdviceFile,
    FinishAdviceInput,
    ReadAdviceInput,
    ReadAdviceResult,
)
from models.tables import ImportedFile, utcnow
from settings import Partner, Settings

__all__ = ["ADVICE_SUFFIXES", "AdviceActivities", "ensure_folder", "fetch_file", "file_names",
           "free_name", "move_file", "record_import", "was_imported"]

REJECTED = "rejected"  # imported_file.outcome of a file that could not be used
ADVICE_SUFFIXES = (".xml", ".csv")  # openTRANS DISPATCHNOTIFICATION, the CSV variant
_NAME_LIMIT = 255  # imported_file.name


class _TooLarge(Exception):
    """The download passed ``MAX_ADVICE_BYTES`` (the file grew after SIZE, or SIZE lied)."""


class AdviceActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    def ftp_partners(self) -> list[str]:
        """The codes of the partners whose shipping advice and stock lists come by FTP."""
        return sorted(code for code, partner in self.settings.all_partners().items()
                      if partner.return_channel == "ftp")

    @activity.defn
    def list_advice_files(self, partner_code: str | None = None) -> list[str]:
        """Names of the ``*.xml`` and ``*.csv`` files in the partner's outbox, by name.
        Creates the outbox if it is missing; ``.part`` and hidden files are left alone."""
        partner = self.settings.partner_for(partner_code)
        with connect(partner) as ftp:
            ensure_folder(ftp, partner.outbox)
            names = file_names(ftp, partner.outbox)
        return sorted(name for name in names if _is_advice(partner, name))

    @activity.defn
    def read_advice_file(self, input: ReadAdviceInput) -> ReadAdviceResult:
        """Download and parse one file; ``already_done`` when its content was imported
        before or the file is gone, ``error`` when it cannot be used."""
        partner = self.settings.partner_for(input.partner)
        path = remote_path(partner.outbox, input.name)
        with connect(partner) as ftp:
            fetched = fetch_file(ftp, path, input.name)
        if fetched is None:
            return _gone(input.name)
        file, data = fetched
        file.partner = input.partner
        if was_imported(self.engine, partner.code, file.sha256):
            return ReadAdviceResult(file=file, already_done=True)
        if data is None:
            return ReadAdviceResult(file=file, already_done=False, error=(
                f"file is {file.size} bytes, over the limit of {MAX_ADVICE_BYTES}"))
        try:
            parse = (parse_csv_advice if input.name.lower().endswith(".csv")
                     else parse_dispatch_notification)
            confirmations = parse(data)
        except AdviceError as exc:
            return ReadAdviceResult(file=file, already_done=False, error=exc.reason)
        return ReadAdviceResult(file=file, already_done=False, confirmations=confirmations)

    @activity.defn
    def finish_advice_file(self, input: FinishAdviceInput) -> None:
        """Move the file to the archive (``archived``) or error folder (``rejected``), under
        a new name if the target exists, then record its content as imported. Idempotent."""
        partner = self.settings.partner_for(input.file.partner)
        file = input.file
        if not file.sha256:  # it had vanished when read: nothing to move or record
            return
        source = remote_path(partner.outbox, file.name)
        folder = partner.archive if input.outcome == "archived" else partner.error_dir
        with connect(partner) as ftp:
            # Gone: an earlier attempt (or another run) moved it. Another size: the partner
            # replaced it since we read it; the new content waits for the next run.
            if remote_size(ftp, source) == file.size:
                ensure_folder(ftp, folder)
                move_file(ftp, source, free_name(ftp, folder, file))
        record_import(self.engine, partner.code, file.name, file.sha256, input.outcome,
                      input.detail)


# --- imported files ------------------------------------------------------------------


def record_import(engine: Engine, source: str, name: str, sha256: str, outcome: str,
                  detail: str) -> bool:
    """Record a processed file once per (source, content); False when it was already (an
    earlier attempt or another run recorded it: the same outcome). A content rejected
    before and imported now (sent again after staff fixed, say, the master data) turns
    from ``rejected`` into the new outcome."""
    with Session(engine) as session:
        session.add(ImportedFile(partner=source[:64], name=name[:_NAME_LIMIT], sha256=sha256,
                                 outcome=outcome, detail=detail[:2000]))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
        else:
            return True
        if outcome == REJECTED:
            return False
        earlier = session.exec(select(ImportedFile).where(
            ImportedFile.partner == source[:64], ImportedFile.sha256 == sha256,
            ImportedFile.outcome == REJECTED).with_for_update()).first()
        if earlier is None:
            return False
        earlier.name, earlier.outcome, earlier.detail = name[:_NAME_LIMIT], outcome, detail[:2000]
        earlier.imported_at = utcnow()
        session.add(earlier)
        session.commit()
    return True


def was_imported(engine: Engine, source: str, sha256: str) -> bool:
    """Whether this content was imported before. A content that was rejected is not: it is
    read again (a broken file is rejected again, to the error folder, under the ticket it
    had; one that fails no longer, e.g. after a master-data fix, is applied)."""
    with Session(engine) as session:
        return session.exec(select(ImportedFile.id).where(
            ImportedFile.partner == source[:64], ImportedFile.sha256 == sha256,
            ImportedFile.outcome != REJECTED)).first() is not None


# --- FTP -------------------------------------------------------------------------------


def ensure_folder(ftp: ftplib.FTP, path: str) -> None:
    """``ensure_directory``, then back to the login directory (relative paths stay valid)."""
    home = ftp.pwd()
    ensure_directory(ftp, path)
    ftp.cwd(home)


def file_names(ftp: ftplib.FTP, directory: str) -> list[str]:
    """Plain names of the files in ``directory`` (MLSD; NLST where it is not supported)."""
    try:
        return [name for name, facts in ftp.mlsd(directory, facts=["type"])
                if facts.get("type", "file").lower() == "file"]
    except ftplib.error_perm as exc:
        if not str(exc).startswith(("500", "502", "504")):  # not "command not supported"
            raise
    try:
        return [posixpath.basename(name) for name in ftp.nlst(directory)]
    except ftplib.error_perm as exc:  # some servers answer an empty listing with 550
        if str(exc).startswith("550"):
            return []
        raise


def _is_advice(partner: Partner, name: str) -> bool:
    if (not name.lower().endswith(ADVICE_SUFFIXES) or name.endswith(PART_SUFFIX)
            or name.startswith(".")):
        return False
    try:
        remote_path(partner.outbox, name)
    except ApplicationError:  # a name we could not address again: leave it to a human
        activity.logger.warning("ignoring unusable file name in the outbox: %r", name)
        return False
    return True


def fetch_file(ftp: ftplib.FTP, path: str, name: str, *, limit: int = MAX_ADVICE_BYTES,
               ) -> tuple[AdviceFile, bytes | None] | None:
    """The file and its bytes; no bytes (not downloaded) when SIZE says it is over
    ``limit``; ``None`` when it is gone."""
    size = remote_size(ftp, path)
    if size is None:
        return None
    if size > limit:
        return AdviceFile(name=name, sha256=_oversized_key(ftp, path, name, size),
                          size=size), None
    chunks: list[bytes] = []
    seen = 0

    def collect(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge
        chunks.append(chunk)

    try:
        ftp.retrbinary(f"RETR {path}", collect)
    except _TooLarge:
        ftp.close()  # the transfer was cut off: no orderly QUIT on this connection
        raise RuntimeError(f"{path} grew past {limit} bytes while it was "
                           "downloaded (still being written?); reading it again") from None
    except ftplib.error_perm:
        if remote_size(ftp, path) is None:  # finished by another run meanwhile
            return None
        raise
    data = b"".join(chunks)
    return AdviceFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)), data


def _oversized_key(ftp: ftplib.FTP, path: str, name: str, size: int) -> str:
    """Identity of a file too large to download: its name, size and modification time, so
    one upload is rejected once and a new upload of it is rejected again."""
    try:
        modified = ftp.voidcmd(f"MDTM {path}").removeprefix("213").strip()
    except ftplib.error_perm:
        modified = ""
    return hashlib.sha256(f"oversized\0{name}\0{size}\0{modified}".encode()).hexdigest()


def free_name(ftp: ftplib.FTP, folder: str, file: AdviceFile) -> str:
    """``folder/name``, or ``folder/stem-<sha256 prefix>[-n].ext`` if that is taken."""
    stem, ext = posixpath.splitext(file.name)
    tag = file.sha256[:12]
    candidates = itertools.chain([file.name, f"{stem}-{tag}{ext}"],
                                 (f"{stem}-{tag}-{n}{ext}" for n in itertools.count(2)))
    for candidate in candidates:
        target = posixpath.join(folder, candidate)
        if remote_size(ftp, target) is None:
            return target
    raise AssertionError("unreachable")  # pragma: no cover


def move_file(ftp: ftplib.FTP, source: str, target: str) -> None:
    try:
        ftp.rename(source, target)
    except ftplib.error_perm:
        if remote_size(ftp, source) is None:  # a concurrent run moved it first
            return
        raise


def _gone(name: str) -> ReadAdviceResult:
    return ReadAdviceResult(file=AdviceFile(name=name, sha256="", size=0), already_done=True)
