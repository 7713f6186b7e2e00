"""Documents: delivery note and invoice PDFs, openTRANS XML, gapless invoice numbers.

The activity methods are called directly as plain functions (no Temporal needed). The
``engine`` fixture is shared by the whole session, so every test uses fresh order ids and
compares invoice numbers with the range's state before the test.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities import opentrans
from activities.db import make_engine
from activities.docstore import DocumentStore, Target
from activities.documents import DocumentActivities, compute_invoice, get_document
from activities.render import FetchRefused, PdfRenderer, TemplateFetcher, format_date
from models.activities import DocumentInput
from models.orders import (
    Address,
    Customer,
    DocumentView,
    OrderIn,
    OrderLine,
    OrderStatus,
    OrderView,
    PaymentInfo,
    PaymentStatus,
    ShipmentView,
    ShippingInfo,
)
from models.rules import compute_totals
from models.tables import Document, NumberRange
from settings import PROJECT_DIR, Settings

TEMPLATES = PROJECT_DIR / "templates" / "documents"
HOSTILE_NAME = '<img src="http://127.0.0.1:9/x.png">'
HOSTILE_COMMENT = '<link rel=stylesheet href="file:///etc/passwd">'


# --- factories -----------------------------------------------------------------------


def make_order(*, customer_type: str = "b2c", name: str = "Anna Berg",
               comment: str | None = "Bitte beim Nachbarn abgeben.",
               lines: list[OrderLine] | None = None, shipping: str = "4.90",
               payment_method: str = "invoice", country: str = "DE",
               vat_id: str | None = None) -> OrderView:
    """A fresh order as the workflow sees it, by default 1 x Trekkingzelt 2P (229.00, 19 %)
    and 2 x Gaskartusche (19.95, 7 %) plus 4.90 shipping."""
    external_id = uuid.uuid4().hex[:12]
    address = Address(name=name, street="Lindenweg 4", postal_code="94032", city="Passau",
                      country=country)
    order = OrderIn(
        channel="webshop", external_id=external_id, placed_at=datetime.now(UTC),
        customer=Customer(email="anna@example.de", first_name="Anna", last_name="Berg",
                          type=customer_type, vat_id=vat_id),  # type: ignore[arg-type]
        billing_address=address,
        lines=lines or [
            OrderLine(sku="TENT-2P", name="Trekkingzelt 2P", quantity=1,
                      unit_price=Decimal("229.00"), tax_rate=Decimal("19")),
            OrderLine(sku="GAS-1", name="Gaskartusche", quantity=2,
                      unit_price=Decimal("19.95"), tax_rate=Decimal("7")),
        ],
        shipping=ShippingInfo(price=Decimal(shipping)),
        payment=PaymentInfo(method=payment_method),  # type: ignore[arg-type]
        comment=comment,
    )
    return OrderView(
        order_id=order.order_id, channel=order.channel, external_id=order.external_id,
        status=OrderStatus.SHIPPED, payment_method=order.payment.method,
        payment_status=PaymentStatus.OPEN, currency=order.currency, customer=order.customer,
        billing_address=order.billing_address, shipping_address=order.delivery_address,
        lines=order.lines, totals=compute_totals(order), comment=order.comment,
    )


def test_delivery_note_and_xml_carry_packer_note_and_gift_message(
        documents: DocumentActivities, engine: Engine) -> None:
    order = make_order().model_copy(update={
        "packer_note": "Zerbrechlich: Kartusche separat polstern",
        "gift_message": "Alles Gute zum Geburtstag, Ben!"})
    shipment = shipment_of(order)
    note = documents.create_delivery_note(DocumentInput(order=order, shipment=shipment))
    text = pdf_text(stored(engine, note.document_id).content)
    assert "Zerbrechlich: Kartusche separat polstern" in text
    assert "Alles Gute zum Geburtstag, Ben!" in text
    xml = documents.create_order_xml(DocumentInput(order=order, shipment=shipment))
    content = stored(engine, xml.document_id).content.decode()
    assert '<REMARKS type="giftmessage">Alles Gute zum Geburtstag, Ben!</REMARKS>' in content
    assert '<REMARKS type="packernote">' in content


def shipment_of(order: OrderView) -> ShipmentView:
    return ShipmentView(shipment_id=f"{order.order_id}-1", warehouse="MAIN")


@pytest.fixture
def documents(engine: Engine) -> DocumentActivities:
    return DocumentActivities(engine, Settings())


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL WeasyPrint asks the template fetcher for during the test."""
    urls: list[str] = []
    original = TemplateFetcher.fetch

    def recording_fetch(self: TemplateFetcher, url: str, headers: Any = None) -> Any:
        urls.append(url)
        return original(self, url, headers)

    monkeypatch.setattr(TemplateFetcher, "fetch", recording_fetch)
    return urls


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def stored(engine: Engine, document_id: str) -> Document:
    row = get_document(engine, document_id)
    assert row is not None
    return row


