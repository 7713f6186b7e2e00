"""Customer mails: Jinja2 text templates, sent over SMTP at most once per ``(order_id, key)``.

Templates live in ``<settings.templates_dir>/mail/<name>.txt``: after an optional leading
``{# comment #}``, the first line is ``Betreff: ...`` (or ``Subject: ...``), then a blank
line, then the body (plain text, UTF-8). Subject line and body are rendered separately, so
a value with a line break stays where it is; in the subject it becomes a space. Names
starting with ``_`` (``_footer.txt``) are partials for ``{% include %}``, not mails.
Besides what the workflow passes, every template receives ``order_id``, ``customer_name``,
``shop_name``, ``shop_address``, ``bank_account_holder``, ``bank_iban``, ``bank_bic`` and
``review_link``, and the filter ``money`` (``"1234.5"`` -> ``"1.234,50"``). Edits take
effect with the next mail, no restart needed.

Idempotency: a ``MailOutbox`` row per ``(order_id, key)`` with a deterministic Message-ID.
A row marked ``sent`` means: return without sending. A crash between the SMTP hand-over and
marking the row can still send a second copy; it carries the same Message-ID, so mail
clients show one.

Errors (``ApplicationError.type``):

    MailTemplateError   unknown template name (non-retryable), or a template that does not
                        render (retryable: fix the file, the next attempt picks it up)
    InvalidRecipient    ``to`` is not exactly one valid address (non-retryable)
    DocumentMissing     an attachment id without a Document row (non-retryable)

SMTP, network and database errors propagate, so Temporal retries them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import aiosmtplib
import jinja2
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.partners import load_documents
from activities.render import german_amount
from models.activities import SendMailInput, SendMailResult
from models.tables import Document, MailOutbox, utcnow
from settings import Settings

__all__ = ["INVALID_RECIPIENT", "MAIL_TEMPLATE_ERROR", "MailActivities", "Rendered",
           "header_text", "message_id_for"]

MAIL_TEMPLATE_ERROR = "MailTemplateError"
INVALID_RECIPIENT = "InvalidRecipient"
SMTP_TIMEOUT = 30.0  # seconds
SUBJECT_MAX = 200

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LEADING_COMMENTS = re.compile(r"\A(?:\s*\{#.*?#\})*\s*", re.DOTALL)
_SUBJECT_LINE = re.compile(r"^(?:Betreff|Subject)[ \t]*:[ \t]*(.*)$", re.IGNORECASE)
# Everything that could end a header line or confuse a mail client: C0/C1 controls, DEL
# and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def header_text(value: object, *, limit: int = SUBJECT_MAX) -> str:
    """One line of header-safe text: control characters and line breaks become spaces."""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return text[:limit].rstrip()


def message_id_for(order_id: str, key: str, domain: str) -> str:
    """The Message-ID of the mail ``(order_id, key)``: the same on every attempt."""
    digest = hashlib.sha1(f"{order_id}:{key}".encode()).hexdigest()
    return f"<{digest}@{domain}>"


class MailActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(settings.templates_dir / "mail"),
            autoescape=False,  # plain-text mails; headers are made safe in _build
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["money"] = german_amount
        self._cache: dict[str, tuple[str, jinja2.Template, jinja2.Template]] = {}

    @activity.defn
    async def send_mail(self, input: SendMailInput) -> SendMailResult:
        """Render ``input.template`` and send it to ``input.to``, once per (order_id, key)."""
        row = await asyncio.to_thread(self._outbox_row, input.order_id, input.key)
        if row is not None and row.status == "sent":
            return SendMailResult(message_id=row.message_id, sent_now=False)
        recipient = valid_recipient(input.to)
        rendered = self.render(input.template, self._context(input))
        documents = await asyncio.to_thread(load_documents, self.engine, input.attachments)
        message = self._build(input, recipient=recipient, rendered=rendered,
                              documents=documents)
        if row is None:
            message_id = await asyncio.to_thread(
                self._claim, input, recipient=recipient, subject=rendered.subject,
                message_id=str(message["Message-ID"]))
        else:  # an earlier attempt got as far as the outbox: same Message-ID again
            message_id = row.message_id
        message.replace_header("Message-ID", message_id)
        s = self.settings
        await aiosmtplib.send(
            message, sender=message["From"].addresses[0].addr_spec, recipients=[recipient],
            hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_user or None,
            password=s.smtp_password or None, start_tls=s.smtp_starttls, timeout=SMTP_TIMEOUT)
        await asyncio.to_thread(self._mark_sent, input.order_id, input.key)
        return SendMailResult(message_id=message_id, sent_now=True)

    # --- rendering ---------------------------------------------------------------------

    def render(self, template: str, context: dict[str, Any]) -> Rendered:
        """Render ``<templates_dir>/mail/<template>.txt`` into subject and body."""
        subject_template, body_template = self._compiled(template)
        try:
            subject = subject_template.render(context)
            body = body_template.render(context)
        except Exception as exc:  # a missing value, bad filter input, a broken include
            raise _template_error(f"mail template {template!r} does not render: "
                                  f"{type(exc).__name__}: {exc}", retry=True) from exc
        return Rendered(subject=header_text(subject) or header_text(self.settings.shop_name),
                        body=body.strip("\r\n") + "\n")

    def _compiled(self, template: str) -> tuple[jinja2.Template, jinja2.Template]:
        """The subject line and the body as two templates, so that a value with a line break
        can never move text between subject and body. Recompiled when the file changes."""
        if not _TEMPLATE_NAME.match(template):
            raise _template_error(f"not a mail template name: {template!r}", retry=False)
        loader = self.templates.loader
        assert loader is not None
        try:
            source, _, _ = loader.get_source(self.templates, f"{template}.txt")
        except jinja2.TemplateNotFound as exc:
            raise _template_error(f"no mail template {template!r} in "
                                  f"{self.settings.templates_dir / 'mail'}", retry=False) from exc
        cached = self._cache.get(template)
        if cached is not None and cached[0] == source:
            return cached[1], cached[2]
        first, _, rest = _LEADING_COMMENTS.sub("", source, count=1).partition("\n")
        match = _SUBJECT_LINE.match(first.strip())
        if not match:
            raise _template_error(f"mail template {template!r} must start with a line "
                                  f"'Betreff: ...' (after its comment)", retry=True)
        try:
            subject = self.templates.from_string(match.group(1))
            body = self.templates.from_string(rest)
        except jinja2.TemplateSyntaxError as exc:
            raise _template_error(f"mail template {template!r}: {exc}", retry=True) from exc
        self._cache[template] = (source, subject, body)
        return subject, body

    def _context(self, input: SendMailInput) -> dict[str, Any]:
        s = self.settings
        try:
            review_link = s.review_url.format(order_id=quote(input.order_id, safe=""))
        except (KeyError, IndexError, ValueError) as exc:
            raise _template_error(f"review_url {s.review_url!r} may only use "
                                  f"{{order_id}}: {exc}", retry=True) from exc
        return {
            "order_id": input.order_id,
            "customer_name": customer_name(input.context.get("order")),
            "shop_name": s.shop_name,
            "shop_address": s.shop_address,
            "bank_account_holder": s.bank_account_holder,
            "bank_iban": s.bank_iban,
            "bank_bic": s.bank_bic,
            "review_link": review_link,
            **input.context,
        }

    def _build(self, input: SendMailInput, *, recipient: str, rendered: Rendered,
               documents: list[Document]) -> EmailMessage:
        message = EmailMessage()  # policy default: refuses CR/LF in header values
        message["From"] = self.settings.mail_from
        name = header_text(customer_name(input.context.get("order")), limit=100)
        try:
            message["To"] = Address(display_name=name, addr_spec=recipient)
        except (ValueError, IndexError):  # an address the header parser cannot split
            message["To"] = recipient
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        domain = message["From"].addresses[0].domain
        if not domain or not domain.isascii():
            domain = "auftragsmanager"
        message["Message-ID"] = message_id_for(input.order_id, input.key, domain)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.body, charset="utf-8")
        for doc in documents:
            maintype, _, subtype = doc.media_type.partition("/")
            message.add_attachment(doc.content, maintype=maintype or "application",
                                   subtype=subtype or "octet-stream",
                                   filename=header_text(doc.filename, limit=150))
        return message

    # --- outbox ------------------------------------------------------------------------

    def _outbox_row(self, order_id: str, key: str) -> MailOutbox | None:
        with Session(self.engine) as session:
            return session.exec(select(MailOutbox).where(
                MailOutbox.order_id == order_id, MailOutbox.key == key)).first()

    def _claim(self, input: SendMailInput, *, recipient: str, subject: str,
               message_id: str) -> str:
        """Insert the pending row; if a concurrent attempt was first, return its Message-ID."""
        with Session(self.engine) as session:
            session.add(MailOutbox(order_id=input.order_id, key=input.key, recipient=recipient,
                                   subject=subject, message_id=message_id))
            try:
                session.commit()
                return message_id
            except IntegrityError:
                session.rollback()
        row = self._outbox_row(input.order_id, input.key)
        assert row is not None
        return row.message_id

    def _mark_sent(self, order_id: str, key: str) -> None:
        with Session(self.engine) as session:
            row = session.exec(select(MailOutbox).where(
                MailOutbox.order_id == order_id, MailOutbox.key == key)).one()
            row.status = "sent"
            row.sent_at = utcnow()
            session.add(row)
            session.commit()


def valid_recipient(to: str) -> str:
    """``to`` as one normalised address; anything else is a non-retryable
    ``InvalidRecipient`` (this is also what stops header injection through ``to``)."""
    try:
        return validate_email(to, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ApplicationError(f"not a valid recipient address: {to!r} ({exc})",
                               type=INVALID_RECIPIENT, non_retryable=True) from exc


def customer_name(order: Any) -> str:
    """``First Last`` of the order's customer, else the billing name, else ``""``."""
    if not isinstance(order, dict):
        return ""
    customer = order.get("customer") or {}
    name = " ".join(str(customer.get(k) or "").strip() for k in ("first_name", "last_name"))
    if not name.strip():
        name = str((order.get("billing_address") or {}).get("name") or "")
    return name.strip()


def _template_error(message: str, *, retry: bool) -> ApplicationError:
    return ApplicationError(message, type=MAIL_TEMPLATE_ERROR, non_retryable=not retry)
