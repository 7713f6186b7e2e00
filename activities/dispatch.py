"""openTRANS 2.1 DISPATCHNOTIFICATION: the partner's shipping advice, parsed safely and built.

What the document carries where (openTRANS 2.1 has no carrier or tracking element of its
own, so both use the places the standard has for them):

- shipped at: ``DISPATCHNOTIFICATION_INFO/DISPATCHNOTIFICATION_DATE`` (for every order in
  the file; a time without zone is read as UTC, a bare date as midnight UTC);
- order id: ``DISPATCHNOTIFICATION_ITEM/ORDER_REFERENCE/ORDER_ID`` (a file may confirm
  several orders; the items are grouped by it);
- carrier: the id of the carrier's party (``PARTY_ROLE`` ``deliverer``), referenced by the
  item's ``SHIPMENT_PARTIES_REFERENCE/DELIVERER_IDREF``; falls back to the header's
  reference, then to the file's only deliverer party;
- tracking number: the item's ``LOGISTIC_DETAILS/PACKAGE_INFO/PACKAGE/PACKAGE_ID`` (one of
  type ``deliverer_specific`` first); falls back to the header's ``LOGISTIC_DETAILS_INFO``;
- our shipment id: the item's ``DELIVERY_REFERENCE/DELIVERYNOTE_ID`` (the delivery note
  handed off with the order names its shipment); falls back to the header's
  ``SHIPMENT_ID``, which the builder also writes when the file confirms a single shipment.

Parsing refuses, with an ``AdviceError`` saying why: files over ``MAX_ADVICE_BYTES`` (before
parsing), any DOCTYPE (so no DTD, entity expansion or external entity can be used: XXE,
billion laughs), anything that is not well-formed XML, anything that does not validate
against the official XSD (errors with line numbers), other openTRANS documents, and orders
without a usable carrier or tracking number. The parser never loads a DTD, an entity or a
URL. Nothing is extracted before the whole file validated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.opentrans import (
    BMECAT_NS,
    OPENTRANS_NS,
    PIECE,
    bm,
    ot,
    sub,
    validate,
    xml_datetime,
)
from activities.safexml import UntrustedXmlError, parse_untrusted
from models.activities import AdviceConfirmation
from models.orders import ShipmentConfirmation

__all__ = [
    "MAX_ADVICE_BYTES",
    "AdviceError",
    "DispatchedOrder",
    "build_combined_dispatch_notification",
    "build_dispatch_notification",
    "confirmation",
    "parse_datetime",
    "parse_dispatch_notification",
]

MAX_ADVICE_BYTES = 10 * 1024 * 1024
SHOP_PARTY = "shop"  # our party id, as in the ORDER documents we hand off
TRACKING_TYPE = "deliverer_specific"  # PACKAGE_ID assigned by the carrier

_NSMAP = {None: OPENTRANS_NS, "bmecat": BMECAT_NS}
_NS = {"ot": OPENTRANS_NS, "bm": BMECAT_NS}


class AdviceError(ValueError):
    """The file is not a usable shipping advice; ``reason`` says why (for the ticket)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DispatchedOrder:
    """One order's part of a DISPATCHNOTIFICATION (for the builder)."""

    order_id: str
    shipment_id: str | None
    carrier: str
    tracking_number: str
    lines: Sequence[tuple[str, int]]  # (sku, quantity)


# --- parse ---------------------------------------------------------------------------


def parse_dispatch_notification(data: bytes) -> list[AdviceConfirmation]:
    """One confirmation per parcel (order, shipment, tracking number) in the file, in the
    order they first appear; a split order's parcels each get their own.

    Raises ``AdviceError`` for anything unusable (see the module docstring)."""
    note = _load(data)
    header = note.find("ot:DISPATCHNOTIFICATION_HEADER/ot:DISPATCHNOTIFICATION_INFO", _NS)
    assert header is not None  # required by the schema
    shipped_at = parse_datetime(_text(header, "ot:DISPATCHNOTIFICATION_DATE"))
    default_shipment = _text(header, "ot:SHIPMENT_ID")
    default_tracking = _tracking(header.find("ot:LOGISTIC_DETAILS_INFO", _NS))
    default_carrier = (_text(header, "ot:SHIPMENT_PARTIES_REFERENCE/ot:DELIVERER_IDREF")
                       or _only_deliverer(header))
    found: dict[tuple[str, str | None, str | None], AdviceConfirmation] = {}
    for number, item in enumerate(note.iterfind(
            "ot:DISPATCHNOTIFICATION_ITEM_LIST/ot:DISPATCHNOTIFICATION_ITEM", _NS), start=1):
        order_id = _text(item, "ot:ORDER_REFERENCE/ot:ORDER_ID")
        if not order_id:
            raise AdviceError(f"item {number} (line {item.sourceline}) has no order id "
                              "(ORDER_REFERENCE/ORDER_ID)")
        carrier = (_text(item, "ot:SHIPMENT_PARTIES_REFERENCE/ot:DELIVERER_IDREF")
                   or default_carrier)
        tracking = _tracking(item.find("ot:LOGISTIC_DETAILS", _NS)) or default_tracking
        if not carrier:
            raise AdviceError(f"order {order_id}: no carrier (a party with PARTY_ROLE "
                              "deliverer, referenced by DELIVERER_IDREF)")
        if not tracking:
            raise AdviceError(f"order {order_id}: no tracking number "
                              "(LOGISTIC_DETAILS/PACKAGE_INFO/PACKAGE/PACKAGE_ID)")
        shipment_id = (_text(item, "ot:DELIVERY_REFERENCE/ot:DELIVERYNOTE_ID")
                       or default_shipment)
        key = (order_id, shipment_id, tracking)
        if key not in found:  # the items of one parcel give one confirmation
            found[key] = confirmation(order_id, shipment_id, carrier, tracking, shipped_at)
    return list(found.values())