def last_invoice_number(engine: Engine, year: int | None = None, *,
                        kind: str = "invoice") -> int:
    with Session(engine) as session:
        row = session.get(NumberRange, (kind, year or datetime.now(UTC).year))
        return row.last_number if row is not None else 0


def sequence_of(number: str | None, *, prefix: str = "RE") -> int:
    assert number is not None
    match = re.fullmatch(rf"{prefix}-{datetime.now(UTC).year}-(\d{{6}})", number)
    assert match, number
    return int(match.group(1))


# --- delivery note -------------------------------------------------------------------


def test_delivery_note_lists_lines_without_prices(documents: DocumentActivities,
                                                  engine: Engine) -> None:
    order = make_order()
    doc = documents.create_delivery_note(DocumentInput(order=order, shipment=shipment_of(order)))

    assert doc.kind == "delivery_note"
    assert doc.document_id == f"{order.order_id}-delivery_note-{order.order_id}-1"
    assert doc.filename == f"{order.order_id}-1-lieferschein.pdf"
    row = stored(engine, doc.document_id)
    assert row.media_type == "application/pdf" and row.content.startswith(b"%PDF")
    text = pdf_text(row.content)
    for expected in ("Lieferschein", order.order_id, "Trekkingzelt 2P", "Gaskartusche",
                     "TENT-2P", "GAS-1", "Lindenweg 4", "Bitte beim Nachbarn abgeben."):
        assert expected in text
    assert "229,00" not in text
    assert sequence_of(doc.number, prefix="LS") >= 1
    assert f"Lieferscheinnummer: {doc.number}" in text


