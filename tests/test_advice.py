"""Shipping advice: the DISPATCHNOTIFICATION builder and safe parser, and AdviceActivities
against a real FTP drop on loopback (list, read, archive or reject, each content once)."""

from __future__ import annotations

import ftplib
import hashlib
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

import activities.advice as advice_module
import activities.safexml as safexml
from activities.advice import AdviceActivities
from activities.dispatch import (
    MAX_ADVICE_BYTES,
    AdviceError,
    DispatchedOrder,
    build_combined_dispatch_notification,
    build_dispatch_notification,
    parse_dispatch_notification,
)
from activities.opentrans import OPENTRANS_NS, SCHEMA_PATH
from models.activities import (
    AdviceConfirmation,
    AdviceFile,
    FinishAdviceInput,
    ReadAdviceInput,
    ReadAdviceResult,
)
from models.tables import ImportedFile
from settings import Partner, Settings
from starter.embedded import FtpDrop
from tests.conftest import free_port

SHIPPED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NS = {"ot": OPENTRANS_NS}


def unique() -> str:
    return uuid.uuid4().hex[:10]


def advice(order_id: str | None = None, *, tracking: str = "JJD000111",
           shipment_id: str | None = "S1") -> bytes:
    order_id = order_id or f"webshop-{unique()}"
    return build_dispatch_notification(
        notification_id=f"DN-{unique()}", order_id=order_id, shipment_id=shipment_id,
        carrier="DHL", tracking_number=tracking, shipped_at=SHIPPED,
        lines=[("TENT-2P", 1), ("MAT-1", 2)])


def xxe() -> bytes:
    return (f'<?xml version="1.0"?>\n<!-- {unique()} -->\n'
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
            "<DISPATCHNOTIFICATION>&e;</DISPATCHNOTIFICATION>\n").encode()


def billion_laughs() -> bytes:
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">{entities}]>\n'
            f"<lolz id='{unique()}'>&lol9;</lolz>\n").encode()


def broken() -> bytes:
    return f"<DISPATCHNOTIFICATION version='2.1'><unclosed id='{unique()}'>".encode()


def schema_invalid() -> bytes:
    return advice().replace(b"<QUANTITY>2</QUANTITY>", b"<QUANTITY>zwei</QUANTITY>")


def oversized() -> bytes:
    filler = b"<!-- " + b"x" * (11 * 1024 * 1024) + b" -->\n"
    return advice().replace(b"<DISPATCHNOTIFICATION_ITEM_LIST>",
                            filler + b"<DISPATCHNOTIFICATION_ITEM_LIST>")


# --- build and parse -------------------------------------------------------------------


def test_round_trip_with_several_orders_in_one_file() -> None:
    orders = [
        DispatchedOrder(order_id="webshop-1", shipment_id="webshop-1-1", carrier="DHL",
                        tracking_number="JJD000111", lines=[("TENT-2P", 1), ("MAT-1", 2)]),
        DispatchedOrder(order_id="webshop-2", shipment_id="webshop-2-1", carrier="DPD",
                        tracking_number="01234567", lines=[("LAMP-1", 1)]),
        DispatchedOrder(order_id="webshop-3", shipment_id=None, carrier="DHL",
                        tracking_number="JJD000333", lines=[("TENT-2P", 3)]),
    ]
    data = build_combined_dispatch_notification(notification_id="DN-7", shipped_at=SHIPPED,
                                                orders=orders)

    assert parse_dispatch_notification(data) == [
        AdviceConfirmation(order_id="webshop-1", shipment_id="webshop-1-1", carrier="DHL",
                           tracking_number="JJD000111", shipped_at=SHIPPED),
        AdviceConfirmation(order_id="webshop-2", shipment_id="webshop-2-1", carrier="DPD",
                           tracking_number="01234567", shipped_at=SHIPPED),
        AdviceConfirmation(order_id="webshop-3", shipment_id=None, carrier="DHL",
                           tracking_number="JJD000333", shipped_at=SHIPPED),
    ]


