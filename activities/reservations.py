"""Reservations and shipments in the database: the helpers of ``activities.store``.

Stock rows are always locked in the order of their id (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE``). A hard reservation holds units of
one warehouse for an allocation round; a soft one (``backordered``, no warehouse, round 0)
is a line nobody had; a dropship line is reserved at ``@<supplier>`` without stock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session, col, select

from models.activities import BackorderLine, ReservationState, ReservedLine
from models.allocation import AllocationRule, WarehouseInfo
from models.orders import ShipmentLine, ShipmentView
from models.tables import (
    CustomerAddress,
    OrderRecord,
    Product,
    Reservation,
    Shipment,
    Stock,
    Warehouse,
)

__all__ = [
    "BACKORDERED", "CONSUMED", "DROPSHIP_PREFIX", "FILLED", "RELEASED", "RESERVED", "StockKey",
    "book", "consume", "dropship_partners", "expected", "free", "is_dropship", "lock_reserved",
    "lock_stock", "order_place", "reservations", "shipment_view", "shipments", "state_of",
    "warehouses",
]

# Reservation.state
RESERVED = "reserved"
RELEASED = "released"
CONSUMED = "consumed"
BACKORDERED = "backordered"  # soft: no warehouse had it
FILLED = "filled"  # a soft line the stock sync turned into hard reservations
DROPSHIP_PREFIX = "@"  # Reservation/Shipment.warehouse "@<partner>": the supplier ships it


StockKey = tuple[str, str]  # (warehouse, sku)


def lock_stock(session: Session, skus: Iterable[str]) -> dict[StockKey, Stock]:
    """The stock rows of ``skus`` in every warehouse, locked, always in the order of id."""
    query = (select(Stock).where(col(Stock.sku).in_(set(skus)))
             .order_by(col(Stock.id)).with_for_update())
    return {(stock.warehouse, stock.sku): stock for stock in session.exec(query)}


def reservations(session: Session, order_id: str, *, state: str | None = None,
                  lock: bool = False) -> list[Reservation]:
    query = select(Reservation).where(Reservation.order_id == order_id)
    if state is not None:
        query = query.where(Reservation.state == state)
    query = query.order_by(col(Reservation.id))
    return list(session.exec(query.with_for_update() if lock else query))


def lock_reserved(session: Session, order_id: str, state: str = RESERVED,
                   ) -> tuple[dict[StockKey, Stock], list[Reservation]]:
    """Lock the stock rows of the order's reservations, then its reservations in ``state``."""
    skus = {row.sku for row in reservations(session, order_id, state=state)}
    if not skus:
        return {}, []
    stocks = lock_stock(session, skus)
    return stocks, reservations(session, order_id, state=state, lock=True)


def dropship_partners(session: Session, skus: Iterable[str]) -> dict[str, str]:
    """``{sku: supplier partner}`` of the dropship / pre-order SKUs among ``skus``."""
    rows = session.exec(select(Product.sku, Product.dropship_partner).where(
        col(Product.sku).in_(set(skus)), col(Product.dropship_partner).is_not(None))).all()
    return {sku: partner for sku, partner in rows if partner}


def warehouses(session: Session) -> list[WarehouseInfo]:
    return [WarehouseInfo(code=w.code, country=w.country, priority=w.priority)
            for w in session.exec(select(Warehouse))]


def free(stocks: dict[StockKey, Stock]) -> dict[StockKey, int]:
    return {key: max(stock.on_hand - stock.reserved, 0) for key, stock in stocks.items()}


def expected(stocks: dict[StockKey, Stock], sku: str) -> datetime | None:
    """The earliest date the stock feed expects ``sku`` in any warehouse."""
    dates = [s.expected_at for (_, stock_sku), s in stocks.items()
             if stock_sku == sku and s.expected_at is not None]
    return min(dates) if dates else None


def book(session: Session, rows: dict[tuple[int, str, str], Reservation], order_id: str,
          round_: int, warehouse: str, sku: str, quantity: int,
          stocks: dict[StockKey, Stock]) -> None:
    """Hold ``quantity`` of ``sku`` in ``warehouse`` for the order's round ``round_``; an
    existing row of that key (released earlier, or reserved in this round) is reused."""
    stock = stocks[warehouse, sku]
    stock.reserved += quantity
    session.add(stock)
    row = rows.get((round_, sku, warehouse))
    if row is None:
        row = Reservation(order_id=order_id, round=round_, sku=sku, warehouse=warehouse,
                          quantity=0)
        rows[round_, sku, warehouse] = row
    row.quantity = (row.quantity if row.state == RESERVED else 0) + quantity
    row.state = RESERVED
    session.add(row)


def state_of(rows: list[Reservation], rule: AllocationRule,
           explanation: str = "") -> ReservationState:
    pending = [ReservedLine(warehouse=r.warehouse, sku=r.sku, quantity=r.quantity)
               for r in rows if r.state == RESERVED]
    backordered = [BackorderLine(sku=r.sku, quantity=r.quantity, expected_at=r.expected_at)
                   for r in rows if r.state == BACKORDERED]
    return ReservationState(pending=pending, backordered=backordered,
                            partial_delivery=rule.partial_delivery, explanation=explanation)


def order_place(session: Session, order_id: str) -> tuple[str, str]:
    """The order's channel and delivery country ("", "DE" for an order not recorded)."""
    record = session.get(OrderRecord, order_id)
    if record is None:
        return "", "DE"
    address = session.get(CustomerAddress, record.shipping_address_id)
    return record.channel, address.country if address else "DE"


def shipments(session: Session, order_id: str, round_: int | None = None) -> list[Shipment]:
    query = select(Shipment).where(Shipment.order_id == order_id)
    if round_ is not None:
        query = query.where(Shipment.round == round_)
    return list(session.exec(query.order_by(col(Shipment.created_at),
                                            col(Shipment.shipment_id))))


def consume(session: Session, shipment_id: str, order_id: str, round_: int,
             rows: list[Reservation], stocks: dict[StockKey, Stock]) -> Shipment:
    for row in rows:
        row.state = CONSUMED
        session.add(row)
        if is_dropship(row.warehouse):
            continue  # the supplier's goods: no stock of ours
        stock = stocks[row.warehouse, row.sku]
        stock.on_hand -= row.quantity
        stock.reserved -= row.quantity
        session.add(stock)
    lines = [{"sku": row.sku, "quantity": row.quantity}
             for row in sorted(rows, key=lambda r: r.sku)]
    shipment = Shipment(shipment_id=shipment_id, order_id=order_id, round=round_,
                        warehouse=rows[0].warehouse, lines=json.dumps(lines))
    session.add(shipment)
    return shipment


def is_dropship(warehouse: str) -> bool:
    """A reservation or shipment the supplier fills: warehouse ``@<partner>``."""
    return warehouse.startswith(DROPSHIP_PREFIX)


def shipment_view(session: Session, shipment: Shipment) -> ShipmentView:
    if is_dropship(shipment.warehouse):
        partner = shipment.warehouse.removeprefix(DROPSHIP_PREFIX)
    else:
        warehouse = session.get(Warehouse, shipment.warehouse)
        partner = warehouse.partner if warehouse is not None else None
    return ShipmentView(shipment_id=shipment.shipment_id, warehouse=shipment.warehouse,
                        partner=partner,
                        lines=[ShipmentLine(**line) for line in json.loads(shipment.lines)])