def test_delivery_note_is_stored_once(documents: DocumentActivities, engine: Engine,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    order = make_order()
    doc_input = DocumentInput(order=order, shipment=shipment_of(order))
    first = documents.create_delivery_note(doc_input)
    sha = stored(engine, first.document_id).sha256

    monkeypatch.setattr(documents.renderer, "render_pdf", _must_not_render)
    again = documents.create_delivery_note(doc_input)

    assert again == first
    assert stored(engine, first.document_id).sha256 == sha


def _must_not_render(*_: Any, **__: Any) -> bytes:
    raise AssertionError("a stored document must not be rendered again")


# --- invoice -------------------------------------------------------------------------


def test_invoice_pdf_has_number_lines_and_vat(documents: DocumentActivities,
                                              engine: Engine) -> None:
    order = make_order()
    before = last_invoice_number(engine)

    doc = documents.issue_invoice(DocumentInput(order=order))

    assert doc.kind == "invoice" and doc.document_id == f"{order.order_id}-invoice"
    assert sequence_of(doc.number) == before + 1
    assert doc.filename == f"{doc.number}.pdf"
    text = pdf_text(stored(engine, doc.document_id).content)
    # 229.00 + 2 x 19.95 + 4.90 shipping = 273.80 gross; shipping split 229.00 : 39.90 into
    # 4.17 + 0.73; VAT contained: 19 % of 233.17 = 37.23, 7 % of 40.63 = 2.66
    for expected in ("Rechnung", str(doc.number), order.order_id, "Trekkingzelt 2P",
                     "Gaskartusche", "273,80", "37,23", "2,66", "39,90", "4,90", "anteilig",
                     "IBAN", "DE02120300000000202051"):
        assert expected in text, expected


def test_reverse_charge_invoice_shows_zero_vat_and_the_legal_note(
        documents: DocumentActivities, engine: Engine) -> None:
    order = make_order(customer_type="b2b", country="AT", vat_id="ATU13585627")
    invoice = compute_invoice(order)
    assert invoice.treatment == "reverse_charge" and invoice.tax == 0
    assert invoice.gross == order.totals.total == Decimal("273.80")  # net, nothing added
    doc = documents.issue_invoice(DocumentInput(order=order))
    text = " ".join(pdf_text(stored(engine, doc.document_id).content).split())
    assert "Reverse Charge" in text and "ATU13585627" in text
    assert "zzgl. USt. 0 % auf 273,80" in text


def test_oss_invoice_uses_the_destination_rates() -> None:
    invoice = compute_invoice(make_order(country="FR"))
    assert invoice.treatment == "oss"
    assert [line.tax_rate for line in invoice.lines] == [Decimal("20"), Decimal("5.5")]
    assert [t.rate for t in invoice.taxes] == [Decimal("20"), Decimal("5.5")]
    assert invoice.gross == Decimal("273.80")  # gross prices stay what the shop asked


def test_b2c_prices_contain_vat_and_b2b_prices_get_it_added() -> None:
    lines = [OrderLine(sku="A", name="A", quantity=3, unit_price=Decimal("33.33"),
                       tax_rate=Decimal("19"))]
    b2c = compute_invoice(make_order(lines=lines, shipping="10.00"))
    b2b = compute_invoice(make_order(lines=lines, shipping="10.00", customer_type="b2b"))

    assert (b2c.gross, b2c.tax, b2c.net) == (Decimal("109.99"), Decimal("17.56"),
                                             Decimal("92.43"))
    assert (b2b.net, b2b.tax, b2b.gross) == (Decimal("109.99"), Decimal("20.90"),
                                             Decimal("130.89"))
    assert [t.rate for t in b2b.taxes] == [Decimal("19")]


@pytest.mark.parametrize("customer_type", ["b2c", "b2b"])
@pytest.mark.parametrize("prices", [["0.03", "0.03"], ["229.00", "19.95", "0.99"],
                                    ["12.34", "56.78", "9.99"]])
def test_invoice_total_is_the_order_total(customer_type: str, prices: list[str]) -> None:
    rates = ["19", "7", "19"]
    lines = [OrderLine(sku=f"SKU-{i}", name=f"Artikel {i}", quantity=i + 1,
                       unit_price=Decimal(price), tax_rate=Decimal(rates[i]))
             for i, price in enumerate(prices)]
    order = make_order(lines=lines, customer_type=customer_type)

    invoice = compute_invoice(order)

    assert invoice.gross == order.totals.total
    assert invoice.net + invoice.tax == invoice.gross
    assert all(t.net + t.tax == t.gross for t in invoice.taxes)


def test_invoice_twice_returns_the_same_number(documents: DocumentActivities,
                                               engine: Engine) -> None:
    order = make_order()
    first = documents.issue_invoice(DocumentInput(order=order))
    after_first = last_invoice_number(engine)

    again = documents.issue_invoice(DocumentInput(order=order))

    assert again == first
    assert last_invoice_number(engine) == after_first


def test_a_crash_between_number_and_pdf_keeps_the_number_for_the_retry(
        documents: DocumentActivities, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The number is reserved with the row before rendering; a failed attempt leaves the
    reservation (nothing visible yet) and the retry renders it: no gap, no duplicate."""
    order = make_order()
    before = last_invoice_number(engine)

    def broken(*_: Any, **__: Any) -> bytes:
        raise RuntimeError("renderer crashed")

    with monkeypatch.context() as patch:
        patch.setattr(documents.renderer, "render_pdf", broken)
        with pytest.raises(RuntimeError, match="renderer crashed"):
            documents.issue_invoice(DocumentInput(order=order))
    assert last_invoice_number(engine) == before + 1
    assert get_document(engine, f"{order.order_id}-invoice") is None  # not issued yet
    with Session(engine) as session:
        reserved = session.get(Document, f"{order.order_id}-invoice")
        assert reserved is not None and reserved.content is None
        assert sequence_of(reserved.number) == before + 1

    doc = documents.issue_invoice(DocumentInput(order=order))

    assert sequence_of(doc.number) == before + 1
    assert last_invoice_number(engine) == before + 1
    text = pdf_text(stored(engine, doc.document_id).content)
    assert doc.number in text


def test_an_issued_document_is_never_rendered_again(documents: DocumentActivities,
                                                     engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    order = make_order()
    doc = documents.issue_invoice(DocumentInput(order=order))
    row = stored(engine, doc.document_id)

    def must_not_render(*_: Any, **__: Any) -> bytes:
        raise AssertionError("an issued invoice was rendered again")

    monkeypatch.setattr(documents.renderer, "render_pdf", must_not_render)
    assert documents.issue_invoice(DocumentInput(order=order)) == doc
    again = stored(engine, doc.document_id)
    assert (again.content, again.sha256) == (row.content, row.sha256)
    assert row.sha256 == hashlib.sha256(row.content or b"").hexdigest()


def test_no_lock_is_held_while_a_document_renders(documents: DocumentActivities,
                                                   engine: Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Invoice A's rendering waits until invoice B is issued: that only finishes if A holds
    no number-range lock while it renders."""
    slow, fast = make_order(name="Slow Renderer"), make_order(name="Fast Renderer")
    b_issued = threading.Event()
    real_render = documents.renderer.render_pdf

    def render(template: str, context: dict[str, Any], **options: Any) -> bytes:
        if context["order"].order_id == slow.order_id:
            assert b_issued.wait(timeout=30), "invoice B never got a number"
        return real_render(template, context, **options)

    monkeypatch.setattr(documents.renderer, "render_pdf", render)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(documents.issue_invoice, DocumentInput(order=slow))
        deadline = time.monotonic() + 30
        while not reserved_number(engine, f"{slow.order_id}-invoice"):
            assert time.monotonic() < deadline, "invoice A never reserved its number"
            time.sleep(0.02)
        second = documents.issue_invoice(DocumentInput(order=fast))
        b_issued.set()
        a = first.result(timeout=60)
    assert sequence_of(second.number) == sequence_of(a.number) + 1


def reserved_number(engine: Engine, document_id: str) -> str | None:
    with Session(engine) as session:
        row = session.get(Document, document_id)
        return row.number if row is not None else None


def test_concurrent_invoices_from_two_workers_are_gapless(engine: Engine,
                                                          database_url: str) -> None:
    """50 invoices and 50 delivery notes at once from two independent "workers" (own
    engines, own connection pools) on the same database."""
    workers = [DocumentActivities(make_engine(database_url), Settings()) for _ in range(2)]
    orders = [make_order() for _ in range(50)]
    before = last_invoice_number(engine)
    before_notes = last_invoice_number(engine, kind="delivery_note")

    def issue(i: int) -> tuple[DocumentView, DocumentView]:
        worker = workers[i % 2]
        order = orders[i]
        note = worker.create_delivery_note(DocumentInput(order=order,
                                                         shipment=shipment_of(order)))
        return worker.issue_invoice(DocumentInput(order=order)), note

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            docs = list(pool.map(issue, range(50)))
    finally:
        for worker in workers:
            worker.engine.dispose()

    numbers = sorted(sequence_of(invoice.number) for invoice, _ in docs)
    assert numbers == list(range(before + 1, before + 51))
    notes = sorted(sequence_of(note.number, prefix="LS") for _, note in docs)
    assert notes == list(range(before_notes + 1, before_notes + 51))
    assert last_invoice_number(engine) == before + 50
    assert last_invoice_number(engine, kind="delivery_note") == before_notes + 50


def test_concurrent_retries_of_one_invoice_burn_one_number(documents: DocumentActivities,
                                                           engine: Engine) -> None:
    order = make_order()
    before = last_invoice_number(engine)

    with ThreadPoolExecutor(max_workers=5) as pool:
        docs = list(pool.map(lambda _: documents.issue_invoice(DocumentInput(order=order)),
                             range(5)))

    assert {doc.number for doc in docs} == {docs[0].number}
    assert sequence_of(docs[0].number) == before + 1
    assert last_invoice_number(engine) == before + 1
    with Session(engine) as session:
        rows = session.exec(select(Document).where(Document.order_id == order.order_id)).all()
    assert len(rows) == 1


# --- openTRANS -----------------------------------------------------------------------


def test_order_xml_validates_against_the_xsd(documents: DocumentActivities,
                                             engine: Engine) -> None:
    order = make_order(name="Jörg Müller & Söhne")
    shipment = shipment_of(order)

    doc = documents.create_order_xml(DocumentInput(order=order, shipment=shipment))

    assert (doc.kind, doc.filename) == ("order_xml", f"{shipment.shipment_id}.xml")
    row = stored(engine, doc.document_id)
    assert row.media_type == "application/xml"
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    schema = etree.XMLSchema(etree.parse(str(opentrans.SCHEMA_PATH), parser))
    root = etree.fromstring(row.content, parser)
    schema.assertValid(root)
    ns = {"ot": opentrans.OPENTRANS_NS, "bm": opentrans.BMECAT_NS}
    assert root.findtext("ot:ORDER_HEADER/ot:ORDER_INFO/ot:ORDER_ID", namespaces=ns) == \
        order.order_id
    assert root.xpath("//bm:SUPPLIER_PID/text()", namespaces=ns) == ["TENT-2P", "GAS-1"]
    assert root.xpath("//ot:PRICE_LINE_AMOUNT/text()", namespaces=ns) == ["229.00", "39.90"]
    assert root.findtext("ot:ORDER_SUMMARY/ot:TOTAL_ITEM_NUM", namespaces=ns) == "2"
    assert root.findtext("ot:ORDER_SUMMARY/ot:TOTAL_AMOUNT", namespaces=ns) == "268.90"
    assert "Jörg Müller &amp; Söhne" in row.content.decode()


def test_long_texts_are_clipped_to_the_schema_limits(documents: DocumentActivities,
                                                    engine: Engine) -> None:
    order = make_order(name="Anna " + "Berg-" * 30, lines=[
        OrderLine(sku="LONG-1", name="Zelt " * 35, quantity=1, unit_price=Decimal("9.99"),
                  tax_rate=Decimal("19"))])
    shipment = ShipmentView(shipment_id="S" * 120, warehouse="MAIN")

    xml = documents.create_order_xml(DocumentInput(order=order, shipment=shipment))
    note = documents.create_delivery_note(DocumentInput(order=order, shipment=shipment))

    for doc in (xml, note):
        assert len(doc.document_id) <= 160 and doc.document_id.startswith(order.order_id)
        assert stored(engine, doc.document_id).order_id == order.order_id
    assert xml.document_id != note.document_id


def test_broken_document_raises_invalid_document() -> None:
    root = opentrans.build_order(make_order(), supplier_name="Demo-Shop")
    opentrans.validate(root)
    root.remove(root.find(f"{{{opentrans.OPENTRANS_NS}}}ORDER_ITEM_LIST"))

    with pytest.raises(ApplicationError) as raised:
        opentrans.validate(root)

    assert raised.value.type == "InvalidDocument"
    assert raised.value.non_retryable


def test_invalid_order_xml_is_not_stored(documents: DocumentActivities, engine: Engine) -> None:
    # bmecat's SUPPLIER_PID allows 32 characters; our SKUs may have 64
    order = make_order(lines=[OrderLine(sku="X" * 40, name="Langer Artikel", quantity=1,
                                        unit_price=Decimal("1.00"), tax_rate=Decimal("19"))])
    with pytest.raises(ApplicationError) as raised:
        documents.create_order_xml(DocumentInput(order=order, shipment=shipment_of(order)))

    assert raised.value.type == "InvalidDocument"
    with Session(engine) as session:
        assert session.exec(select(Document).where(Document.order_id == order.order_id)).all() \
            == []


# --- escaping and the URL fetcher ----------------------------------------------------


def test_hostile_texts_are_printed_not_fetched(documents: DocumentActivities, engine: Engine,
                                               fetched: list[str]) -> None:
    order = make_order(name=HOSTILE_NAME, comment=HOSTILE_COMMENT)

    note = documents.create_delivery_note(DocumentInput(order=order, shipment=shipment_of(order)))
    invoice = documents.issue_invoice(DocumentInput(order=order))

    assert HOSTILE_NAME in pdf_text(stored(engine, note.document_id).content)
    assert HOSTILE_COMMENT in pdf_text(stored(engine, note.document_id).content)
    assert HOSTILE_NAME in pdf_text(stored(engine, invoice.document_id).content)
    assert fetched, "the stylesheet is fetched through the template fetcher"
    templates = TEMPLATES.resolve()
    for url in fetched:
        assert url.startswith("file://")
        assert Path(url.removeprefix("file://")).resolve().is_relative_to(templates), url


def test_html_is_autoescaped() -> None:
    renderer = PdfRenderer(TEMPLATES)
    order = make_order(name=HOSTILE_NAME, comment=HOSTILE_COMMENT)
    html = renderer.render_html("lieferschein.html", {
        "shop": {"name": "Shop", "address": "Adresse", "bank_account_holder": "",
                 "bank_iban": "", "bank_bic": ""},
        "order": order, "shipment": None, "number": "LS-2026-000001", "date": datetime.now(UTC)})

    assert "<img" not in html and "&lt;img src=&#34;http://127.0.0.1:9/x.png&#34;&gt;" in html
    assert "<link rel=stylesheet" not in html and "&lt;link rel=stylesheet" in html


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.png",
    "https://example.com/style.css",
    "file:///etc/passwd",
    f"file://{TEMPLATES}/../../settings.py",
    f"file://{TEMPLATES}/missing.css",
    "data:text/css,body{}",
    "ftp://127.0.0.1/x",
])
def test_fetcher_refuses_everything_outside_the_templates(url: str) -> None:
    with pytest.raises(FetchRefused):
        TemplateFetcher(TEMPLATES).fetch(url)