def _load(data: bytes) -> etree._Element:
    """The validated DISPATCHNOTIFICATION element, parsed without DTDs, entities or network."""
    try:
        root = parse_untrusted(data, max_bytes=MAX_ADVICE_BYTES)
    except UntrustedXmlError as exc:
        raise AdviceError(exc.reason) from None
    try:
        validate(root)
    except ApplicationError as exc:
        raise AdviceError(exc.message) from None
    note = root if root.tag == ot("DISPATCHNOTIFICATION") else root.find(
        "ot:DISPATCHNOTIFICATION", _NS)  # also inside an <OPENTRANS> envelope
    if note is None:
        raise AdviceError(f"not a DISPATCHNOTIFICATION but {etree.QName(root).localname}")
    return note


def confirmation(order_id: str, shipment_id: str | None, carrier: str, tracking: str,
                 shipped_at: datetime | None, *, where: str = "") -> AdviceConfirmation:
    """Checked against the rules of the order's ``shipment_confirmed`` signal, so a file the
    order would refuse is rejected here, with a reason, instead."""
    try:
        checked = ShipmentConfirmation(carrier=carrier, tracking_number=tracking,
                                       shipped_at=shipped_at, shipment_id=shipment_id)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        prefix = f"{where}: " if where else ""
        raise AdviceError(f"{prefix}order {order_id}: {problems} (carrier {carrier!r}, "
                          f"tracking number {tracking!r})") from None
    return AdviceConfirmation(order_id=order_id, shipment_id=checked.shipment_id,
                              carrier=checked.carrier,
                              tracking_number=checked.tracking_number,
                              shipped_at=checked.shipped_at)


def _tracking(logistics: etree._Element | None) -> str | None:
    if logistics is None:
        return None
    ids = [(e.get("type"), (e.text or "").strip()) for e in logistics.iterfind(
        "ot:PACKAGE_INFO/ot:PACKAGE/ot:PACKAGE_ID", _NS)]
    ids = [(kind, text) for kind, text in ids if text]
    preferred = [text for kind, text in ids if kind == TRACKING_TYPE]
    return (preferred or [text for _, text in ids] or [None])[0]


def _only_deliverer(header: etree._Element) -> str | None:
    deliverers = [party for party in header.iterfind("ot:PARTIES/ot:PARTY", _NS)
                  if "deliverer" in (_texts(party, "ot:PARTY_ROLE"))]
    if len(deliverers) != 1:
        return None
    return _text(deliverers[0], "bm:PARTY_ID")


_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2})?$")


