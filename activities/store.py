"""The database activities: orders and customers, stock and reservations, payments.

Each activity is synchronous (the worker runs it in its thread pool), one short transaction,
and idempotent: a retry finds the rows of its earlier attempt instead of writing them again.
Contended rows are locked with ``SELECT ... FOR UPDATE`` on PostgreSQL (stock rows first, by
id); on SQLite every transaction is ``BEGIN IMMEDIATE`` (``activities.db``). Non-retryable
errors: ``ApplicationError`` of type ``NothingReserved`` (allocate_shipment without reserved
stock) and ``NothingToReserve`` (reserve_stock without lines); database errors propagate so
that Temporal retries. Tickets live in ``activities.tickets``; ``list_products`` and
``stock_levels`` (``activities.masterdata``) are re-exported here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import get_or_create, session_for
from activities.masterdata import list_products, stock_levels
from models import rules
from models.activities import (
    AllocateShipmentInput,
    CheckOrderResult,
    MissingStock,
    OrderInput,
    RecordOrderResult,
    RecordPaymentInput,
    ReleaseStockInput,
    ReserveStockInput,
    ReserveStockResult,
)
from models.orders import Address, OrderIn, ShipmentView
from models.orders import Customer as CustomerIn
from models.tables import (
    Customer,
    CustomerAddress,
    OrderRecord,
    Payment,
    Product,
    Reservation,
    Shipment,
    Stock,
    Warehouse,
)

__all__ = ["CONSUMED", "RELEASED", "RESERVED", "StoreActivities", "list_products",
           "stock_levels"]

# Reservation.state
RESERVED = "reserved"
RELEASED = "released"
CONSUMED = "consumed"

class StoreActivities:
    """Activities on the order database; ``engine`` is shared by all threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- orders ----------------------------------------------------------------------

    @activity.defn
    def record_order(self, input: OrderInput) -> RecordOrderResult:
        """Store the order once; find or create its customer (by e-mail) and addresses."""
        order = input.order
        with session_for(self.engine) as session:
            known = session.get(OrderRecord, order.order_id)
            if known is not None:
                return RecordOrderResult(customer_id=known.customer_id, new_customer=False,
                                         new_address=False)
            customer, new_customer = _customer(session, order.customer)
            assert customer.id is not None
            billing, new_billing = _address(session, customer.id, order.billing_address)
            shipping, new_shipping = _address(session, customer.id, order.delivery_address)
            assert billing.id is not None and shipping.id is not None
            get_or_create(session, select(OrderRecord).where(
                OrderRecord.order_id == order.order_id),
                lambda: _order_record(order, customer.id, billing.id, shipping.id))
            session.commit()
            return RecordOrderResult(customer_id=customer.id, new_customer=new_customer,
                                     new_address=new_billing or new_shipping)

    @activity.defn
    def check_order(self, input: OrderInput) -> CheckOrderResult:
        """The hold reasons of the order (totals, SKUs, address, comment)."""
        skus = {line.sku for line in input.order.lines}
        with session_for(self.engine) as session:
            known = set(session.exec(select(Product.sku).where(col(Product.sku).in_(skus))))
        return CheckOrderResult(holds=rules.check_order(input.order, known_skus=known))

    # --- stock -----------------------------------------------------------------------

    @activity.defn
    def reserve_stock(self, input: ReserveStockInput) -> ReserveStockResult:
        """Reserve every line in one warehouse (by priority, then code), or nothing at all.

        A retry finds the order's reservations and reserves nothing twice. When no single
        warehouse has every line, ``missing`` names per SKU the quantity requested and the
        best quantity available in any warehouse; if each SKU alone would be available
        somewhere, it names what the first warehouse lacks, with that warehouse's stock.
        """
        wanted = Counter[str]()
        for line in input.lines:
            wanted[line.sku] += line.quantity
        if not wanted:
            raise ApplicationError(f"order {input.order_id}: nothing to reserve",
                                   type="NothingToReserve", non_retryable=True)
        with session_for(self.engine) as session:
            stocks = _lock_stock(session, wanted)
            earlier = _reservations(session, input.order_id)
            active = [r for r in earlier if r.state in (RESERVED, CONSUMED)]
            if active:
                return ReserveStockResult(reserved=True, warehouse=active[0].warehouse)
            order = _warehouse_order(session, stocks)
            warehouse = _first_with_all(stocks, wanted, order)
            if warehouse is None:
                return ReserveStockResult(reserved=False,
                                          missing=_missing(stocks, wanted, order))
            _reserve(session, input.order_id, warehouse, wanted, stocks, earlier)
            session.commit()
            return ReserveStockResult(reserved=True, warehouse=warehouse)

    @activity.defn
    def release_stock(self, input: ReleaseStockInput) -> int:
        """Give the order's reserved stock back; how many reservations were released.

        With ``restock_allocated`` the stock already allocated to a shipment that never left
        (cancelled before the hand-off) goes back to ``on_hand`` as well."""
        with session_for(self.engine) as session:
            stocks, rows = _lock_reserved(session, input.order_id)
            for row in rows:
                stocks[row.warehouse, row.sku].reserved -= row.quantity
                row.state = RELEASED
                session.add(row)
            session.add_all(stocks.values())
            session.commit()
            released = len(rows)
            if input.restock_allocated:
                stocks, rows = _lock_reserved(session, input.order_id, CONSUMED)
                for row in rows:
                    stocks[row.warehouse, row.sku].on_hand += row.quantity
                    row.state = RELEASED
                    session.add(row)
                session.add_all(stocks.values())
                session.commit()
                released += len(rows)
            return released

    @activity.defn
    def allocate_shipment(self, input: AllocateShipmentInput) -> ShipmentView:
        """Turn the order's reservations into its shipment; the stock leaves ``on_hand``."""
        shipment_id = f"{input.order_id}-1"
        with session_for(self.engine) as session:
            shipment = session.get(Shipment, shipment_id)
            if shipment is not None:
                return _shipment_view(shipment)
            stocks, rows = _lock_reserved(session, input.order_id)
            shipment = session.get(Shipment, shipment_id)  # a concurrent attempt may have won
            if shipment is not None:
                return _shipment_view(shipment)
            if not rows:
                raise ApplicationError(f"order {input.order_id} has no reserved stock",
                                       type="NothingReserved", non_retryable=True)
            shipment = _consume(session, shipment_id, input.order_id, rows, stocks)
            session.commit()
            return _shipment_view(shipment)

    # --- payments --------------------------------------------------------------------

    @activity.defn
    def record_payment(self, input: RecordPaymentInput) -> None:
        """Store the payment ``(order_id, key)`` once."""
        payment = input.payment
        with session_for(self.engine) as session:
            get_or_create(
                session,
                select(Payment).where(Payment.order_id == input.order_id,
                                      Payment.key == input.key),
                lambda: Payment(order_id=input.order_id, key=input.key, amount=payment.amount,
                                currency=payment.currency, reference=payment.reference,
                                paid_at=payment.paid_at))
            session.commit()


