"""Factur-X / ZUGFeRD e-invoices (profile EN 16931): the CII XML and the PDF/A-3b carrying it.

``build_cii`` writes the UN/CEFACT Cross Industry Invoice (D16B, as Factur-X 1.0 / ZUGFeRD
2.x use it) from :class:`EinvoiceDocument`; the figures come from
``models.invoice.einvoice_figures``, so the EN 16931 calculation rules hold by
construction. ``embed`` attaches the XML as ``factur-x.xml`` (AFRelationship ``Data``) to a
PDF/A-3b rendered by WeasyPrint and writes the Factur-X XMP metadata, using the ``factur-x``
package, which also checks the XML against the Factur-X XSD first. A document that fails
the XSD is a non-retryable ``ApplicationError(type="InvalidDocument")``: rendering again
gives the same XML.

With ``xrechnung`` the same builder writes an XRechnung 3.0 in CII syntax (specification
identifier of KoSIT, business process, buyer reference BT-10, seller contact BG-6, payment
instructions always): customers whose profile asks for it get that XML by mail instead of
the PDF (``einvoice_format``).

The schematrons (EN 16931 BR-*, XRechnung BR-DE-*) are not run at issue time: they need an
XSLT 3 processor (the tests run the official rules with ``saxonche``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import facturx
from lxml import etree
from temporalio.exceptions import ApplicationError

from activities.opentrans import INVALID_DOCUMENT
from models.billing import BillingProfile, EinvoiceFormat
from models.invoice import EinvoiceFigures, Invoice, einvoice_figures
from models.orders import Address, OrderView
from settings import Settings

__all__ = [
    "CREDIT_NOTE",
    "INVOICE",
    "XRECHNUNG",
    "EinvoiceDocument",
    "Party",
    "build_cii",
    "check_xsd",
    "einvoice_format",
    "embed",
    "order_einvoice",
    "xml_of_pdf",
]

log = logging.getLogger("orders.documents")

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "qdt": QDT, "udt": UDT}
EN16931 = "urn:cen.eu:en16931:2017"
XRECHNUNG = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PEPPOL_BILLING = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"  # BT-23
NOT_DEFINED = "1"  # UNTDID 4461: a credit note's payment means
INVOICE = "380"  # UNTDID 1001 commercial invoice
CREDIT_NOTE = "381"
SEPA_CREDIT_TRANSFER = "58"  # UNTDID 4461
IN_CASH = "10"  # UNTDID 4461: cash on delivery, paid to the carrier
PIECE = "H87"  # UN/ECE rec. 20


@dataclass(frozen=True)
class Party:
    name: str
    address: Address
    vat_id: str | None = None
    email: str | None = None
    contact_name: str | None = None  # BG-6 seller contact (XRechnung)
    phone: str | None = None


@dataclass(frozen=True)
class EinvoiceDocument:
    """Everything an e-invoice states besides the figures."""

    number: str
    type_code: str  # INVOICE or CREDIT_NOTE
    issued_on: date
    delivered_on: date
    currency: str
    seller: Party
    buyer: Party
    ship_to: Address
    figures: EinvoiceFigures
    order_reference: str
    prepaid: Decimal  # already paid (prepaid / paid at order); the rest is due
    due_on: date | None = None  # for invoice terms
    payment_terms: str = ""  # a text, e.g. "Zahlbar innerhalb von 14 Tagen"
    iban: str | None = None  # the seller's account for credit transfers
    bic: str | None = None
    account_holder: str | None = None
    notes: tuple[str, ...] = ()
    preceding_invoice: str | None = None  # a credit note's invoice
    preceding_issued_on: date | None = None
    # a final invoice's partial invoices (BG-3, number and issue date), which it is net of
    partial_invoices: tuple[tuple[str, date], ...] = ()
    # XRechnung 3.0 (CII syntax) instead of Factur-X EN 16931: its specification id, the
    # buyer reference (BT-10), the seller contact and payment instructions always
    xrechnung: bool = False
    buyer_reference: str | None = None
    cash_on_delivery: bool = False  # paid to the carrier in cash: payment means 10, no IBAN


def _amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def _rate(value: Decimal) -> str:
    return f"{value.normalize():f}"


class _Builder:
    """Appends CII elements: ``self.el(parent, "ram:Name", text, **attributes)``."""

    def el(self, parent: etree._Element, tag: str, text: str | None = None,
           **attributes: str) -> etree._Element:
        prefix, local = tag.split(":")
        node = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{local}", attributes)
        if text is not None:
            node.text = text
        return node

    def date(self, parent: etree._Element, tag: str, value: date) -> None:
        wrapper = self.el(parent, tag)
        self.el(wrapper, "udt:DateTimeString", value.strftime("%Y%m%d"), format="102")

    def address(self, parent: etree._Element, address: Address) -> None:
        """The postal address; parts the order left empty are left out (no empty
        elements: PEPPOL-EN16931-R008)."""
        postal = self.el(parent, "ram:PostalTradeAddress")
        if address.postal_code:
            self.el(postal, "ram:PostcodeCode", address.postal_code)
        if address.street:
            self.el(postal, "ram:LineOne", address.street)
        if address.company and address.name and address.company != address.name:
            self.el(postal, "ram:LineTwo", address.name)
        if address.city:
            self.el(postal, "ram:CityName", address.city)
        self.el(postal, "ram:CountryID", address.country)

    def party(self, parent: etree._Element, tag: str, party: Party) -> None:
        node = self.el(parent, tag)
        self.el(node, "ram:Name", party.name)
        if party.contact_name or party.phone:
            contact = self.el(node, "ram:DefinedTradeContact")
            if party.contact_name:
                self.el(contact, "ram:PersonName", party.contact_name)
            if party.phone:
                phone = self.el(contact, "ram:TelephoneUniversalCommunication")
                self.el(phone, "ram:CompleteNumber", party.phone)
            if party.email:
                mail = self.el(contact, "ram:EmailURIUniversalCommunication")
                self.el(mail, "ram:URIID", party.email)
        self.address(node, party.address)
        if party.email:
            uri = self.el(node, "ram:URIUniversalCommunication")
            self.el(uri, "ram:URIID", party.email, schemeID="EM")
        if party.vat_id:
            registration = self.el(node, "ram:SpecifiedTaxRegistration")
            self.el(registration, "ram:ID", party.vat_id, schemeID="VA")


def build_cii(doc: EinvoiceDocument) -> bytes:
    """The CII XML of ``doc`` (UTF-8, with declaration)."""
    b = _Builder()
    figures = doc.figures
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = b.el(root, "rsm:ExchangedDocumentContext")
    if doc.xrechnung:
        b.el(b.el(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID",
             PEPPOL_BILLING)
    b.el(b.el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID",
         XRECHNUNG if doc.xrechnung else EN16931)

    header = b.el(root, "rsm:ExchangedDocument")
    b.el(header, "ram:ID", doc.number)
    b.el(header, "ram:TypeCode", doc.type_code)
    b.date(header, "ram:IssueDateTime", doc.issued_on)
    for text in doc.notes:
        b.el(b.el(header, "ram:IncludedNote"), "ram:Content", text)

    transaction = b.el(root, "rsm:SupplyChainTradeTransaction")
    for position, line in enumerate(figures.lines, start=1):
        item = b.el(transaction, "ram:IncludedSupplyChainTradeLineItem")
        b.el(b.el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(position))
        product = b.el(item, "ram:SpecifiedTradeProduct")
        b.el(product, "ram:SellerAssignedID", line.sku)
        b.el(product, "ram:Name", line.name)
        agreement = b.el(item, "ram:SpecifiedLineTradeAgreement")
        price = b.el(agreement, "ram:NetPriceProductTradePrice")
        b.el(price, "ram:ChargeAmount", f"{line.net_price:f}")
        delivery = b.el(item, "ram:SpecifiedLineTradeDelivery")
        b.el(delivery, "ram:BilledQuantity", str(line.quantity), unitCode=PIECE)
        settlement = b.el(item, "ram:SpecifiedLineTradeSettlement")
        tax = b.el(settlement, "ram:ApplicableTradeTax")
        b.el(tax, "ram:TypeCode", "VAT")
        b.el(tax, "ram:CategoryCode", line.category)
        b.el(tax, "ram:RateApplicablePercent", _rate(line.rate))
        summation = b.el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        b.el(summation, "ram:LineTotalAmount", _amount(line.net_amount))

    agreement = b.el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if doc.buyer_reference:
        b.el(agreement, "ram:BuyerReference", doc.buyer_reference)
    b.party(agreement, "ram:SellerTradeParty", doc.seller)
    b.party(agreement, "ram:BuyerTradeParty", doc.buyer)
    b.el(b.el(agreement, "ram:SellerOrderReferencedDocument"), "ram:IssuerAssignedID",
         doc.order_reference)

    delivery = b.el(transaction, "ram:ApplicableHeaderTradeDelivery")
    ship_to = b.el(delivery, "ram:ShipToTradeParty")
    b.el(ship_to, "ram:Name", doc.ship_to.company or doc.ship_to.name)
    b.address(ship_to, doc.ship_to)
    b.date(b.el(delivery, "ram:ActualDeliverySupplyChainEvent"), "ram:OccurrenceDateTime",
           doc.delivered_on)

    settlement = b.el(transaction, "ram:ApplicableHeaderTradeSettlement")
    if doc.type_code == INVOICE:
        b.el(settlement, "ram:PaymentReference", doc.number)
    b.el(settlement, "ram:InvoiceCurrencyCode", doc.currency)
    due = figures.grand_total - doc.prepaid
    if doc.cash_on_delivery and doc.type_code == INVOICE:  # not a transfer: no account
        means = b.el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        b.el(means, "ram:TypeCode", IN_CASH)
    elif doc.xrechnung and doc.type_code != INVOICE:  # BR-DE-1: payment instructions always
        means = b.el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        b.el(means, "ram:TypeCode", NOT_DEFINED)
    elif doc.iban and doc.type_code == INVOICE and (due > 0 or doc.xrechnung):
        means = b.el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        b.el(means, "ram:TypeCode", SEPA_CREDIT_TRANSFER)
        account = b.el(means, "ram:PayeePartyCreditorFinancialAccount")
        b.el(account, "ram:IBANID", doc.iban.replace(" ", ""))
        if doc.account_holder:
            b.el(account, "ram:AccountName", doc.account_holder)
        if doc.bic:
            institution = b.el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution")
            b.el(institution, "ram:BICID", doc.bic)
    for vat in figures.taxes:
        tax = b.el(settlement, "ram:ApplicableTradeTax")
        b.el(tax, "ram:CalculatedAmount", _amount(vat.tax))
        b.el(tax, "ram:TypeCode", "VAT")
        if vat.exemption_reason:
            b.el(tax, "ram:ExemptionReason", vat.exemption_reason)
        b.el(tax, "ram:BasisAmount", _amount(vat.basis))
        b.el(tax, "ram:CategoryCode", vat.category)
        if vat.exemption_code:
            b.el(tax, "ram:ExemptionReasonCode", vat.exemption_code)
        b.el(tax, "ram:RateApplicablePercent", _rate(vat.rate))
    for charge in figures.charges:  # below zero: an allowance
        node = b.el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        b.el(b.el(node, "ram:ChargeIndicator"), "udt:Indicator",
             "true" if charge.amount >= 0 else "false")
        b.el(node, "ram:ActualAmount", _amount(abs(charge.amount)))
        b.el(node, "ram:Reason", charge.reason)
        category = b.el(node, "ram:CategoryTradeTax")
        b.el(category, "ram:TypeCode", "VAT")
        b.el(category, "ram:CategoryCode", charge.category)
        b.el(category, "ram:RateApplicablePercent", _rate(charge.rate))
    if doc.payment_terms or doc.due_on:
        terms = b.el(settlement, "ram:SpecifiedTradePaymentTerms")
        if doc.payment_terms:
            b.el(terms, "ram:Description", doc.payment_terms)
        if doc.due_on:
            b.date(terms, "ram:DueDateDateTime", doc.due_on)
    totals = b.el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    b.el(totals, "ram:LineTotalAmount", _amount(figures.line_total))
    b.el(totals, "ram:ChargeTotalAmount", _amount(figures.charge_total))
    b.el(totals, "ram:AllowanceTotalAmount", _amount(figures.allowance_total))
    b.el(totals, "ram:TaxBasisTotalAmount", _amount(figures.basis_total))
    b.el(totals, "ram:TaxTotalAmount", _amount(figures.tax_total), currencyID=doc.currency)
    b.el(totals, "ram:GrandTotalAmount", _amount(figures.grand_total))
    b.el(totals, "ram:TotalPrepaidAmount", _amount(doc.prepaid))
    b.el(totals, "ram:DuePayableAmount", _amount(due))
    preceding = ([(doc.preceding_invoice, doc.preceding_issued_on)]
                 if doc.preceding_invoice else []) + list(doc.partial_invoices)
    for number, issued_on in preceding:
        reference = b.el(settlement, "ram:InvoiceReferencedDocument")
        b.el(reference, "ram:IssuerAssignedID", number)
        if issued_on:
            wrapper = b.el(reference, "ram:FormattedIssueDateTime")
            b.el(wrapper, "qdt:DateTimeString", issued_on.strftime("%Y%m%d"), format="102")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def embed(pdf: bytes, xml: bytes, *, title: str, subject: str, author: str) -> bytes:
    """``pdf`` (a PDF/A-3b) with ``xml`` attached as ``factur-x.xml`` (relationship Data)
    and the Factur-X XMP metadata; the XML is checked against the Factur-X XSD first."""
    check_xsd(xml)
    metadata: dict[str, Any] = {"author": author, "keywords": "Factur-X, Rechnung",
                                "title": title, "subject": subject}
    return bytes(facturx.generate_from_binary(
        pdf, xml, flavor="factur-x", level="en16931", check_xsd=False,
        pdf_metadata=metadata, lang="de-DE", afrelationship="data"))


def check_xsd(xml: bytes) -> None:
    """Raise ``ApplicationError(type="InvalidDocument")`` unless ``xml`` is valid against
    the Factur-X EN 16931 XSD (bundled with the ``factur-x`` package)."""
    try:
        facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    except Exception as exc:  # factur-x raises a plain Exception for a schema error
        raise ApplicationError(f"the e-invoice XML breaks the Factur-X schema: {exc}",
                               type=INVALID_DOCUMENT, non_retryable=True) from exc


def xml_of_pdf(pdf: bytes) -> tuple[str, bytes] | None:
    """The embedded e-invoice XML of a Factur-X PDF as ``(filename, xml)``, or None."""
    filename, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False)
    return (filename, xml) if filename and xml else None


# --- from an order -----------------------------------------------------------------------

PAID_UP_FRONT = ("prepaid", "paid")
TERMS = {
    "invoice": "Zahlbar innerhalb von {days} Tagen ohne Abzug.",
    "cod": "Zahlung per Nachnahme bei Lieferung.",
}
DUE_AT_ONCE = "Zahlbar sofort ohne Abzug."


def invoice_terms(term: timedelta) -> str:
    """The payment terms text of an invoice on invoice terms (BT-20)."""
    return TERMS["invoice"].format(days=term.days) if term.days else DUE_AT_ONCE
CREDIT_TERMS = ("Der Betrag wird mit offenen Beträgen der Rechnung verrechnet, bereits "
                "Gezahltes wird erstattet.")


def seller_of(settings: Settings, *, contact: bool = False) -> Party:
    """The shop as seller; with ``contact`` its BG-6 contact (name, phone, e-mail)."""
    return Party(name=settings.shop_name,
                 address=Address(name=settings.shop_name, street=settings.shop_street,
                                 postal_code=settings.shop_postal_code,
                                 city=settings.shop_city, country=settings.shop_country),
                 vat_id=settings.shop_vat_id, email=settings.shop_email,
                 contact_name=settings.shop_contact_name if contact else None,
                 phone=settings.shop_phone if contact else None)


def einvoice_format(billing: BillingProfile, order: OrderView,
                    settings: Settings) -> EinvoiceFormat:
    """The customer's own choice (master data), else ``ORDERS_B2B_EINVOICE`` for B2B
    customers, else Factur-X."""
    if billing.einvoice is not None:
        return billing.einvoice
    return settings.b2b_einvoice if order.customer.type == "b2b" else "factur-x"


def buyer_of(order: OrderView) -> Party:
    """The buyer (BT-44 never empty: BR-07): company, else the billing name, else the
    customer's own name."""
    billing, customer = order.billing_address, order.customer
    name = (billing.company or customer.company or billing.name
            or f"{customer.first_name} {customer.last_name}".strip() or str(customer.email))
    return Party(name=name, address=billing, vat_id=customer.vat_id, email=customer.email)


