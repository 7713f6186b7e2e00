"""DATEV EXTF Buchungsstapel: the file checked field by field against the format description
(header, 125 columns, types, quoting, encoding, line ends), the bookings of invoices, credit
notes and payments from the database, a round trip, and the export workflow."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from activities.credit_notes import CreditNoteActivities
from activities.datev import datev_bookings, previous_month
from activities.documents import DocumentActivities
from models.activities import CreditNoteInput, DocumentInput, ExportDatevInput
from models.credit import CreditNoteIn
from models.datev import COLUMNS, HEADER_FIELDS, HEADER_TEXT, Booking, DatevConfig, build_extf
from models.tables import Payment
from models.tax import TaxConfig
from settings import Settings
from tests.helpers import FAST, Stack, running_stack
from tests.test_documents import make_order
from workflows.jobs import DatevExportWorkflow

NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def fields_of(line: str) -> list[str]:
    """The raw fields of a line (quotes kept), splitting on ``;`` outside quotes."""
    fields, current, quoted = [], "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]


def check_format(content: bytes, config: DatevConfig) -> list[dict[str, str]]:
    """Assert the EXTF format; return the bookings as dicts of column name -> value."""
    text = content.decode("cp1252")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    header = fields_of(lines[0])
    assert len(header) == HEADER_FIELDS
    assert header[:5] == ['"EXTF"', "700", "21", '"Buchungsstapel"', "13"]
    assert re.fullmatch(r"\d{17}", header[5])
    assert (header[10], header[11]) == (str(config.consultant_number), str(config.client_number))
    assert re.fullmatch(r"\d{8}", header[12]) and header[13] == str(config.account_length)
    assert all(header[i - 1].startswith('"') for i in HEADER_TEXT)
    assert header[26] == config.chart[-2:]
    assert fields_of(lines[1]) == [name for name, _ in COLUMNS]
    rows = []
    for line in lines[2:]:
        raw = fields_of(line)
        assert len(raw) == len(COLUMNS) == 125
        for (name, is_text), value in zip(COLUMNS, raw, strict=True):
            if is_text:
                assert re.fullmatch(r'"[^"]*"', value), (name, value)
            else:
                assert '"' not in value, (name, value)
        values = dict(zip([n for n, _ in COLUMNS], next(csv.reader(
            io.StringIO(line), delimiter=";", quotechar='"')), strict=True))
        assert re.fullmatch(r"\d{1,10},\d{2}", values["Umsatz (ohne Soll/Haben-Kz)"])
        assert values["Soll/Haben-Kennzeichen"] in ("S", "H")
        assert re.fullmatch(r"\d{4}", values["Belegdatum"])
        assert re.fullmatch(r"\d{4,9}", values["Konto"])
        assert re.fullmatch(r"\d{4,9}", values["Gegenkonto (ohne BU-Schlüssel)"])
        assert re.fullmatch(r"[A-Za-z0-9$&%*+\-/]{1,36}", values["Belegfeld 1"])
        assert len(values["Buchungstext"]) <= 60
        rows.append(values)
    return rows


def test_file_follows_the_format_description() -> None:
    config = DatevConfig(consultant_number=4711, client_number=42, chart="SKR04")
    bookings = [
        Booking(amount=Decimal("1234.5"), side="S", account=10000, contra_account=4400,
                booked_on=date(2026, 11, 3), document="RE-2026-000001",
                text='Rechnung "RE-2026-000001" Jörg Müller; Straße ' + "x" * 80,
                order_id="webshop-1"),
        Booking(amount=Decimal("7.00"), side="H", account=10000, contra_account=4300,
                booked_on=date(2026, 11, 30), document="GS 2026/000001 ✓",
                text="Gutschrift 🙂"),
        Booking(amount=Decimal("9.90"), side="S", account=10000, contra_account=4400,
                booked_on=date(2026, 11, 30), document="RE-2026-000002",
                text="Rechnung Łukasz Dvořák"),
    ]

    content = build_extf(bookings, config, period_from=date(2026, 11, 1),
                         period_to=date(2026, 11, 30), created_at=NOW, title="November")

    rows = check_format(content, config)
    assert [(r["Umsatz (ohne Soll/Haben-Kz)"], r["Belegdatum"], r["Belegfeld 1"])
            for r in rows] == [("1234,50", "0311", "RE-2026-000001"),
                               ("7,00", "3011", "GS2026/000001"),
                               ("9,90", "3011", "RE-2026-000002")]
    assert rows[0]["Buchungstext"].startswith("Rechnung 'RE-2026-000001' Jörg Müller; Straße")
    assert rows[1]["Buchungstext"] == "Gutschrift ?"  # not in Windows-1252
    assert rows[2]["Buchungstext"] == "Rechnung Lukasz Dvorák"  # accents dropped, not "?"
    assert rows[0]["BU-Schlüssel"] == ""  # automatic accounts: no BU key


def test_a_rate_without_an_account_is_an_error_not_a_guess() -> None:
    config = DatevConfig()
    assert (config.account("19"), config.account("0"), config.account("oss")) == (
        8400, 8200, 8320)
    with pytest.raises(ValueError, match=r"no SKR03 revenue account for 16 % VAT"):
        config.account("16")
    assert DatevConfig(accounts={"16": 8410}).account("16") == 8410


def test_a_period_across_fiscal_years_is_refused() -> None:
    config = DatevConfig(fiscal_year_start="07-01")
    with pytest.raises(ValueError, match="within one fiscal year"):
        build_extf([], config, period_from=date(2026, 6, 1), period_to=date(2026, 7, 31),
                   created_at=NOW, title="x")
    content = build_extf([], config, period_from=date(2026, 7, 1),
                         period_to=date(2026, 7, 31), created_at=NOW, title="Juli")
    assert fields_of(content.decode("cp1252").split("\r\n")[0])[12] == "20260701"


def test_previous_month_in_shop_time() -> None:
    assert previous_month(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), "Europe/Berlin") == (
        date(2026, 11, 1), date(2026, 11, 30))
    assert previous_month(datetime(2026, 1, 15, tzinfo=UTC), "Europe/Berlin") == (
        date(2025, 12, 1), date(2025, 12, 31))


def _period() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return (max(today - timedelta(days=1), date(today.year, 1, 1)),
            min(today + timedelta(days=1), date(today.year, 12, 31)))


def test_bookings_of_invoices_credit_notes_and_payments_round_trip(engine: Engine) -> None:
    settings = Settings()
    documents = DocumentActivities(engine, settings)
    domestic = make_order()  # 229.00 at 19 %, 39.90 at 7 %, 4.90 shipping split pro rata
    export = make_order(country="CH")
    reverse = make_order(customer_type="b2b", country="AT", vat_id="ATU13585627")
    numbers = {o.order_id: documents.issue_invoice(DocumentInput(order=o)).number
               for o in (domestic, export, reverse)}
    credit = CreditNoteActivities(engine, settings).issue_credit_note(CreditNoteInput(
        order_id=domestic.order_id, request=CreditNoteIn(
            request_id=f"R{uuid.uuid4().hex[:8]}", reason="Rücksendung",
            lines=[{"sku": "GAS-1", "quantity": 1}])))  # type: ignore[list-item]
    with Session(engine) as session:
        session.add(Payment(order_id=export.order_id, key=f"p-{uuid.uuid4().hex}",
                            amount=Decimal("100.00"), currency="EUR", reference="Anzahlung",
                            paid_at=datetime.now(UTC)))
        session.commit()
    start, end = _period()

    bookings = datev_bookings(engine, settings, start, end)
    content = build_extf(bookings, settings.datev, period_from=start, period_to=end,
                         created_at=NOW, title="Test")
    rows = check_format(content, settings.datev)

    ours = {*numbers.values(), credit.document.number}
    by_document: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for row in rows:
        if row["Belegfeld 1"] == numbers[reverse.order_id]:  # for the EC Sales List
            assert row["EU-Land u. UStID (Bestimmung)"] == "ATU13585627"
        if row["Belegfeld 1"] in ours:
            by_document[row["Belegfeld 1"]].append((
                row["Soll/Haben-Kennzeichen"], row["Konto"],
                row["Gegenkonto (ohne BU-Schlüssel)"], row["Umsatz (ohne Soll/Haben-Kz)"]))
    assert sorted(by_document[numbers[domestic.order_id]]) == [
        ("S", "10000", "8300", "40,63"), ("S", "10000", "8400", "233,17")]
    assert by_document[numbers[reverse.order_id]] == [("S", "10000", "8125", "273,80")]
    assert by_document[numbers[export.order_id]] == [
        ("S", "10000", "8120", "273,80"), ("S", "1200", "10000", "100,00")]
    assert by_document[credit.document.number] == [("H", "10000", "8300", "19,95")]

    def net_of(number: str) -> Decimal:
        return sum((Decimal(amount.replace(",", ".")) * (1 if side == "S" else -1)
                    for side, _, contra, amount in by_document[number] if contra != "10000"),
                   Decimal(0))

    assert net_of(numbers[domestic.order_id]) == domestic.totals.total
    assert net_of(credit.document.number) == -credit.total


def test_issued_documents_keep_the_tax_rules_they_were_issued_with(engine: Engine) -> None:
    """B2C to Austria invoiced below the OSS threshold (German VAT); then the shop crosses
    it. The export still books the invoice as issued, and a credit note for it follows the
    invoice, not today's rules."""
    below = Settings(tax=TaxConfig(oss=False))
    above = Settings(tax=TaxConfig(oss=True))
    order = make_order(country="AT")
    number = DocumentActivities(engine, below).issue_invoice(DocumentInput(order=order)).number
    credit = CreditNoteActivities(engine, above).issue_credit_note(CreditNoteInput(
        order_id=order.order_id, request=CreditNoteIn(
            request_id=f"R{uuid.uuid4().hex[:8]}", reason="Rücksendung",
            lines=[{"sku": "GAS-1", "quantity": 1}])))  # type: ignore[list-item]
    start, end = _period()

    for settings in (below, above):
        rows = [b for b in datev_bookings(engine, settings, start, end)
                if b.document in (number, credit.document.number)]
        assert sorted((b.document == number, b.contra_account, b.eu_country_vat)
                      for b in rows) == [(False, 8300, ""), (True, 8300, ""), (True, 8400, "")]


# --- the workflow ----------------------------------------------------------------------


@pytest.fixture
async def stack(client: Client, task_queue: str, sqlite_url: str,
                tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(**FAST, database_url=sqlite_url, task_queue=task_queue,
                        datev_export_dir=tmp_path / "datev")
    async with running_stack(client, settings, task_queue) as s:
        yield s


async def test_export_workflow_writes_the_file(stack: Stack) -> None:
    start, end = _period()
    result = await stack.client.execute_workflow(
        DatevExportWorkflow.run, ExportDatevInput(period_from=start.isoformat(),
                                                  period_to=end.isoformat()),
        id=f"datev-{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue,
        execution_timeout=timedelta(seconds=60))

    path = Path(result.path)
    assert path.parent == stack.settings.datev_export_dir
    assert path.name == f"EXTF_Buchungsstapel_{start}_{end}.csv"
    rows = check_format(path.read_bytes(), stack.settings.datev)
    assert len(rows) == result.bookings
