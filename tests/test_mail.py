"""MailActivities.send_mail against a real SMTP catcher on loopback."""

from __future__ import annotations

import uuid
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.mail import MailActivities
from activities.render import german_amount
from models.activities import SendMailInput
from models.orders import (
    Address,
    Customer,
    OrderLine,
    OrderStatus,
    OrderView,
    PaymentStatus,
    ShipmentView,
    Totals,
)
from models.tables import MailOutbox
from settings import Settings
from starter.embedded import MailCatcher
from tests.conftest import free_port
from tests.fixtures_partners import make_document

EMAIL = "anna@example.de"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n\xe2\xe3\xcf\xd3 \x00\x01\xff\n%%EOF\n"


def new_order_id() -> str:
    return f"webshop-{uuid.uuid4().hex[:10]}"


def order_json(order_id: str, *, first_name: str = "Anna",
               method: str = "prepaid") -> dict[str, Any]:
    """The ``order`` context the workflow passes: an OrderView dumped as JSON."""
    address = Address(name="Anna Berg", street="Lindenweg 4", postal_code="94032",
                      city="Passau", country="DE")
    view = OrderView.model_construct(
        order_id=order_id, channel="webshop", external_id=order_id.split("-", 1)[-1],
        status=OrderStatus.RECEIVED, payment_method=method, payment_status=PaymentStatus.OPEN,
        currency="EUR",
        customer=Customer.model_construct(email=EMAIL, first_name=first_name, last_name="Berg",
                                          company=None, vat_id=None, type="b2c", phone=None),
        billing_address=address, shipping_address=address,
        lines=[OrderLine(sku="TENT-2P", name="Trekkingzelt 2P", quantity=1,
                         unit_price=Decimal("229.00"), tax_rate=Decimal("19"))],
        totals=Totals(goods=Decimal("229.00"), shipping=Decimal("4.90"), total=Decimal("233.90"),
                      open=Decimal("233.90")),
        comment=None, hold_reasons=[], escalated=False, waiting_for="", payments=[],
        shipments=[], documents=[], tickets=[], timeline=[])
    return view.model_dump(mode="json")


def mail_input(order_id: str, template: str = "order_confirmation", *, key: str | None = None,
               to: str = EMAIL, context: dict[str, Any] | None = None,
               attachments: list[str] | None = None) -> SendMailInput:
    """What the workflow sends: the order as JSON plus the template's extras."""
    return SendMailInput(order_id=order_id, key=key or template, to=to, template=template,
                         context={"order": order_json(order_id), **(context or {})},
                         attachments=attachments or [])


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


@pytest.fixture
def mail(sqlite_engine: Engine, partner_settings: Settings) -> MailActivities:
    return MailActivities(sqlite_engine, partner_settings)


async def test_order_confirmation_arrives_in_german(mail: MailActivities,
                                                    mail_catcher: MailCatcher) -> None:
    order_id = new_order_id()
    result = await mail.send_mail(mail_input(order_id))

    [message] = mail_catcher.messages()
    assert [a.addr_spec for a in message["To"].addresses] == [EMAIL]
    assert message["To"].addresses[0].display_name == "Anna Berg"
    assert message["Subject"] == f"Bestellbestätigung {order_id} – Demo-Shop"
    assert message["From"].addresses[0].addr_spec == "shop@example.com"
    assert message["Message-ID"] == result.message_id and result.sent_now
    body = text_of(message)
    assert body.startswith("Guten Tag Anna Berg,\n")
    for text in ("vielen Dank für Ihre Bestellung", "1 × Trekkingzelt 2P (TENT-2P) à 229,00 EUR",
                 "Gesamtbetrag:  233,90 EUR", "DE02120300000000202051",
                 f"Verwendungszweck:  {order_id}", "Ihr Team von Demo-Shop"):
        assert text in body
    with Session(mail.engine) as session:
        row = session.exec(select(MailOutbox).where(MailOutbox.order_id == order_id)).one()
    assert (row.status, row.message_id, row.recipient) == ("sent", result.message_id, EMAIL)


async def test_invoice_carries_the_pdf_byte_identical(mail: MailActivities,
                                                      mail_catcher: MailCatcher) -> None:
    order_id = new_order_id()
    doc = make_document(mail.engine, order_id, kind="invoice", filename=f"{order_id}-invoice.pdf",
                        media_type="application/pdf", content=PDF, number=f"RE-{order_id}")
    await mail.send_mail(mail_input(order_id, "invoice", context={"invoice_number": doc.number},
                                    attachments=[doc.document_id]))

    [message] = mail_catcher.messages()
    assert message["Subject"] == f"Ihre Rechnung RE-{order_id} zur Bestellung {order_id}"
    assert "anbei erhalten Sie die Rechnung" in text_of(message)
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"{order_id}-invoice.pdf"
    assert attachment.get_content() == PDF