def order_einvoice(order: OrderView, invoice: Invoice, *, number: str, type_code: str,
                   issued_on: date, delivered_on: date, settings: Settings,
                   due_on: date | None = None, preceding_invoice: str | None = None,
                   partial_invoices: tuple[tuple[str, date], ...] = (),
                   preceding_issued_on: date | None = None, xrechnung: bool = False,
                   buyer_reference: str | None = None,
                   term: timedelta | None = None) -> EinvoiceDocument:
    """The e-invoice of ``invoice`` (an order's invoice or credit note); with ``xrechnung``
    an XRechnung whose buyer reference is ``buyer_reference`` or the order id."""
    method = order.payment_method
    prepaid = invoice.gross if method in PAID_UP_FRONT and type_code == INVOICE else Decimal(0)
    terms = (invoice_terms(term if term is not None else settings.invoice_payment_term)
             if method == "invoice" else TERMS.get(method, ""))
    if type_code == CREDIT_NOTE:
        terms = CREDIT_TERMS
    return EinvoiceDocument(
        number=number, type_code=type_code, issued_on=issued_on, delivered_on=delivered_on,
        currency=order.currency, seller=seller_of(settings, contact=xrechnung),
        buyer=buyer_of(order),
        ship_to=order.shipping_address, figures=einvoice_figures(invoice),
        order_reference=order.order_id, prepaid=prepaid,
        due_on=due_on if method == "invoice" and type_code == INVOICE else None,
        payment_terms="" if prepaid else terms,
        iban=settings.bank_iban, bic=settings.bank_bic,
        account_holder=settings.bank_account_holder, cash_on_delivery=method == "cod",
        notes=tuple(n for n in (invoice.note,) if n), preceding_invoice=preceding_invoice,
        partial_invoices=partial_invoices,
        preceding_issued_on=preceding_issued_on, xrechnung=xrechnung,
        buyer_reference=(buyer_reference or order.order_id) if xrechnung else None)
