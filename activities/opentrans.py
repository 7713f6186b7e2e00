"""openTRANS 2.1 ORDER documents, built with lxml and validated against the official XSD.

The schema (``schemas/opentrans-2.1/opentrans_2_1.xsd`` with its imports in the same
folder) is loaded once per process, lazily, from the repository with a parser that never
touches the network. A document that does not validate raises a non-retryable
``ApplicationError(type="InvalidDocument")``: retrying would build the same document again.

Parties: the customer is ``buyer`` (billing address) and ``invoice_recipient``, the
delivery address is ``delivery``, the shop is ``supplier``. Prices are as in the order
(gross for b2c, net for b2b); each line carries its VAT rate in ``TAX_DETAILS_FIX``.
"""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from lxml import etree
from temporalio.exceptions import ApplicationError

from models.orders import Address, Customer, OrderLine, OrderView, ShipmentView, shipment_lines

__all__ = [
    "BMECAT_NS",
    "INVALID_DOCUMENT",
    "OPENTRANS_NS",
    "SCHEMA_PATH",
    "bm",
    "build_order",
    "build_order_xml",
    "ot",
    "sub",
    "validate",
    "xml_datetime",
]

OPENTRANS_NS = "http://www.opentrans.org/XMLSchema/2.1"
BMECAT_NS = "http://www.bmecat.org/bmecat/2005"
SCHEMA_PATH = (Path(__file__).resolve().parent.parent / "schemas" / "opentrans-2.1"
               / "opentrans_2_1.xsd")
INVALID_DOCUMENT = "InvalidDocument"
GENERATOR = "Auftragsmanager"
PIECE = "C62"  # UN/ECE Rec. 20 "one" (piece), in bmecat's dtPUNIT list

_NSMAP = {None: OPENTRANS_NS, "bmecat": BMECAT_NS}
_schema_lock = threading.Lock()


@functools.cache
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), parser))


def validate(root: etree._Element) -> None:
    """Raise ``ApplicationError(type="InvalidDocument")`` unless ``root`` is valid openTRANS."""
    with _schema_lock:  # loads once; libxml2 validation contexts are not shared safely
        schema = _schema()
        valid = schema.validate(root)
        errors = [f"line {e.line}: {e.message}" for e in schema.error_log][:5]
    if not valid:
        raise ApplicationError("openTRANS document does not validate: " + "; ".join(errors),
                               type=INVALID_DOCUMENT, non_retryable=True)