async def test_same_key_is_delivered_once(engine: Engine, partner_settings: Settings,
                                          mail_catcher: MailCatcher) -> None:
    mail = MailActivities(engine, partner_settings)
    order_id = new_order_id()
    first = await mail.send_mail(mail_input(order_id))
    second = await mail.send_mail(mail_input(order_id))
    other_key = await mail.send_mail(mail_input(order_id, key="confirmation-2"))

    assert (first.sent_now, second.sent_now, other_key.sent_now) == (True, False, True)
    assert second.message_id == first.message_id != other_key.message_id
    assert [m["Message-ID"] for m in mail_catcher.messages()] == [first.message_id,
                                                                  other_key.message_id]


async def test_smtp_down_is_retryable_and_the_retry_sends_once(
        engine: Engine, partner_settings: Settings, mail_catcher: MailCatcher) -> None:
    down = partner_settings.model_copy(update={"smtp_port": free_port()})
    order_id = new_order_id()
    with pytest.raises(Exception) as failure:
        await MailActivities(engine, down).send_mail(mail_input(order_id))
    assert not isinstance(failure.value, ApplicationError)  # Temporal retries it
    assert mail_catcher.messages() == []

    result = await MailActivities(engine, partner_settings).send_mail(mail_input(order_id))
    [message] = mail_catcher.messages()
    assert result.sent_now and message["Message-ID"] == result.message_id


async def test_line_breaks_in_subject_or_name_add_no_header(mail: MailActivities,
                                                           mail_catcher: MailCatcher) -> None:
    evil = "\r\nBcc: evil@example.com\r\nX-Evil: 1"
    new_id = new_order_id()
    order_id = new_id + evil
    context = {"order": order_json(order_id, first_name="Anna" + evil)}
    await mail.send_mail(SendMailInput(order_id=order_id, key="k", to=EMAIL,
                                       template="order_confirmation", context=context))

    [path] = mail_catcher.files()
    raw = path.read_bytes()
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers and b"\nX-Evil:" not in headers
    [message] = mail_catcher.messages()
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert [a.addr_spec for a in message["To"].addresses] == [EMAIL]
    assert message["Subject"] == (
        f"Bestellbestätigung {new_id} Bcc: evil@example.com X-Evil: 1 – Demo-Shop")
    assert text_of(message).startswith("Guten Tag Anna\nBcc: evil@example.com\nX-Evil: 1 Berg,")


@pytest.mark.parametrize("to", [f"{EMAIL}\r\nBcc: evil@example.com", f"{EMAIL}, evil@example.com",
                                "Anna <anna@example.de>", "kein-mail"])
async def test_invalid_recipient_is_non_retryable(mail: MailActivities, mail_catcher: MailCatcher,
                                                  to: str) -> None:
    with pytest.raises(ApplicationError) as failure:
        await mail.send_mail(mail_input(new_order_id(), to=to))
    assert (failure.value.type, failure.value.non_retryable) == ("InvalidRecipient", True)
    assert mail_catcher.messages() == []


@pytest.mark.parametrize("template", ["no_such_template", "../invoice", "_footer"])
async def test_unknown_template_is_non_retryable(mail: MailActivities, mail_catcher: MailCatcher,
                                                 template: str) -> None:
    with pytest.raises(ApplicationError) as failure:
        await mail.send_mail(mail_input(new_order_id(), template))
    assert (failure.value.type, failure.value.non_retryable) == ("MailTemplateError", True)
    assert mail_catcher.messages() == []


async def test_unknown_attachment_is_non_retryable(mail: MailActivities,
                                                   mail_catcher: MailCatcher) -> None:
    order_id = new_order_id()
    with pytest.raises(ApplicationError) as failure:
        await mail.send_mail(mail_input(order_id, "invoice", context={"invoice_number": "RE-1"},
                                        attachments=[f"{order_id}-nope"]))
    assert (failure.value.type, failure.value.non_retryable) == ("DocumentMissing", True)
    assert mail_catcher.messages() == []


async def test_broken_template_is_retryable(sqlite_engine: Engine, partner_settings: Settings,
                                            tmp_path: Path) -> None:
    folder = tmp_path / "templates" / "mail"
    folder.mkdir(parents=True)
    (folder / "missing_value.txt").write_text("Betreff: {{ order.nope }}\n\nText\n")
    (folder / "bad_syntax.txt").write_text("Betreff: x\n\n{% if %}\n")
    (folder / "no_subject.txt").write_text("{# comment #}\nHallo\n")
    mail = MailActivities(sqlite_engine, partner_settings.model_copy(
        update={"templates_dir": tmp_path / "templates"}))
    for template in ("missing_value", "bad_syntax", "no_subject"):
        with pytest.raises(ApplicationError) as failure:
            await mail.send_mail(mail_input(new_order_id(), template))
        assert (failure.value.type, failure.value.non_retryable) == ("MailTemplateError", False)