def test_built_document_validates_against_the_official_xsd() -> None:
    data = build_dispatch_notification(
        notification_id="DN-1", order_id="webshop-100234", shipment_id="webshop-100234-1",
        carrier="DHL", tracking_number="00340434161094042557", shipped_at=SHIPPED,
        lines=[("TENT-2P", 1)])

    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    root = etree.fromstring(data)
    assert schema.validate(root), schema.error_log
    assert root.tag == f"{{{OPENTRANS_NS}}}DISPATCHNOTIFICATION"
    info = "ot:DISPATCHNOTIFICATION_HEADER/ot:DISPATCHNOTIFICATION_INFO"
    assert root.findtext(f"{info}/ot:SHIPMENT_ID", namespaces=NS) == "webshop-100234-1"
    assert root.findtext(f"{info}/ot:DISPATCHNOTIFICATION_DATE",
                         namespaces=NS) == "2026-11-25T12:00:00Z"
    item = "ot:DISPATCHNOTIFICATION_ITEM_LIST/ot:DISPATCHNOTIFICATION_ITEM"
    assert root.findtext(f"{item}/ot:ORDER_REFERENCE/ot:ORDER_ID",
                         namespaces=NS) == "webshop-100234"
    assert root.findtext(f"{item}/ot:LOGISTIC_DETAILS/ot:PACKAGE_INFO/ot:PACKAGE/ot:PACKAGE_ID",
                         namespaces=NS) == "00340434161094042557"


def test_header_values_apply_to_every_order() -> None:
    """A partner that names carrier, tracking number and shipment only once, in the header."""
    root = etree.fromstring(advice("webshop-h", tracking="JJD000999", shipment_id=None))
    info = root.find("ot:DISPATCHNOTIFICATION_HEADER/ot:DISPATCHNOTIFICATION_INFO", NS)
    for item in root.iterfind(".//ot:DISPATCHNOTIFICATION_ITEM", NS):
        item.remove(item.find("ot:LOGISTIC_DETAILS", NS))
        refs = item.find("ot:SHIPMENT_PARTIES_REFERENCE", NS)
        refs.remove(refs.find("ot:DELIVERER_IDREF", NS))
    header_refs = info.find("ot:SHIPMENT_PARTIES_REFERENCE", NS)
    header_refs.remove(header_refs.find("ot:DELIVERER_IDREF", NS))  # the only deliverer party
    header_refs.addnext(etree.fromstring(
        f'<SHIPMENT_ID xmlns="{OPENTRANS_NS}">SHIP-9</SHIPMENT_ID>'))
    info.find("ot:SHIPMENT_ID", NS).addnext(etree.fromstring(
        f'<LOGISTIC_DETAILS_INFO xmlns="{OPENTRANS_NS}"><PACKAGE_INFO><PACKAGE>'
        '<PACKAGE_ID type="sscc">340123450000000018</PACKAGE_ID>'
        '<PACKAGE_ID type="deliverer_specific">JJD000999</PACKAGE_ID>'
        "</PACKAGE></PACKAGE_INFO></LOGISTIC_DETAILS_INFO>"))

    assert parse_dispatch_notification(etree.tostring(root)) == [AdviceConfirmation(
        order_id="webshop-h", shipment_id="SHIP-9", carrier="DHL",
        tracking_number="JJD000999", shipped_at=SHIPPED)]


@pytest.mark.parametrize(("make", "reason"), [
    (broken, "not well-formed XML"),
    (xxe, "DOCTYPE"),
    (billion_laughs, "DOCTYPE"),
    (oversized, "over the limit"),
    (schema_invalid, "does not validate"),
    (lambda: b"", "not well-formed XML"),
    (lambda: advice(tracking="JJD 111"), "tracking_number"),
], ids=["broken", "xxe", "billion-laughs", "11MB", "schema-invalid", "empty", "bad-tracking"])
def test_unusable_files_raise_advice_error(make: Any, reason: str) -> None:
    with pytest.raises(AdviceError) as failure:
        parse_dispatch_notification(make())
    assert reason in failure.value.reason


