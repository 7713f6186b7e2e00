"""PartnerActivities.hand_off against a real FTP drop on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.partners import PartnerActivities
from models.activities import HandOffInput
from models.tables import Document, Upload
from settings import Partner, Settings
from starter.embedded import FtpDrop
from tests.conftest import free_port
from tests.fixtures_partners import make_document

XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<ORDER version="2.1">\xc3\xa4</ORDER>\n'
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"  # binary, 10 kB


def documents(engine: Engine) -> tuple[str, list[Document]]:
    order_id = f"webshop-{uuid.uuid4().hex[:10]}"
    docs = [
        make_document(engine, order_id, kind="order_xml", filename=f"{order_id}-S1-order.xml",
                      media_type="application/xml", content=XML),
        make_document(engine, order_id, kind="delivery_note",
                      filename=f"{order_id}-S1-delivery-note.pdf", media_type="application/pdf",
                      content=PDF),
    ]
    return order_id, docs


def hand_off_input(order_id: str, docs: list[Document]) -> HandOffInput:
    return HandOffInput(order_id=order_id, shipment_id=f"{order_id}-S1",
                        document_ids=[d.document_id for d in docs])


def uploads(engine: Engine, order_id: str) -> list[Upload]:
    with Session(engine) as session:
        return list(session.exec(select(Upload).where(Upload.order_id == order_id)).all())


def inbox_files(ftp_drop: FtpDrop, inbox: str = "inbox") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((ftp_drop.root / inbox).iterdir())}


def test_hand_off_delivers_whole_files_into_the_inbox(
        engine: Engine, partner_settings: Settings, ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(engine)
    assert not (ftp_drop.root / "inbox").exists()  # created on the way

    result = PartnerActivities(engine, partner_settings).hand_off(hand_off_input(order_id, docs))

    assert result.partner == "fulfillment"
    assert result.files == [f"/inbox/{d.filename}" for d in docs]
    assert inbox_files(ftp_drop) == {d.filename: d.content for d in docs}  # no .part left
    assert sorted(Path(p).name for p in ftp_drop.received) == sorted(
        f"{d.filename}.part" for d in docs)  # stored under the temporary name, then renamed
    assert sorted(u.remote_path for u in uploads(engine, order_id)) == sorted(result.files)


def test_second_hand_off_uploads_nothing(engine: Engine, partner_settings: Settings,
                                               ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(engine)
    partners = PartnerActivities(engine, partner_settings)
    first = partners.hand_off(hand_off_input(order_id, docs))
    stored = len(ftp_drop.received)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (ftp_drop.root / "inbox").iterdir()}

    again = partners.hand_off(hand_off_input(order_id, docs))

    assert again == first
    assert len(ftp_drop.received) == stored
    assert {p.name: p.stat().st_mtime_ns for p in (ftp_drop.root / "inbox").iterdir()} == mtimes
    assert len(uploads(engine, order_id)) == 2


def test_crash_after_rename_is_recorded_without_a_new_upload(
        engine: Engine, partner_settings: Settings, ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(engine)
    inbox = ftp_drop.root / "inbox"
    inbox.mkdir()
    (inbox / docs[0].filename).write_bytes(docs[0].content)  # arrived, but no Upload row

    PartnerActivities(engine, partner_settings).hand_off(hand_off_input(order_id, docs))

    assert [Path(p).name for p in ftp_drop.received] == [f"{docs[1].filename}.part"]
    assert inbox_files(ftp_drop) == {d.filename: d.content for d in docs}
    assert len(uploads(engine, order_id)) == 2


def test_stale_part_and_truncated_file_are_replaced(
        sqlite_engine: Engine, partner_settings: Settings, ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(sqlite_engine)
    inbox = ftp_drop.root / "inbox"
    inbox.mkdir()
    (inbox / f"{docs[0].filename}.part").write_bytes(b"<?xml")  # a crash during STOR
    (inbox / docs[1].filename).write_bytes(docs[1].content[:100])  # not ours, wrong size

    PartnerActivities(sqlite_engine, partner_settings).hand_off(hand_off_input(order_id, docs))

    assert inbox_files(ftp_drop) == {d.filename: d.content for d in docs}


def test_nested_inbox_is_created(sqlite_engine: Engine, partner_settings: Settings,
                                       ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(sqlite_engine)
    settings = partner_settings.model_copy(update={"partner": partner_settings.partner.model_copy(
        update={"inbox": "/partner/in"})})

    result = PartnerActivities(sqlite_engine, settings).hand_off(hand_off_input(order_id, docs))

    assert result.files == [f"/partner/in/{d.filename}" for d in docs]
    assert inbox_files(ftp_drop, "partner/in") == {d.filename: d.content for d in docs}


def test_ftp_down_raises_a_retryable_error(sqlite_engine: Engine,
                                                 partner_settings: Settings) -> None:
    order_id, docs = documents(sqlite_engine)
    down = partner_settings.model_copy(update={"partner": Partner(
        host="127.0.0.1", port=free_port(), user="partner", password="x")})

    with pytest.raises(OSError) as failure:
        PartnerActivities(sqlite_engine, down).hand_off(hand_off_input(order_id, docs))
    assert not isinstance(failure.value, ApplicationError)  # Temporal retries it
    assert uploads(sqlite_engine, order_id) == []


def test_wrong_password_raises_a_retryable_error(
        sqlite_engine: Engine, partner_settings: Settings, ftp_drop: FtpDrop) -> None:
    order_id, docs = documents(sqlite_engine)
    wrong = partner_settings.model_copy(update={"partner": partner_settings.partner.model_copy(
        update={"password": "falsch"})})

    with pytest.raises(Exception) as failure:
        PartnerActivities(sqlite_engine, wrong).hand_off(hand_off_input(order_id, docs))
    assert not isinstance(failure.value, ApplicationError)  # fix the config, the retry works
    assert ftp_drop.received == []


def test_unknown_document_is_non_retryable(sqlite_engine: Engine,
                                                 partner_settings: Settings,
                                                 ftp_drop: FtpDrop) -> None:
    with pytest.raises(ApplicationError) as failure:
        PartnerActivities(sqlite_engine, partner_settings).hand_off(HandOffInput(
            order_id="webshop-x", shipment_id="webshop-x-S1", document_ids=["webshop-x-nope"]))
    assert (failure.value.type, failure.value.non_retryable) == ("DocumentMissing", True)
    assert ftp_drop.received == []
