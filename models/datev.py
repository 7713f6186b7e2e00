"""DATEV EXTF Buchungsstapel (format 700, category 21, format version 13): pure builder.

The file a tax accountant imports into DATEV: a header row (31 fields), the row of the 125
column names, then one row per booking. Windows-1252, ``;`` between fields, CRLF, text
fields in double quotes (empty text as ``""``), numbers without quotes, amounts with a
decimal comma and no thousands separator, Belegdatum as DDMM (the year comes from the
header's period, which must lie within one fiscal year).

Bookings (``Booking``) are built by ``activities.datev``: an invoice is booked per VAT rate
as a debit on the debitor against the revenue account of its rate and treatment (automatic
accounts carry the VAT themselves, so no BU key), a credit note the same in reverse (credit
on the debitor), a payment as a debit on the bank against the debitor. Accounts follow SKR03
or SKR04 (``DatevConfig``); every account can be overridden.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["COLUMNS", "HEADER_FIELDS", "Booking", "DatevConfig", "build_extf",
           "fiscal_year_start", "revenue_key"]

# (name, text?) in the order of the format description, version 13: 125 columns.
_TEXT = True
_NUM = False
COLUMNS: tuple[tuple[str, bool], ...] = (
    ("Umsatz (ohne Soll/Haben-Kz)", _NUM), ("Soll/Haben-Kennzeichen", _TEXT),
    ("WKZ Umsatz", _TEXT), ("Kurs", _NUM), ("Basis-Umsatz", _NUM),
    ("WKZ Basis-Umsatz", _TEXT), ("Konto", _NUM), ("Gegenkonto (ohne BU-Schlüssel)", _NUM),
    ("BU-Schlüssel", _TEXT), ("Belegdatum", _NUM), ("Belegfeld 1", _TEXT),
    ("Belegfeld 2", _TEXT), ("Skonto", _NUM), ("Buchungstext", _TEXT),
    ("Postensperre", _NUM), ("Diverse Adressnummer", _TEXT), ("Geschäftspartnerbank", _NUM),
    ("Sachverhalt", _NUM), ("Zinssperre", _NUM), ("Beleglink", _TEXT),
    *((f"Beleginfo - {kind} {i}", _TEXT) for i in range(1, 9) for kind in ("Art", "Inhalt")),
    ("KOST1 - Kostenstelle", _TEXT), ("KOST2 - Kostenstelle", _TEXT), ("Kost-Menge", _NUM),
    ("EU-Land u. UStID (Bestimmung)", _TEXT), ("EU-Steuersatz (Bestimmung)", _NUM),
    ("Abw. Versteuerungsart", _TEXT), ("Sachverhalt L+L", _NUM),
    ("Funktionsergänzung L+L", _NUM), ("BU 49 Hauptfunktionstyp", _NUM),
    ("BU 49 Hauptfunktionsnummer", _NUM), ("BU 49 Funktionsergänzung", _NUM),
    *(pair for i in range(1, 21) for pair in ((f"Zusatzinformation - Art {i}", _TEXT),
                                              (f"Zusatzinformation- Inhalt {i}", _TEXT))),
    ("Stück", _NUM), ("Gewicht", _NUM), ("Zahlweise", _NUM), ("Forderungsart", _TEXT),
    ("Veranlagungsjahr", _NUM), ("Zugeordnete Fälligkeit", _NUM), ("Skontotyp", _NUM),
    ("Auftragsnummer", _TEXT), ("Buchungstyp", _TEXT), ("USt-Schlüssel (Anzahlungen)", _NUM),
    ("EU-Land (Anzahlungen)", _TEXT), ("Sachverhalt L+L (Anzahlungen)", _NUM),
    ("EU-Steuersatz (Anzahlungen)", _NUM), ("Erlöskonto (Anzahlungen)", _NUM),
    ("Herkunft-Kz", _TEXT), ("Buchungs GUID", _TEXT), ("KOST-Datum", _NUM),
    ("SEPA-Mandatsreferenz", _TEXT), ("Skontosperre", _NUM), ("Gesellschaftername", _TEXT),
    ("Beteiligtennummer", _NUM), ("Identifikationsnummer", _TEXT), ("Zeichnernummer", _TEXT),
    ("Postensperre bis", _NUM), ("Bezeichnung SoBil-Sachverhalt", _TEXT),
    ("Kennzeichen SoBil-Buchung", _NUM), ("Festschreibung", _NUM), ("Leistungsdatum", _NUM),
    ("Datum Zuord. Steuerperiode", _NUM), ("Fälligkeit", _NUM), ("Generalumkehr (GU)", _TEXT),
    ("Steuersatz", _NUM), ("Land", _TEXT), ("Abrechnungsreferenz", _TEXT),
    ("BVV-Position", _NUM), ("EU-Land u. UStID (Ursprung)", _TEXT),
    ("EU-Steuersatz (Ursprung)", _NUM), ("Abw. Skontokonto", _NUM),
)
COLUMN_INDEX = {name: i for i, (name, _) in enumerate(COLUMNS)}
# Header fields that are text (quoted), by position (1-based) in the 31-field header row.
HEADER_TEXT = {1, 4, 8, 9, 10, 17, 18, 22, 24, 30, 31}
HEADER_FIELDS = 31
ENCODING = "cp1252"
_BELEGFELD = re.compile(r"[^A-Za-z0-9$&%*+\-/]")

SKR: dict[str, dict[str, int]] = {
    "SKR03": {"19": 8400, "7": 8300, "0": 8200, "reverse_charge": 8125, "export": 8120,
              "oss": 8320, "bank": 1200},
    "SKR04": {"19": 4400, "7": 4300, "0": 4200, "reverse_charge": 4125, "export": 4120,
              "oss": 4320, "bank": 1800},
}


class DatevConfig(BaseModel):
    """``[datev]`` / ``ORDERS_DATEV__*``: who the file is for and which accounts to use."""

    model_config = ConfigDict(extra="forbid")

    consultant_number: int = Field(default=1001, ge=1001, le=9_999_999)  # Beraternummer
    client_number: int = Field(default=1, ge=1, le=99_999)  # Mandantennummer
    fiscal_year_start: str = "01-01"  # MM-DD, Wirtschaftsjahresbeginn
    account_length: int = Field(default=4, ge=4, le=8)  # Sachkontenlänge
    chart: Literal["SKR03", "SKR04"] = "SKR03"
    debitor_account: int = 10000  # the collective debitor (Sammeldebitor)
    # Overrides of the chart's accounts: keys "19", "7", "0" (domestic rates),
    # "reverse_charge", "export", "oss", "bank".
    accounts: dict[str, int] = Field(default_factory=dict)

    @field_validator("fiscal_year_start")
    @classmethod
    def _month_day(cls, value: str) -> str:
        try:
            datetime.strptime(f"2024-{value}", "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"expected MM-DD, e.g. 01-01, got {value!r}") from None
        return value

    def account(self, key: str) -> int:
        """The account of ``key`` (a domestic rate, a treatment, ``bank``); a rate neither
        the chart nor ``[datev.accounts]`` knows is an error, never a guess."""
        account = self.accounts.get(key, SKR[self.chart].get(key))
        if account is None:
            raise ValueError(f"no {self.chart} revenue account for {key} % VAT: add it to "
                             f'[datev.accounts], e.g. "{key}" = <account>')
        return account


def revenue_key(treatment: str, rate: Decimal) -> str:
    """Which revenue account a booking goes to: the treatment, or the domestic rate."""
    if treatment in ("reverse_charge", "export", "oss"):
        return treatment
    return f"{rate.normalize():f}"


def fiscal_year_start(config: DatevConfig, day: date) -> date:
    """The start of the fiscal year ``day`` belongs to."""
    month, dom = (int(part) for part in config.fiscal_year_start.split("-"))
    start = date(day.year, month, dom)
    return start if start <= day else date(day.year - 1, month, dom)


@dataclass(frozen=True)
class Booking:
    amount: Decimal  # positive
    side: Literal["S", "H"]  # on ``account``
    account: int
    contra_account: int
    booked_on: date  # Belegdatum
    document: str  # Belegfeld 1: the document number
    text: str  # Buchungstext
    currency: str = "EUR"
    eu_country_vat: str = ""  # EU-Land u. UStID (Bestimmung): OSS country, RC buyer's id
    eu_rate: Decimal | None = None  # EU-Steuersatz (Bestimmung), for OSS
    service_date: date | None = None  # Leistungsdatum
    order_id: str = ""  # Auftragsnummer


def _amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}".replace(".", ",")


def _windows_1252(text: str) -> str:
    """``text`` in Windows-1252: characters it lacks lose their accents (``Łukasz`` ->
    ``Lukasz``, ``Dvořák`` -> ``Dvorak``); what is still missing becomes ``?``."""
    out = []
    for char in text:
        try:
            char.encode(ENCODING)
            out.append(char)
        except UnicodeEncodeError:
            plain = unicodedata.normalize("NFKD", _PLAIN.get(char, char))
            out.append("".join(c for c in plain if not unicodedata.combining(c))
                       .encode(ENCODING, errors="replace").decode(ENCODING))
    return "".join(out)


_PLAIN = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i"}


def _quote(text: str, limit: int | None = None) -> str:
    text = text.replace('"', "'").replace("\r", " ").replace("\n", " ")
    text = _windows_1252(text)
    return f'"{text[:limit] if limit else text}"'


def _row(booking: Booking) -> list[str]:
    values: dict[str, str] = {
        "Umsatz (ohne Soll/Haben-Kz)": _amount(booking.amount),
        "Soll/Haben-Kennzeichen": booking.side,
        "WKZ Umsatz": booking.currency,
        "Konto": str(booking.account),
        "Gegenkonto (ohne BU-Schlüssel)": str(booking.contra_account),
        "Belegdatum": booking.booked_on.strftime("%d%m"),
        "Belegfeld 1": _BELEGFELD.sub("", booking.document)[:36],
        "Buchungstext": booking.text,
        "Auftragsnummer": booking.order_id,
        "EU-Land u. UStID (Bestimmung)": booking.eu_country_vat,
        "EU-Steuersatz (Bestimmung)": (_amount(booking.eu_rate)
                                       if booking.eu_rate is not None else ""),
        "Leistungsdatum": (booking.service_date.strftime("%d%m%Y")
                           if booking.service_date else ""),
    }
    limits = {"Buchungstext": 60, "Auftragsnummer": 30, "EU-Land u. UStID (Bestimmung)": 15}
    return [_quote(values.get(name, ""), limits.get(name)) if text else values.get(name, "")
            for name, text in COLUMNS]


def build_extf(bookings: list[Booking], config: DatevConfig, *, period_from: date,
               period_to: date, created_at: datetime, title: str,
               currency: str = "EUR") -> bytes:
    """The Buchungsstapel file (see the module docstring)."""
    year_start = fiscal_year_start(config, period_from)
    if fiscal_year_start(config, period_to) != year_start or period_to < period_from:
        raise ValueError(f"{period_from}..{period_to} must lie within one fiscal year "
                         f"(from {config.fiscal_year_start}) and run forwards")
    header: list[str | int] = [
        "EXTF", 700, 21, "Buchungsstapel", 13, created_at.strftime("%Y%m%d%H%M%S%f")[:17],
        "", "RE", "Auftragsmanager", "", config.consultant_number, config.client_number,
        year_start.strftime("%Y%m%d"), config.account_length, period_from.strftime("%Y%m%d"),
        period_to.strftime("%Y%m%d"), title[:30], "", 1, 0, 0, currency, "", "", "", "",
        config.chart[-2:], "", "", "", "",
    ]
    assert len(header) == HEADER_FIELDS
    first = ";".join(_quote(str(v)) if i in HEADER_TEXT else str(v)
                     for i, v in enumerate(header, start=1))
    lines = [first, ";".join(name for name, _ in COLUMNS)]
    lines += [";".join(_row(b)) for b in bookings]
    return ("\r\n".join(lines) + "\r\n").encode(ENCODING, errors="replace")