# --- orders and customers ----------------------------------------------------------------


def _customer(session: Session, customer: CustomerIn) -> tuple[Customer, bool]:
    email = str(customer.email).lower()
    return get_or_create(
        session, select(Customer).where(Customer.email == email),
        lambda: Customer(email=email, first_name=customer.first_name,
                         last_name=customer.last_name, company=customer.company,
                         vat_id=customer.vat_id, type=customer.type))


def _address(session: Session, customer_id: int,
             address: Address) -> tuple[CustomerAddress, bool]:
    normalized = rules.normalize_address(address)
    return get_or_create(
        session,
        select(CustomerAddress).where(CustomerAddress.customer_id == customer_id,
                                      CustomerAddress.normalized == normalized),
        lambda: CustomerAddress(customer_id=customer_id, normalized=normalized,
                                name=address.name, company=address.company,
                                street=address.street, postal_code=address.postal_code,
                                city=address.city, country=address.country))


def _order_record(order: OrderIn, customer_id: int, billing_id: int,
                  shipping_id: int) -> OrderRecord:
    return OrderRecord(order_id=order.order_id, channel=order.channel,
                       external_id=order.external_id, customer_id=customer_id,
                       billing_address_id=billing_id, shipping_address_id=shipping_id,
                       currency=order.currency, total=rules.compute_totals(order).total,
                       payload=order.model_dump_json())


# --- stock -------------------------------------------------------------------------------

StockKey = tuple[str, str]  # (warehouse, sku)


