"""Loopback partner servers for tests: the SMTP catcher, the FTP drop, and settings for both.

Each test gets servers of its own on free ports with empty folders, so counts of mails
and files are per test. Loaded as a pytest plugin from conftest.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from models.tables import Document
from settings import Partner, Settings
from starter.embedded import FtpDrop, MailCatcher
from tests.conftest import free_port

LOOPBACK = "127.0.0.1"
FTP_USER = "partner"
FTP_PASSWORD = "geheim-test"  # a throwaway loopback server


@pytest.fixture
def mail_catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    """A running SMTP catcher; ``.port``, ``.directory``, ``.messages()`` (oldest first)."""
    catcher = MailCatcher(LOOPBACK, free_port(), tmp_path / "mail")
    with catcher:
        yield catcher


@pytest.fixture
def ftp_drop(tmp_path: Path) -> Iterator[FtpDrop]:
    """A running FTP drop; ``.port``, ``.root``, ``.user``, ``.password``, ``.received``."""
    drop = FtpDrop(LOOPBACK, 0, tmp_path / "ftp", FTP_USER, FTP_PASSWORD)  # 0: the OS picks
    drop.auth_failed_delay = 0.1
    with drop:
        yield drop


SUPPLIER = "supplier"
SECOND_3PL = "nord3pl"


@pytest.fixture
def partner_settings(mail_catcher: MailCatcher, ftp_drop: FtpDrop, sqlite_url: str,
                     tmp_path: Path) -> Settings:
    """Settings that send mail to ``mail_catcher`` and hand off to ``ftp_drop``."""
    return Settings(
        smtp_host=LOOPBACK,
        smtp_port=mail_catcher.port,
        smtp_user=None,
        smtp_password=None,
        smtp_starttls=False,
        mail_dir=mail_catcher.directory,
        partner=Partner(host=LOOPBACK, port=ftp_drop.port, user=ftp_drop.user,
                           password=ftp_drop.password),
        ftp_root=ftp_drop.root,
        database_url=sqlite_url,
        temporal_db=tmp_path / "temporal.db",
        order_export_dir=tmp_path / "exports",
        # the supplier of the dropship SKUs some tests put into the shared catalog
        partners={
            SUPPLIER: Partner(code=SUPPLIER, channel="email", format="pdf",
                              email="auftrag@lieferant.example", return_channel="api",
                              sla=timedelta(seconds=3)),
            # a second 3PL on the same FTP server, in folders of its own
            SECOND_3PL: Partner(code=SECOND_3PL, host=LOOPBACK, port=ftp_drop.port,
                                user=ftp_drop.user, password=ftp_drop.password,
                                inbox="/nord/inbox", outbox="/nord/outbox",
                                archive="/nord/archive", error_dir="/nord/error",
                                stock_dir="/nord/stock"),
        },
    )


def make_document(engine: Engine, order_id: str, *, kind: str, filename: str, media_type: str,
                  content: bytes, number: str | None = None) -> Document:
    """Store a ``Document`` row as the documents activity would, and return it."""
    doc = Document(document_id=f"{order_id}-{kind}", order_id=order_id, key=kind, kind=kind,
                   number=number, filename=filename, media_type=media_type,
                   sha256=hashlib.sha256(content).hexdigest(), content=content)
    with Session(engine) as session:
        session.add(doc)
        session.commit()
        session.refresh(doc)
        session.expunge(doc)
    return doc
