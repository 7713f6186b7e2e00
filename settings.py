"""One place for configuration: environment variables (prefix ``ORDERS_``) over a TOML file.

Precedence, highest first: keyword arguments (tests), environment variables, the config
file named by ``ORDERS_CONFIG`` (default ``orders.toml`` in the working directory, if it
exists), then the defaults below. ``orders.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.datev import DatevConfig
from models.tax import TaxConfig
from models.workflow_io import DunningConfig, Duration, parse_duration

__all__ = ["BankFtp", "Duration", "Partner", "Settings", "parse_duration"]

PROJECT_DIR = Path(__file__).resolve().parent
# Which documents each hand-off channel can send (``Partner.format``; first = default).
HANDOFF_FORMATS: dict[str, tuple[str, ...]] = {
    "ftp": ("opentrans", "csv"),  # ORDER XML (or the CSV) + delivery note PDF into the inbox
    "http": ("json",),  # the shipment as JSON (documents base64) POSTed to ``url``
    "email": ("opentrans", "pdf"),  # a mail with the delivery note + ORDER XML (pdf: note only)
}


class Partner(BaseModel):
    """A partner that takes hand-offs: a fulfillment provider running warehouses, or a
    supplier that ships dropship / pre-order SKUs itself. Hand-offs go out by ``channel``
    in ``format``; its shipping advice comes back by ``return_channel`` (``ftp``: the
    Schedule reads its FTP outbox; ``api``: it calls ``POST /shipments/confirmations``)."""

    code: str = "fulfillment"
    channel: Literal["ftp", "http", "email"] = "ftp"  # how shipments are handed off
    format: Literal["opentrans", "json", "pdf", "csv"] | None = None  # None: channel default
    return_channel: Literal["ftp", "api"] = "ftp"  # how its shipping advice comes back
    sla: Duration | None = None  # its shipments' confirmation timeout (default: the policy's)
    url: str = ""  # http channel: the endpoint that takes the order as JSON (POST)
    token: str | None = None  # http channel: sent as "Authorization: Bearer <token>"
    email: str = ""  # email channel: the partner's order desk (gets PDF + XML attached)
    name: str = "Demo Fulfillment GmbH"
    host: str = "127.0.0.1"
    port: int = 2121
    user: str = "partner"
    password: str = "partner"
    inbox: str = "/inbox"
    warehouse: str = "MAIN"
    outbox: str = "/outbox"  # where the partner leaves its shipping advice
    stock_dir: str = "/stock"  # where the partner leaves its stock lists (XML)
    archive: str = "/archive"  # imported advice files are moved here
    error_dir: str = "/error"  # unreadable or hostile advice files are moved here

    @property
    def handoff_format(self) -> str:
        return self.format or HANDOFF_FORMATS[self.channel][0]

    @model_validator(mode="after")
    def _channel_needs(self) -> Partner:
        allowed = HANDOFF_FORMATS[self.channel]
        if self.format is not None and self.format not in allowed:
            raise ValueError(f"partner {self.code}: format {self.format!r} is not possible on "
                             f"channel {self.channel!r} (possible: {', '.join(allowed)})")
        if self.channel == "email" and "@" not in self.email:
            raise ValueError(f"partner {self.code}: channel email needs an address (email)")
        if self.channel == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"partner {self.code}: channel http needs a url (http/https)")
        return self


class BankFtp(BaseModel):
    """An FTP folder where the bank (or the EBICS client in front of it) leaves its camt.053
    statements. Empty ``host``: none; the Schedule reads only ``ORDERS_BANK_INBOX_DIR``.
    Otherwise each run first fetches the folder's ``*.xml`` files into the inbox, then moves
    them on the server to ``archive`` (``""``: deletes them there)."""

    host: str = ""
    port: int = Field(default=21, ge=1, le=65535)
    user: str = "anonymous"
    password: str = ""
    folder: str = "/"
    archive: str = "archive"  # relative paths are below ``folder``
    error_dir: str = "error"  # files too large to take (+ an import ticket)

    @property
    def enabled(self) -> bool:
        return bool(self.host)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORDERS_", env_nested_delimiter="__", extra="ignore"
    )

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    temporal_db: Path = PROJECT_DIR / "var" / "temporal.db"
    task_queue: str = "orders"

    # Database
    database_url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'orders.db'}"

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: str = ""  # "k1:client,k2:staff"; empty means demo keys (make run only)

    # Mail
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "Auftragsmanager Demo-Shop <shop@example.com>"
    mail_dir: Path = PROJECT_DIR / "var" / "mail"  # embedded SMTP catcher only

    # Partners: the default one (operates warehouses without a partner of their own) and
    # more by code: [partners.<code>] in the config file, ORDERS_PARTNERS__<CODE>__<FIELD>.
    partner: Partner = Field(default_factory=Partner)
    partners: dict[str, Partner] = Field(default_factory=dict)
    ftp_root: Path = PROJECT_DIR / "var" / "ftp"  # embedded FTP drop only

    # Shop texts and documents
    shop_name: str = "Demo-Shop"
    shop_address: str = "Demo-Shop GmbH, Hauptstraße 1, 94032 Passau"
    bank_account_holder: str = "Demo-Shop GmbH"
    bank_iban: str = "DE02120300000000202051"
    bank_bic: str = "BYLADEM1001"
    # The seller in e-invoices (Factur-X / ZUGFeRD): structured address and VAT id
    shop_street: str = "Hauptstraße 1"
    shop_postal_code: str = "94032"
    shop_city: str = "Passau"
    shop_country: str = Field(default="DE", pattern=r"^[A-Z]{2}$")
    shop_vat_id: str = Field(default="DE136695976", pattern=r"^[A-Z]{2}[0-9A-Za-z+*.]{2,13}$")
    shop_email: str = "buchhaltung@demo-shop.example"
    shop_contact_name: str = "Buchhaltung"  # XRechnung seller contact (BT-41)
    shop_phone: str = Field(default="+49 851 123456", pattern=r"^\+?[0-9 ()/.-]{3,32}$")
    review_url: str = "https://shop.example.com/bewertung/{order_id}"
    tracking_url: str = "https://tracking.example.com/{carrier}/{tracking_number}"
    templates_dir: Path = PROJECT_DIR / "templates"
    shipping_config: Path = PROJECT_DIR / "demo" / "network.toml"  # allocation, carriers
    # Document numbers: gapless per type and year; each format needs {year} and {number}.
    invoice_number_format: str = "RE-{year}-{number:06d}"
    credit_note_number_format: str = "GS-{year}-{number:06d}"
    delivery_note_number_format: str = "LS-{year}-{number:06d}"
    # Invoice terms: the due date is this long after the invoice; then the dunning steps
    invoice_payment_term: Duration = timedelta(days=14)
    # A split order: a partial invoice for each shipment that ships before the rest (the
    # last invoice takes what is left, so all add up to the order); false: one invoice.
    invoice_per_shipment: bool = True
    dunning: DunningConfig = Field(default_factory=DunningConfig)
    # Invoices and credit notes as Factur-X (EN 16931): the CII XML embedded in a PDF/A-3b
    einvoice: bool = True
    # What B2B customers receive without their own choice in master data: factur-x (the
    # PDF above) or xrechnung (XRechnung 3.0 CII as XML attachment instead of the PDF)
    b2b_einvoice: Literal["factur-x", "xrechnung"] = "factur-x"
    # Collective invoices of customers flagged collective_invoice: the day of the month
    # and the time (shop time zone) the previous month's invoices are issued
    collective_invoice_day: int = Field(default=1, ge=1, le=28)
    collective_invoice_at: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # DATEV export (EXTF Buchungsstapel): consultant/client numbers, chart, accounts
    datev: DatevConfig = Field(default_factory=DatevConfig)
    datev_export_dir: Path = PROJECT_DIR / "var" / "exports" / "datev"
    # VAT: home country, over the OSS threshold or not, rates per EU country ([tax] / ORDERS_TAX__*)
    tax: TaxConfig = Field(default_factory=TaxConfig)
    shop_timezone: str = "Europe/Berlin"  # days of the order export, the nightly schedule
    order_export_dir: Path = PROJECT_DIR / "var" / "exports"  # orders-YYYY-MM-DD.xml
    order_export_at: str = "00:30"  # the Schedule order-export runs daily then (shop time)

    # Policy durations
    payment_reminder_after: Duration = timedelta(days=3)
    cancel_unpaid_after: Duration = timedelta(days=14)
    ship_confirmation_timeout: Duration = timedelta(days=2)
    review_request_after: Duration = timedelta(days=7)
    # How long one activity attempt may take before Temporal retries it elsewhere (also how
    # long the steps of a crashed worker wait before they are picked up again).
    activity_timeout: Duration = timedelta(seconds=60)
    # A backordered line is expected this long after the order, unless the stock feed says
    # when the SKU comes in (the date goes into the customer's backorder mail).
    backorder_lead_time: Duration = timedelta(days=7)
    # How often the Schedule imports the partner's stock lists; rows per transaction; the
    # largest stock list accepted (over it: rejected with a ticket, nothing applied).
    stock_sync_interval: Duration = timedelta(hours=4)
    stock_sync_batch_size: int = Field(default=1000, ge=1, le=100_000)
    stock_file_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # How often the Schedule imports the partner's shipping advice from its FTP outbox.
    shipping_advice_interval: Duration = timedelta(minutes=5)
    # Bank statements (camt.053): the folder the bank's files arrive in (EBICS client or a
    # share; archive/ and error/ are made beside them), how often the Schedule reads it, the
    # largest file taken, and how far back open orders are considered for matching.
    bank_inbox_dir: Path = PROJECT_DIR / "var" / "bank" / "inbox"
    bank_statement_interval: Duration = timedelta(minutes=15)
    bank_file_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    bank_ftp: BankFtp = Field(default_factory=BankFtp)  # fetched into bank_inbox_dir
    payment_match_days: int = Field(default=400, ge=1)

    @field_validator("shop_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("invoice_number_format", "credit_note_number_format",
                     "delivery_note_number_format")
    @classmethod
    def _number_format(cls, value: str) -> str:
        try:
            a, b = (value.format(year=2026, number=n) for n in (1, 2))
            other_year = value.format(year=2027, number=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a number format with {{year}} and "
                             f"{{number}} (e.g. RE-{{year}}-{{number:06d}}): {exc}") from None
        if a == b or a == other_year:
            raise ValueError(f"{value!r} must contain both {{year}} and {{number}}, "
                             "or numbers would repeat")
        if len(value.format(year=9999, number=999_999)) > 40:
            raise ValueError(f"{value!r} gives numbers longer than 40 characters")
        return value

    @model_validator(mode="after")
    def _distinct_number_formats(self) -> Settings:
        formats = (self.invoice_number_format, self.credit_note_number_format,
                   self.delivery_note_number_format)
        if len({f.format(year=2026, number=1) for f in formats}) < len(formats):
            raise ValueError("invoice, credit note and delivery note number formats must "
                             "differ (document numbers are unique across types)")
        return self

    @field_validator("order_export_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value.strip())
        if not match:
            raise ValueError(f"expected a time of day HH:MM (e.g. 00:30), got {value!r}")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("ORDERS_CONFIG", "orders.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        elif "ORDERS_CONFIG" in os.environ:
            raise FileNotFoundError(f"ORDERS_CONFIG points to a missing file: {config_file}")
        return tuple(sources)

    def all_partners(self) -> dict[str, Partner]:
        """Every partner by code: the default one and ``partners`` (keyed by their code)."""
        found = {self.partner.code: self.partner}
        for code, partner in self.partners.items():
            found[code] = partner if partner.code == code else partner.model_copy(
                update={"code": code})
        return found

    def partner_for(self, code: str | None) -> Partner:
        """The partner ``code`` (``None`` or empty: the default one); KeyError if unknown."""
        return self.all_partners()[code] if code else self.partner

    def api_key_roles(self) -> dict[str, str]:
        """Parse ``ORDERS_API_KEYS`` into ``{key: role}``; raises ValueError on bad entries."""
        roles: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in self.api_keys.split(","))):
            key, sep, role = pair.partition(":")
            if not sep or not key or role not in ("client", "staff"):
                raise ValueError(f"ORDERS_API_KEYS entry {pair!r} must be key:client or key:staff")
            roles[key] = role
        return roles