def test_schema_errors_name_the_line() -> None:
    with pytest.raises(AdviceError, match=r"line \d+: .*QUANTITY.*'zwei'"):
        parse_dispatch_notification(schema_invalid())


def test_a_missing_tracking_number_is_refused() -> None:
    data = re.sub(rb"\s*<LOGISTIC_DETAILS>.*?</LOGISTIC_DETAILS>", b"", advice("webshop-t"),
                  flags=re.S)
    with pytest.raises(AdviceError, match="order webshop-t: no tracking number"):
        parse_dispatch_notification(data)


def test_doctype_is_refused_even_past_the_byte_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser's own check (no DTD at all) holds when the quick byte scan is bypassed."""
    monkeypatch.setattr(safexml, "_DOCTYPE_MARKERS", ())
    for data in (xxe(), billion_laughs()):
        with pytest.raises(AdviceError, match=r"DOCTYPE|well-formed"):
            parse_dispatch_notification(data)


def test_other_opentrans_documents_are_refused() -> None:
    order = (f'<ORDER xmlns="{OPENTRANS_NS}" version="2.1"><ORDER_HEADER/></ORDER>').encode()
    with pytest.raises(AdviceError):
        parse_dispatch_notification(order)


# --- the activities against a real FTP drop ------------------------------------------


def drop(ftp_drop: FtpDrop, name: str, content: bytes, folder: str = "outbox") -> Path:
    """The partner puts a file on its FTP server."""
    directory = ftp_drop.root / folder
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(content)
    return directory / name


def files(ftp_drop: FtpDrop, folder: str) -> dict[str, bytes]:
    directory = ftp_drop.root / folder
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def imported(engine: Engine, sha256: str) -> list[ImportedFile]:
    with Session(engine) as session:
        return list(session.exec(select(ImportedFile).where(
            ImportedFile.sha256 == sha256)).all())


def test_list_returns_advice_files_oldest_first(partner_settings: Settings,
                                                ftp_drop: FtpDrop, sqlite_engine: Engine) -> None:
    activities = AdviceActivities(sqlite_engine, partner_settings)
    assert activities.list_advice_files() == []
    assert (ftp_drop.root / "outbox").is_dir()  # created on the way

    for name in ("DN-0002.xml", "DN-0001.xml", "DN-0003.XML", "DN-0004.xml.part",
                 ".DN-0005.xml", "readme.txt"):
        drop(ftp_drop, name, b"<x/>")
    (ftp_drop.root / "outbox" / "folder.xml").mkdir()

    assert activities.list_advice_files() == ["DN-0001.xml", "DN-0002.xml", "DN-0003.XML"]


def test_read_and_archive_each_content_once(partner_settings: Settings, ftp_drop: FtpDrop,
                                            engine: Engine) -> None:
    activities = AdviceActivities(engine, partner_settings)
    order_id = f"webshop-{unique()}"
    content = advice(order_id)
    drop(ftp_drop, "DN-0001.xml", content)

    result = activities.read_advice_file(ReadAdviceInput(name="DN-0001.xml"))

    sha256 = hashlib.sha256(content).hexdigest()
    assert result == ReadAdviceResult(
        file=AdviceFile(name="DN-0001.xml", sha256=sha256, size=len(content)),
        already_done=False, error=None, confirmations=[AdviceConfirmation(
            order_id=order_id, shipment_id="S1", carrier="DHL", tracking_number="JJD000111",
            shipped_at=SHIPPED)])
    assert ReadAdviceResult.model_validate_json(result.model_dump_json()) == result  # payload
    assert imported(engine, sha256) == []  # nothing recorded before finish

    finish = FinishAdviceInput(file=result.file, outcome="archived", detail="1 confirmation")
    activities.finish_advice_file(finish)
    activities.finish_advice_file(finish)  # a retry: nothing moves, nothing doubles

    assert files(ftp_drop, "archive") == {"DN-0001.xml": content}
    assert files(ftp_drop, "outbox") == {}
    [row] = imported(engine, sha256)
    assert (row.partner, row.name, row.outcome, row.detail) == (
        "fulfillment", "DN-0001.xml", "archived", "1 confirmation")
    assert activities.list_advice_files() == []

    drop(ftp_drop, "DN-0001-again.xml", content)  # the partner sends it again
    again = activities.read_advice_file(ReadAdviceInput(name="DN-0001-again.xml"))
    assert (again.already_done, again.confirmations, again.error) == (True, [], None)
    assert again.file.sha256 == sha256