def test_fetcher_serves_template_files_but_not_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "documents"
    root.mkdir()
    (root / "style.css").write_text("body { color: black }")
    (tmp_path / "secret.txt").write_text("geheim")
    (root / "escape.css").symlink_to(tmp_path / "secret.txt")
    fetcher = TemplateFetcher(root)

    response = fetcher.fetch((root / "style.css").as_uri())
    assert response.read() == b"body { color: black }"
    assert response.content_type == "text/css"
    with pytest.raises(FetchRefused):
        fetcher.fetch((root / "escape.css").as_uri())


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP port that records whether anything connected to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        sock.setblocking(False)
        yield sock


def test_operator_template_cannot_reach_out(tmp_path: Path, listener: socket.socket,
                                            fetched: list[str]) -> None:
    port = listener.getsockname()[1]
    (tmp_path / "style.css").write_text("h1 { color: #333 }")
    (tmp_path / "evil.html").write_text(
        '<html><head><link rel="stylesheet" href="style.css">'
        '<link rel="stylesheet" href="file:///etc/passwd">'
        f'<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css"></head>'
        f'<body><h1>{{{{ title }}}}</h1><img src="http://127.0.0.1:{port}/x.png">'
        '<img src="../secret.png"></body></html>')

    pdf = PdfRenderer(tmp_path).render_pdf("evil.html", {"title": "Hallo"})

    assert pdf.startswith(b"%PDF") and "Hallo" in pdf_text(pdf)
    assert (tmp_path / "style.css").as_uri() in fetched
    assert f"http://127.0.0.1:{port}/x.png" in fetched  # asked, and refused
    assert "file:///etc/passwd" in fetched
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


