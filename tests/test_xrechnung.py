"""XRechnung 3.0 (CII) for B2B customers who ask for it: the XML passes the Factur-X XSD, the
EN 16931 schematron and the KoSIT XRechnung schematron (BR-DE-*, vendored in
``tests/schematron``), and the issued invoice stores it beside the PDF."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from saxonche import PySaxonProcessor, PyXsltExecutable
from sqlalchemy import Engine

from activities.documents import DocumentActivities, get_document
from activities.einvoice import (
    CREDIT_NOTE,
    INVOICE,
    RAM,
    RSM,
    XRECHNUNG,
    build_cii,
    check_xsd,
    einvoice_format,
    order_einvoice,
    xml_of_pdf,
)
from models.activities import DocumentInput
from models.billing import BillingProfile
from models.invoice import compute_invoice
from models.orders import OrderView
from settings import Settings
from tests.test_documents import make_order
from tests.test_einvoice import SCHEMATRON, SVRL

XRECHNUNG_SCHEMATRON = Path(__file__).parent / "schematron" / "XRechnung-CII-validation.xsl"
# The Factur-X schematron is the EN 16931 rule set plus one check that the document names a
# Factur-X profile (BT-24); an XRechnung names the XRechnung CIUS there instead.
FACTUR_X_PROFILE_ID = "FX-SCH-A-000556"
NS = {"rsm": RSM, "ram": RAM}
Rules = dict[str, tuple[PySaxonProcessor, PyXsltExecutable]]


@pytest.fixture(scope="module")
def rules() -> Iterator[list[PyXsltExecutable]]:
    with PySaxonProcessor(license=False) as processor:
        compile_ = processor.new_xslt30_processor().compile_stylesheet
        yield [processor, compile_(stylesheet_file=str(SCHEMATRON)),  # type: ignore[list-item]
               compile_(stylesheet_file=str(XRECHNUNG_SCHEMATRON))]


def failures(rules: list, xml: bytes) -> dict[str, str]:  # type: ignore[type-arg]
    """Errors (not warnings) of EN 16931 and XRechnung: rule id -> message."""
    processor, *executables = rules
    broken: dict[str, str] = {}
    for executable in executables:
        report = executable.transform_to_string(
            xdm_node=processor.parse_xml(xml_text=xml.decode()))
        assert report and "schematron-output" in report, report
        for failed in etree.fromstring(report.encode()).iter(f"{{{SVRL}}}failed-assert"):
            if failed.get("flag") in ("warning", "information") \
                    or failed.get("id") == FACTUR_X_PROFILE_ID:
                continue
            broken[failed.get("id") or "?"] = " ".join("".join(failed.itertext()).split())
    return broken


def xrechnung_of(order: OrderView, *, type_code: str = INVOICE,
                 buyer_reference: str | None = "04011000-12345-34") -> bytes:
    settings = Settings()
    invoice = compute_invoice(order, settings.tax)
    return build_cii(order_einvoice(
        order, invoice, number="RE-2026-000042", type_code=type_code,
        issued_on=date(2026, 11, 25), delivered_on=date(2026, 11, 24),
        due_on=date(2026, 12, 9) if type_code == INVOICE else None, settings=settings,
        preceding_invoice="RE-2026-000041" if type_code == CREDIT_NOTE else None,
        xrechnung=True, buyer_reference=buyer_reference))


CASES = {
    "b2b invoice terms": lambda: xrechnung_of(make_order(customer_type="b2b")),
    "b2b prepaid (nothing due)": lambda: xrechnung_of(
        make_order(customer_type="b2b", payment_method="prepaid")),
    "b2b reverse charge": lambda: xrechnung_of(
        make_order(customer_type="b2b", country="AT", vat_id="ATU13585627")),
    "buyer reference defaults to the order id": lambda: xrechnung_of(
        make_order(customer_type="b2b"), buyer_reference=None),
    "credit note": lambda: xrechnung_of(make_order(customer_type="b2b"),
                                        type_code=CREDIT_NOTE),
}


@pytest.mark.parametrize("case", CASES)
def test_xrechnung_passes_xsd_en16931_and_kosit_rules(case: str, rules: list) -> None:  # type: ignore[type-arg]
    xml = CASES[case]()

    check_xsd(xml)
    assert failures(rules, xml) == {}
    root = etree.fromstring(xml)
    assert root.findtext(".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID",
                         namespaces=NS) == XRECHNUNG
    assert root.findtext(".//ram:ApplicableHeaderTradeAgreement/ram:BuyerReference",
                         namespaces=NS)


@pytest.mark.parametrize(("remove", "rule"), [
    (".//ram:ApplicableHeaderTradeAgreement/ram:BuyerReference", "BR-DE-15"),
    (".//ram:SellerTradeParty/ram:DefinedTradeContact", "BR-DE-2"),
    (".//ram:SpecifiedTradeSettlementPaymentMeans", "BR-DE-1"),
])
def test_the_kosit_rules_catch_what_xrechnung_adds(remove: str, rule: str,
                                                   rules: list) -> None:  # type: ignore[type-arg]
    root = etree.fromstring(xrechnung_of(make_order(customer_type="b2b")))
    node = root.find(remove, namespaces=NS)
    assert node is not None
    node.getparent().remove(node)

    assert rule in failures(rules, etree.tostring(root))


def test_a_factur_x_document_is_not_an_xrechnung(rules: list) -> None:  # type: ignore[type-arg]
    settings = Settings()
    order = make_order(customer_type="b2b")
    xml = build_cii(order_einvoice(
        order, compute_invoice(order, settings.tax), number="RE-2026-000042",
        type_code=INVOICE, issued_on=date(2026, 11, 25), delivered_on=date(2026, 11, 24),
        settings=settings))
    assert "BR-DE-15" in failures(rules, xml)


@pytest.mark.parametrize(("profile", "customer_type", "default", "expected"), [
    (BillingProfile(), "b2b", "factur-x", "factur-x"),
    (BillingProfile(), "b2b", "xrechnung", "xrechnung"),
    (BillingProfile(), "b2c", "xrechnung", "factur-x"),
    (BillingProfile(einvoice="xrechnung"), "b2b", "factur-x", "xrechnung"),
    (BillingProfile(einvoice="factur-x"), "b2b", "xrechnung", "factur-x"),
])
def test_einvoice_format(profile: BillingProfile, customer_type: str, default: str,
                         expected: str) -> None:
    settings = Settings(b2b_einvoice=default)  # type: ignore[arg-type]
    assert einvoice_format(profile, make_order(customer_type=customer_type),
                           settings) == expected


def test_issued_invoice_stores_the_xrechnung_beside_the_pdf(engine: Engine,
                                                            rules: list) -> None:  # type: ignore[type-arg]
    documents = DocumentActivities(engine, Settings())
    order = make_order(customer_type="b2b")
    billing = BillingProfile(einvoice="xrechnung", buyer_reference="PO-4711",
                             payment_term=__import__("datetime").timedelta(days=30))

    doc = documents.issue_invoice(DocumentInput(order=order, billing=billing))
    again = documents.issue_invoice(DocumentInput(order=order, billing=billing))

    assert again.einvoice_id == doc.einvoice_id and again.number == doc.number
    assert doc.einvoice_id is not None
    xml_row = get_document(engine, doc.einvoice_id)
    assert xml_row is not None and xml_row.content is not None
    assert xml_row.media_type == "application/xml" and xml_row.filename == f"{doc.number}.xml"
    assert failures(rules, xml_row.content) == {}
    root = etree.fromstring(xml_row.content)
    assert root.findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == doc.number
    assert root.findtext(".//ram:BuyerReference", namespaces=NS) == "PO-4711"
    assert "30 Tagen" in (root.findtext(".//ram:SpecifiedTradePaymentTerms/ram:Description",
                                        namespaces=NS) or "")
    grand = root.findtext(".//ram:GrandTotalAmount", namespaces=NS)
    assert Decimal(grand or "0") == doc.total
    pdf_row = get_document(engine, doc.document_id)
    assert pdf_row is not None and pdf_row.content is not None
    found = xml_of_pdf(pdf_row.content)  # the archived PDF stays a Factur-X
    assert found is not None and b"xeinkauf" not in found[1]