def test_a_vanished_file_is_already_done(partner_settings: Settings, ftp_drop: FtpDrop,
                                         sqlite_engine: Engine) -> None:
    result = AdviceActivities(sqlite_engine, partner_settings).read_advice_file(
        ReadAdviceInput(name="gone.xml"))
    assert result.already_done
    AdviceActivities(sqlite_engine, partner_settings).finish_advice_file(
        FinishAdviceInput(file=result.file, outcome="archived"))  # harmless


def test_finish_after_a_crash_between_move_and_record(
        partner_settings: Settings, ftp_drop: FtpDrop, engine: Engine) -> None:
    content = advice()
    file = AdviceFile(name="DN-crash.xml", sha256=hashlib.sha256(content).hexdigest(),
                      size=len(content))
    drop(ftp_drop, "DN-crash.xml", content, folder="archive")  # moved, then the worker died

    AdviceActivities(engine, partner_settings).finish_advice_file(
        FinishAdviceInput(file=file, outcome="archived"))

    assert files(ftp_drop, "archive") == {"DN-crash.xml": content}
    assert [row.outcome for row in imported(engine, file.sha256)] == ["archived"]


def test_a_taken_archive_name_gets_the_digest(partner_settings: Settings, ftp_drop: FtpDrop,
                                              engine: Engine) -> None:
    activities = AdviceActivities(engine, partner_settings)
    drop(ftp_drop, "advice.xml", b"yesterday's file", folder="archive")
    contents = [advice(), advice()]
    names = []
    for content in contents:  # the partner reuses one name every day
        drop(ftp_drop, "advice.xml", content)
        result = activities.read_advice_file(ReadAdviceInput(name="advice.xml"))
        activities.finish_advice_file(FinishAdviceInput(file=result.file, outcome="archived"))
        names.append(f"advice-{result.file.sha256[:12]}.xml")

    assert files(ftp_drop, "archive") == {"advice.xml": b"yesterday's file",
                                          names[0]: contents[0], names[1]: contents[1]}


def test_a_replaced_file_stays_for_the_next_run(partner_settings: Settings,
                                                ftp_drop: FtpDrop, engine: Engine) -> None:
    activities = AdviceActivities(engine, partner_settings)
    drop(ftp_drop, "DN-r.xml", advice())
    result = activities.read_advice_file(ReadAdviceInput(name="DN-r.xml"))
    newer = advice(shipment_id="a-longer-shipment-id")
    drop(ftp_drop, "DN-r.xml", newer)  # overwritten between read and finish

    activities.finish_advice_file(FinishAdviceInput(file=result.file, outcome="archived"))

    assert files(ftp_drop, "outbox") == {"DN-r.xml": newer}
    assert len(imported(engine, result.file.sha256)) == 1
    assert activities.read_advice_file(ReadAdviceInput(name="DN-r.xml")).confirmations


@pytest.mark.parametrize("make", [broken, xxe, billion_laughs, schema_invalid, oversized],
                         ids=["broken", "xxe", "billion-laughs", "schema-invalid", "11MB"])