def test_document_dates_are_days_in_the_shop_time_zone() -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 on 1 December in Berlin
    assert format_date(late, ZoneInfo("Europe/Berlin")) == "01.12.2026"
    assert format_date(late) == "30.11.2026"
    assert format_date(date(2026, 11, 30), ZoneInfo("Europe/Berlin")) == "30.11.2026"
    assert PdfRenderer(TEMPLATES, "Europe/Berlin").env.filters["date"](late) == "01.12.2026"
    assert PdfRenderer(TEMPLATES, "America/New_York").env.filters["date"](late) == "30.11.2026"


def test_a_number_takes_the_year_of_the_shop_date_and_keeps_its_moment(
        engine: Engine, database_url: str) -> None:
    """At 00:30 on 1 January in Berlin (23:30 UTC the day before) the number is the new
    year's; the issue moment reads back unchanged, also from a PostgreSQL session that is
    not on UTC."""
    moment = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    options = ({"connect_args": {"options": "-c timezone=Europe/Berlin"}}
               if database_url.startswith("postgresql") else {})
    berlin_session = make_engine(database_url, **options)
    kind = f"y{uuid.uuid4().hex[:8]}"
    try:
        for zone, year in (("Europe/Berlin", 2026), ("UTC", 2025)):
            store = DocumentStore(berlin_session, zone, clock=lambda: moment)
            target = Target(f"order-{kind}", f"test-{zone}", kind, f"{kind}-{year}",
                            "application/pdf")
            document = store.issue_numbered(target, "X-{year}-{number:03d}",
                                            lambda number: f"{number}.pdf",
                                            lambda reserved: b"%PDF-1.4 test")
            assert document.number == f"X-{year}-001"
            with Session(berlin_session) as session:
                row = session.get(Document, target.document_id)
            assert row is not None and row.issued_at == moment
    finally:
        berlin_session.dispose()