def build_order_xml(order: OrderView, shipment: ShipmentView | None = None, *,
                    supplier_name: str, generated_at: datetime | None = None) -> bytes:
    """The validated ORDER document as UTF-8 bytes with an XML declaration."""
    root = build_order(order, shipment, supplier_name=supplier_name, generated_at=generated_at)
    validate(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def build_order(order: OrderView, shipment: ShipmentView | None = None, *,
                supplier_name: str, generated_at: datetime | None = None) -> etree._Element:
    """The ``<ORDER>`` element (not yet validated)."""
    now = generated_at or datetime.now(UTC)
    order_type = "express" if order.shipping_method == "express" else "standard"
    root = etree.Element(ot("ORDER"), nsmap=_NSMAP, version="2.1", type=order_type)
    root.append(_header(order, shipment, supplier_name, now))
    items = sub(root, "ORDER_ITEM_LIST")
    lines = shipment_lines(order, shipment)
    for number, line in enumerate(lines, start=1):
        items.append(_item(number, line))
    summary = sub(root, "ORDER_SUMMARY")
    sub(summary, "TOTAL_ITEM_NUM", str(len(lines)))
    sub(summary, "TOTAL_AMOUNT", _amount(sum((_line_amount(ln) for ln in lines),
                                              Decimal("0"))))
    return root


# --- header --------------------------------------------------------------------------


def _header(order: OrderView, shipment: ShipmentView | None, supplier_name: str,
            now: datetime) -> etree._Element:
    header = etree.Element(ot("ORDER_HEADER"))
    control = sub(header, "CONTROL_INFO")
    sub(control, "GENERATOR_INFO", GENERATOR)
    sub(control, "GENERATION_DATE", xml_datetime(now))
    info = sub(header, "ORDER_INFO")
    sub(info, "ORDER_ID", order.order_id)
    sub(info, "ORDER_DATE", xml_datetime(_order_date(order, now)))
    _parties(sub(info, "PARTIES"), order, supplier_name)
    refs = sub(info, "ORDER_PARTIES_REFERENCE")
    sub(refs, bm("BUYER_IDREF"), _buyer_id(order), type="supplier_specific")
    sub(refs, bm("SUPPLIER_IDREF"), "shop", type="supplier_specific")
    sub(refs, "INVOICE_RECIPIENT_IDREF", _buyer_id(order), type="supplier_specific")
    shipment_refs = sub(refs, "SHIPMENT_PARTIES_REFERENCE")
    sub(shipment_refs, "DELIVERY_IDREF", _delivery_id(order), type="supplier_specific")
    sub(info, bm("CURRENCY"), order.currency)
    for kind, text in _remarks(order, shipment):
        sub(info, "REMARKS", text, type=kind)
    return header


def _order_date(order: OrderView, fallback: datetime) -> datetime:
    """When the customer placed the order (else its first timeline event)."""
    if order.placed_at is not None:
        return order.placed_at
    return min((event.at for event in order.timeline), default=fallback)


def _parties(parties: etree._Element, order: OrderView, supplier_name: str) -> None:
    buyer = _party(parties, _buyer_id(order), ["buyer", "invoice_recipient"],
                   order.billing_address)
    _contact(buyer.find(ot("ADDRESS")), order.customer)
    _party(parties, _delivery_id(order), ["delivery"], order.shipping_address)
    supplier = sub(parties, "PARTY")
    sub(supplier, bm("PARTY_ID"), "shop", type="supplier_specific")
    sub(supplier, "PARTY_ROLE", "supplier")
    sub(sub(supplier, "ADDRESS"), bm("NAME"), _clip(supplier_name, 50))


def _party(parties: etree._Element, party_id: str, roles: list[str],
           addr: Address) -> etree._Element:
    party = sub(parties, "PARTY")
    sub(party, bm("PARTY_ID"), party_id, type="supplier_specific")
    for role in roles:
        sub(party, "PARTY_ROLE", role)
    address = sub(party, "ADDRESS")
    names = [addr.company, addr.name] if addr.company else [addr.name]
    for tag, value in zip(("NAME", "NAME2"), filter(None, names), strict=False):
        sub(address, bm(tag), _clip(value, 50))
    for tag, value, limit in (("STREET", addr.street, 50), ("ZIP", addr.postal_code, 20),
                              ("CITY", addr.city, 50)):
        if value:
            sub(address, bm(tag), _clip(value, limit))
    sub(address, bm("COUNTRY_CODED"), addr.country)
    return party


def _contact(address: etree._Element | None, customer: Customer) -> None:
    """VAT id, phone and e-mail, appended after COUNTRY_CODED in schema order."""
    if address is None:
        return
    if customer.vat_id:
        sub(address, bm("VAT_ID"), customer.vat_id)
    if customer.phone:
        sub(address, bm("PHONE"), customer.phone)
    sub(address, bm("EMAIL"), str(customer.email))


def _remarks(order: OrderView, shipment: ShipmentView | None) -> list[tuple[str, str]]:
    remarks = []
    if shipment is not None:
        remarks.append(("deliverynote", f"Sendung {shipment.shipment_id}, "
                                        f"Lager {shipment.warehouse}"))
    if order.comment:
        remarks.append(("general", order.comment))
    if order.packer_note:
        remarks.append(("packernote", order.packer_note))
    if order.gift_message:
        remarks.append(("giftmessage", order.gift_message))
    return remarks


def _buyer_id(order: OrderView) -> str:
    return _clip(f"customer:{order.customer.email}", 250)


def _delivery_id(order: OrderView) -> str:
    return _clip(f"delivery:{order.order_id}", 250)


# --- items ---------------------------------------------------------------------------


def _item(number: int, line: OrderLine) -> etree._Element:
    item = etree.Element(ot("ORDER_ITEM"))
    sub(item, "LINE_ITEM_ID", str(number))
    product = sub(item, "PRODUCT_ID")
    sub(product, bm("SUPPLIER_PID"), line.sku, type="supplier_specific")
    sub(product, bm("DESCRIPTION_SHORT"), _clip(line.name, 150))
    sub(item, "QUANTITY", str(line.quantity))
    sub(item, bm("ORDER_UNIT"), PIECE)
    price = sub(item, "PRODUCT_PRICE_FIX")
    sub(price, bm("PRICE_AMOUNT"), _amount(line.unit_price))
    tax = sub(price, "TAX_DETAILS_FIX")
    sub(tax, bm("TAX_TYPE"), "vat")
    sub(tax, bm("TAX"), _amount(line.tax_rate / 100, places=4))
    sub(item, "PRICE_LINE_AMOUNT", _amount(_line_amount(line)))
    return item


def _line_amount(line: OrderLine) -> Decimal:
    return line.unit_price * line.quantity


# --- small helpers -------------------------------------------------------------------


def ot(tag: str) -> str:
    return f"{{{OPENTRANS_NS}}}{tag}"


def bm(tag: str) -> str:
    return f"{{{BMECAT_NS}}}{tag}"


def sub(parent: etree._Element, tag: str, text: str | None = None,
         **attrib: str) -> etree._Element:
    """Append a child; ``tag`` is an openTRANS name unless already qualified (``_bm``)."""
    child = etree.SubElement(parent, tag if tag.startswith("{") else ot(tag), attrib)
    if text is not None:
        child.text = text
    return child


def _amount(value: Decimal, places: int = 2) -> str:
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-places)):f}"


def xml_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z``; a naive value is taken as UTC."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    """Schema length limits (NAME 50, DESCRIPTION_SHORT 150, ...); never an empty string."""
    return text[:limit].rstrip() or text[:limit]