def test_bad_files_are_reported_then_moved_to_error(
        make: Any, partner_settings: Settings, ftp_drop: FtpDrop, engine: Engine) -> None:
    activities = AdviceActivities(engine, partner_settings)
    name = f"bad-{unique()}.xml"
    content = make()
    drop(ftp_drop, name, content)

    result = activities.read_advice_file(ReadAdviceInput(name=name))

    assert not result.already_done and result.confirmations == []
    assert result.error
    assert (result.file.name, result.file.size) == (name, len(content))
    assert imported(engine, result.file.sha256) == []  # not recorded until finished
    assert name in files(ftp_drop, "outbox")

    activities.finish_advice_file(FinishAdviceInput(file=result.file, outcome="rejected",
                                                    detail=result.error))

    assert files(ftp_drop, "outbox") == {}
    assert files(ftp_drop, "error") == {name: content}
    [row] = imported(engine, result.file.sha256)
    assert (row.outcome, row.detail) == ("rejected", result.error)

    drop(ftp_drop, f"again-{name}", content)  # the partner sends it once more
    again = activities.read_advice_file(ReadAdviceInput(name=f"again-{name}"))
    assert not again.already_done and again.error == result.error
    activities.finish_advice_file(FinishAdviceInput(file=again.file, outcome="rejected",
                                                    detail=again.error))
    assert files(ftp_drop, "outbox") == {}
    assert files(ftp_drop, "error") == {name: content, f"again-{name}": content}


def test_a_rejected_content_imported_later_is_recorded_once(engine: Engine) -> None:
    sha256 = hashlib.sha256(unique().encode()).hexdigest()

    assert advice_module.record_import(engine, "p", "a.xml", sha256, "rejected", "kaputt")
    assert not advice_module.was_imported(engine, "p", sha256)  # read again when resent
    assert not advice_module.record_import(engine, "p", "a.xml", sha256, "rejected", "kaputt")
    assert advice_module.record_import(engine, "p", "b.xml", sha256, "archived", "3 rows")
    assert advice_module.was_imported(engine, "p", sha256)
    assert not advice_module.record_import(engine, "p", "c.xml", sha256, "archived", "")
    assert not advice_module.record_import(engine, "p", "d.xml", sha256, "rejected", "")
    [row] = imported(engine, sha256)
    assert (row.name, row.outcome, row.detail) == ("b.xml", "archived", "3 rows")


def test_an_oversized_file_is_not_downloaded(partner_settings: Settings, ftp_drop: FtpDrop,
                                             sqlite_engine: Engine,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    drop(ftp_drop, "huge.xml", b"\0" * (MAX_ADVICE_BYTES + 1))

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("downloaded")

    monkeypatch.setattr(ftplib.FTP, "retrbinary", no_download)
    result = AdviceActivities(sqlite_engine, partner_settings).read_advice_file(
        ReadAdviceInput(name="huge.xml"))
    assert result.error == (f"file is {MAX_ADVICE_BYTES + 1} bytes, over the limit of "
                            f"{MAX_ADVICE_BYTES}")


def test_a_file_growing_past_the_limit_is_read_again(
        partner_settings: Settings, ftp_drop: FtpDrop, sqlite_engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    drop(ftp_drop, "growing.xml", b" " * (MAX_ADVICE_BYTES + 1))
    monkeypatch.setattr(advice_module, "remote_size", lambda ftp, path: 100)  # SIZE was small

    with pytest.raises(RuntimeError, match="grew past") as failure:
        AdviceActivities(sqlite_engine, partner_settings).read_advice_file(
            ReadAdviceInput(name="growing.xml"))
    assert not isinstance(failure.value, ApplicationError)  # Temporal retries it


def test_ftp_down_is_retryable_and_a_bad_name_is_not(partner_settings: Settings,
                                                     sqlite_engine: Engine) -> None:
    down = partner_settings.model_copy(update={"partner": Partner(
        host="127.0.0.1", port=free_port(), user="partner", password="x")})
    with pytest.raises(OSError) as failure:
        AdviceActivities(sqlite_engine, down).read_advice_file(ReadAdviceInput(name="DN-1.xml"))
    assert not isinstance(failure.value, ApplicationError)

    with pytest.raises(ApplicationError) as bad:
        AdviceActivities(sqlite_engine, partner_settings).read_advice_file(
            ReadAdviceInput(name="../etc/passwd"))
    assert (bad.value.type, bad.value.non_retryable) == ("InvalidFilename", True)