def _lock_stock(session: Session, skus: Iterable[str]) -> dict[StockKey, Stock]:
    """The stock rows of ``skus`` in every warehouse, locked, always in the order of id."""
    query = (select(Stock).where(col(Stock.sku).in_(set(skus)))
             .order_by(col(Stock.id)).with_for_update())
    return {(stock.warehouse, stock.sku): stock for stock in session.exec(query)}


def _reservations(session: Session, order_id: str, *, state: str | None = None,
                  lock: bool = False) -> list[Reservation]:
    query = select(Reservation).where(Reservation.order_id == order_id)
    if state is not None:
        query = query.where(Reservation.state == state)
    query = query.order_by(col(Reservation.id))
    return list(session.exec(query.with_for_update() if lock else query))


def _lock_reserved(session: Session, order_id: str, state: str = RESERVED,
                   ) -> tuple[dict[StockKey, Stock], list[Reservation]]:
    """Lock the stock rows of the order's reservations, then its reservations in ``state``."""
    skus = {row.sku for row in _reservations(session, order_id, state=state)}
    if not skus:
        return {}, []
    stocks = _lock_stock(session, skus)
    return stocks, _reservations(session, order_id, state=state, lock=True)


def _warehouse_order(session: Session, stocks: dict[StockKey, Stock]) -> list[str]:
    """The warehouses holding any of ``stocks``, by priority then code."""
    priority = dict(session.exec(select(Warehouse.code, Warehouse.priority)).all())
    codes = {warehouse for warehouse, _ in stocks}
    return sorted(codes, key=lambda code: (priority.get(code, 0), code))


def _available(stocks: dict[StockKey, Stock], warehouse: str, sku: str) -> int:
    stock = stocks.get((warehouse, sku))
    return max(stock.on_hand - stock.reserved, 0) if stock is not None else 0


def _first_with_all(stocks: dict[StockKey, Stock], wanted: Counter[str],
                    warehouses: list[str]) -> str | None:
    for warehouse in warehouses:
        if all(_available(stocks, warehouse, sku) >= qty for sku, qty in wanted.items()):
            return warehouse
    return None


def _missing(stocks: dict[StockKey, Stock], wanted: Counter[str],
             warehouses: list[str]) -> list[MissingStock]:
    best = {sku: max((_available(stocks, w, sku) for w in warehouses), default=0)
            for sku in wanted}
    short = [MissingStock(sku=sku, requested=qty, available=best[sku])
             for sku, qty in sorted(wanted.items()) if best[sku] < qty]
    if short or not warehouses:
        return short
    first = warehouses[0]  # only a split would do: say what the first warehouse lacks
    return [MissingStock(sku=sku, requested=qty, available=_available(stocks, first, sku))
            for sku, qty in sorted(wanted.items()) if _available(stocks, first, sku) < qty]


def _reserve(session: Session, order_id: str, warehouse: str, wanted: Counter[str],
             stocks: dict[StockKey, Stock], earlier: list[Reservation]) -> None:
    """Book ``wanted`` in ``warehouse``; rows released earlier are reused (unique key)."""
    released = {(r.warehouse, r.sku): r for r in earlier if r.state == RELEASED}
    for sku, qty in wanted.items():
        stock = stocks[warehouse, sku]
        stock.reserved += qty
        session.add(stock)
        row = released.get((warehouse, sku)) or Reservation(
            order_id=order_id, sku=sku, warehouse=warehouse, quantity=qty)
        row.quantity = qty
        row.state = RESERVED
        session.add(row)


def _consume(session: Session, shipment_id: str, order_id: str, rows: list[Reservation],
             stocks: dict[StockKey, Stock]) -> Shipment:
    for row in rows:
        stock = stocks[row.warehouse, row.sku]
        stock.on_hand -= row.quantity
        stock.reserved -= row.quantity
        row.state = CONSUMED
        session.add_all([stock, row])
    lines = [{"sku": row.sku, "quantity": row.quantity}
             for row in sorted(rows, key=lambda r: r.sku)]
    shipment = Shipment(shipment_id=shipment_id, order_id=order_id,
                        warehouse=rows[0].warehouse, lines=json.dumps(lines))
    session.add(shipment)
    return shipment


def _shipment_view(shipment: Shipment) -> ShipmentView:
    return ShipmentView(shipment_id=shipment.shipment_id, warehouse=shipment.warehouse)