def parse_datetime(text: str | None, *, what: str = "DISPATCHNOTIFICATION_DATE",
                   ) -> datetime | None:
    """``dtDATETIME`` (ISO 8601, from a year down to fractions of a second) as aware UTC;
    ``what`` names the value in the error."""
    if not text:
        return None
    if _PARTIAL_DATE.match(text):  # "2026" or "2026-11": the first day
        text = text + "-01" * (3 - len(text.split("-")))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise AdviceError(f"{what} {text!r} is not an ISO 8601 date or time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _text(element: etree._Element, path: str) -> str | None:
    found = element.find(path, _NS)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _texts(element: etree._Element, path: str) -> list[str]:
    return [(e.text or "").strip() for e in element.iterfind(path, _NS)]


# --- build (tests, the fake partner) ---------------------------------------------------


def build_dispatch_notification(*, notification_id: str, order_id: str,
                                shipment_id: str | None, carrier: str, tracking_number: str,
                                shipped_at: datetime | None,
                                lines: Sequence[tuple[str, int]]) -> bytes:
    """A validated DISPATCHNOTIFICATION for one order's shipment (UTF-8, with declaration)."""
    return build_combined_dispatch_notification(
        notification_id=notification_id, shipped_at=shipped_at,
        orders=[DispatchedOrder(order_id=order_id, shipment_id=shipment_id, carrier=carrier,
                                tracking_number=tracking_number, lines=lines)])


def build_combined_dispatch_notification(*, notification_id: str, shipped_at: datetime | None,
                                         orders: Sequence[DispatchedOrder]) -> bytes:
    """A validated DISPATCHNOTIFICATION confirming several orders (each with its lines).

    Raises ``ValueError`` without orders or for an order without lines, and
    ``ApplicationError(type="InvalidDocument")`` when a value breaks the schema (e.g. a
    tracking number over 50 characters)."""
    if not orders or any(not order.lines for order in orders):
        raise ValueError("a dispatch notification needs orders, each with lines")
    root = etree.Element(ot("DISPATCHNOTIFICATION"), nsmap=_NSMAP, version="2.1")
    info = sub(sub(root, "DISPATCHNOTIFICATION_HEADER"), "DISPATCHNOTIFICATION_INFO")
    sub(info, "DISPATCHNOTIFICATION_ID", notification_id)
    if shipped_at is not None:
        sub(info, "DISPATCHNOTIFICATION_DATE", xml_datetime(shipped_at))
    _parties(sub(info, "PARTIES"), orders)
    sub(info, bm("SUPPLIER_IDREF"), SHOP_PARTY, type="supplier_specific")
    _shipment_parties(info, orders[0])
    shipments = {order.shipment_id for order in orders}
    if len(shipments) == 1 and orders[0].shipment_id:
        sub(info, "SHIPMENT_ID", orders[0].shipment_id)
    items = sub(root, "DISPATCHNOTIFICATION_ITEM_LIST")
    count = 0
    for order in orders:
        for line_number, (sku, quantity) in enumerate(order.lines, start=1):
            count += 1
            items.append(_item(count, line_number, order, sku, quantity))
    sub(sub(root, "DISPATCHNOTIFICATION_SUMMARY"), "TOTAL_ITEM_NUM", str(count))
    validate(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _parties(parties: etree._Element, orders: Sequence[DispatchedOrder]) -> None:
    shop = sub(parties, "PARTY")
    sub(shop, bm("PARTY_ID"), SHOP_PARTY, type="supplier_specific")
    sub(shop, "PARTY_ROLE", "supplier")
    for order in orders:
        delivery = sub(parties, "PARTY")
        sub(delivery, bm("PARTY_ID"), _delivery_id(order), type="supplier_specific")
        sub(delivery, "PARTY_ROLE", "delivery")
    for carrier in dict.fromkeys(order.carrier for order in orders):
        deliverer = sub(parties, "PARTY")
        sub(deliverer, bm("PARTY_ID"), carrier, type="supplier_specific")
        sub(deliverer, "PARTY_ROLE", "deliverer")
        sub(sub(deliverer, "ADDRESS"), bm("NAME"), carrier)


def _shipment_parties(parent: etree._Element, order: DispatchedOrder) -> None:
    refs = sub(parent, "SHIPMENT_PARTIES_REFERENCE")
    sub(refs, "DELIVERY_IDREF", _delivery_id(order), type="supplier_specific")
    sub(refs, "DELIVERER_IDREF", order.carrier, type="supplier_specific")


def _item(number: int, line_number: int, order: DispatchedOrder, sku: str,
          quantity: int) -> etree._Element:
    item = etree.Element(ot("DISPATCHNOTIFICATION_ITEM"))
    sub(item, "LINE_ITEM_ID", str(number))
    sub(sub(item, "PRODUCT_ID"), bm("SUPPLIER_PID"), sku, type="supplier_specific")
    sub(item, "QUANTITY", str(quantity))
    sub(item, bm("ORDER_UNIT"), PIECE)
    if order.shipment_id:
        sub(sub(item, "DELIVERY_REFERENCE"), "DELIVERYNOTE_ID", order.shipment_id)
    reference = sub(item, "ORDER_REFERENCE")
    sub(reference, "ORDER_ID", order.order_id)
    sub(reference, "LINE_ITEM_ID", str(line_number))  # the line's number in our ORDER
    _shipment_parties(item, order)
    package = sub(sub(sub(item, "LOGISTIC_DETAILS"), "PACKAGE_INFO"), "PACKAGE")
    sub(package, "PACKAGE_ID", order.tracking_number, type=TRACKING_TYPE)
    return item


def _delivery_id(order: DispatchedOrder) -> str:
    return f"delivery:{order.order_id}"  # as in the ORDER document's DELIVERY_IDREF