def shipment_json() -> dict[str, Any]:
    return ShipmentView(shipment_id="S-1", warehouse="MAIN", status="shipped", carrier="DHL",
                        tracking_number="00340434161094042557",
                        tracking_url="https://tracking.example.com/DHL/00340434161094042557",
                        ).model_dump(mode="json")


# template -> (extra context as the workflow passes it, texts the mail must contain)
TEMPLATES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "order_confirmation": ({}, ["Bestellbestätigung", "233,90 EUR"]),
    "payment_reminder": ({"open_amount": "233.90"},
                         ["Zahlungserinnerung", "Betrag:            233,90 EUR", "BYLADEM1001",
                          "Demo-Shop GmbH"]),
    "order_cancelled": ({"reason": "Kunde hat storniert"}, ["storniert", "Grund: Kunde hat"]),
    "shipping_confirmation": ({"shipment": shipment_json(),
                               "lines": [{"sku": "TENT-2P", "name": "Trekkingzelt 2P",
                                          "quantity": 1}]},
                              ["unterwegs", "DHL", "00340434161094042557",
                               "https://tracking.example.com/DHL/00340434161094042557",
                               "1 x Trekkingzelt 2P (TENT-2P)"]),
    "backorder_notice": ({"backordered": [{"sku": "RARE-1", "name": "Seltene Laterne",
                                           "quantity": 2,
                                           "expected_at": "2026-12-03T00:00:00+00:00"}],
                          "partial_delivery": True},
                         ["Lieferverzögerung", "2 x Seltene Laterne (RARE-1), voraussichtlich "
                          "lieferbar ab 03.12.2026", "schicken wir Ihnen schon jetzt"]),
    "invoice": ({"invoice_number": "RE-2026-000042"}, ["Rechnung RE-2026-000042", "233,90 EUR"]),
    "invoice-partial": ({"invoice_number": "RE-2026-000043", "invoice_total": "59.80"},
                        ["Rechnung RE-2026-000043", "Rechnungsbetrag: 59,80 EUR"]),
    "invoice-xrechnung": ({"invoice_number": "RE-2026-000044", "xrechnung": True},
                          ["Rechnung RE-2026-000044", "im Format XRechnung (XML)"]),
    "collective_invoice": ({"invoice_number": "RE-2026-000045", "period": "2026-11",
                            "invoice_total": "467.80", "currency": "EUR",
                            "due_on": "31.12.2026", "xrechnung": False,
                            "orders": [{"order_id": "webshop-1", "amount": "233.90"},
                                       {"order_id": "webshop-2", "amount": "233.90"}]},
                           ["Sammelrechnung RE-2026-000045 für 2026-11",
                            "Bestellung webshop-2: 233,90 EUR",
                            "Rechnungsbetrag: 467,80 EUR, zahlbar bis zum 31.12.2026",
                            "als PDF"]),
    "credit_note": ({"credit_note_number": "GS-2026-000007", "invoice_number": "RE-2026-1",
                     "amount": "79.80", "currency": "EUR", "refund": "0.00",
                     "reason": "Rücksendung"},
                    ["Gutschrift GS-2026-000007", "Gutschriftbetrag: 79,80 EUR",
                     "verrechnet"]),
    "dunning": ({"level": {"name": "dunning_1", "title": "1. Mahnung", "fee": "5.00",
                           "letter": True, "after": "21d"},
                 "invoice_number": "RE-2026-000042", "due_on": "09.12.2026",
                 "deadline_on": "30.12.2026", "open_amount": "238.90", "fee": "5.00"},
                ["1. Mahnung zur Rechnung RE-2026-000042", "Offener Betrag: 238,90 EUR",
                 "Mahngebühr dieser Stufe: 5,00 EUR", "bis zum 30.12.2026"]),
    "review_request": ({}, ["Bewertung", "https://shop.example.com/bewertung/"]),
}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_renders_with_the_workflow_context(mail: MailActivities,
                                                          template: str) -> None:
    extra, texts = TEMPLATES[template]
    name = template.split("-")[0]
    order_id = new_order_id()
    context = mail._context(mail_input(order_id, name, context=extra))
    rendered = mail.render(name, context)
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.body.startswith("Guten Tag Anna Berg,\n\n")
    assert rendered.body.endswith("Dies ist eine automatisch erstellte Nachricht.\n")
    assert "\n\n\n" not in rendered.body
    for text in texts:
        assert text in rendered.subject + "\n" + rendered.body, text
    if template == "review_request":
        assert f"https://shop.example.com/bewertung/{order_id}" in rendered.body


def test_money_is_formatted_the_german_way() -> None:
    assert [german_amount(v) for v in ("0", "4.9", "1234.5", "1234567.891")] == [
        "0,00", "4,90", "1.234,50", "1.234.567,89"]
