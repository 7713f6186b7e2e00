"""The database activities: orders and customers, stock and reservations, payments.

Each activity is synchronous (the worker runs it in its thread pool), one short transaction,
and idempotent: a retry finds the rows of its earlier attempt instead of writing them again.
Contended rows are locked with ``SELECT ... FOR UPDATE`` on PostgreSQL (stock rows first, by
id); on SQLite every transaction is ``BEGIN IMMEDIATE`` (``activities.db``). Non-retryable
errors: ``ApplicationError`` of type ``NothingToReserve`` (reserve_stock without lines);
database errors propagate so that Temporal retries. Which warehouse ships which line is
decided by the channel's allocation rule (``models.allocation``, from the network config).
Tickets live in ``activities.tickets``; ``list_products`` and
``stock_levels`` (``activities.masterdata``) are re-exported here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import get_or_create, session_for
from activities.masterdata import list_products, stock_levels
from models import rules
from models.activities import (
    AllocateShipmentInput,
    BackorderLine,
    CheckOrderResult,
    FillBackordersInput,
    OrderInput,
    RecordOrderResult,
    RecordPaymentInput,
    ReleaseStockInput,
    ReservationState,
    ReservedLine,
    ReserveStockInput,
)
from models.allocation import AllocationConfig, AllocationRule, WarehouseInfo, plan_allocation
from models.orders import Address, OrderIn, ShipmentLine, ShipmentView
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

__all__ = ["BACKORDERED", "CONSUMED", "FILLED", "RELEASED", "RESERVED", "StoreActivities",
           "list_products", "stock_levels"]

# Reservation.state
RESERVED = "reserved"
RELEASED = "released"
CONSUMED = "consumed"
BACKORDERED = "backordered"  # soft: no warehouse had it
FILLED = "filled"  # a soft line the stock sync turned into hard reservations
DROPSHIP_PREFIX = "@"  # Reservation/Shipment.warehouse "@<partner>": the supplier ships it


class StoreActivities:
    """Activities on the order database; ``engine`` is shared by all threads.

    ``allocation`` holds the rule per channel; ``lead_time`` dates a backordered line when
    the stock feed does not say when the SKU comes in."""

    def __init__(self, engine: Engine, allocation: AllocationConfig | None = None,
                 lead_time: timedelta = timedelta(days=7)) -> None:
        self.engine = engine
        self.allocation = allocation or AllocationConfig()
        self.lead_time = lead_time

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
    def reserve_stock(self, input: ReserveStockInput) -> ReservationState:
        """Reserve the order's lines by the channel's allocation rule (``models.allocation``).

        What some warehouse has is reserved hard (round 1); what nobody has is reserved soft
        (backordered, with the date the stock feed expects it, else today + the configured
        lead time). A retry finds the order's rows and reserves nothing twice.
        """
        wanted = Counter[str]()
        for line in input.lines:
            wanted[line.sku] += line.quantity
        if not wanted:
            raise ApplicationError(f"order {input.order_id}: nothing to reserve",
                                   type="NothingToReserve", non_retryable=True)
        rule = self.allocation.for_channel(input.channel)
        with session_for(self.engine) as session:
            stocks = _lock_stock(session, wanted)
            earlier = _reservations(session, input.order_id, lock=True)
            if any(row.state != RELEASED for row in earlier):
                return _state(earlier, rule)
            reused = {(r.round, r.sku, r.warehouse): r for r in earlier}
            for sku, partner in _dropship_partners(session, wanted).items():
                row = reused.get((1, sku, DROPSHIP_PREFIX + partner)) or Reservation(
                    order_id=input.order_id, round=1, sku=sku,
                    warehouse=DROPSHIP_PREFIX + partner, quantity=0)
                row.quantity, row.state = wanted.pop(sku), RESERVED
                session.add(row)
            plan = plan_allocation(wanted, _free(stocks), _warehouses(session), rule,
                                   input.country)
            for pick in plan.picks:
                _book(session, reused, input.order_id, 1, pick.warehouse, pick.sku,
                      pick.quantity, stocks)
            now = datetime.now(UTC)
            for sku, quantity in plan.short.items():
                row = reused.get((0, sku, "")) or Reservation(
                    order_id=input.order_id, round=0, sku=sku, warehouse="", quantity=0)
                row.quantity, row.state = quantity, BACKORDERED
                row.expected_at = _expected(stocks, sku) or now + self.lead_time
                row.created_at = now
                session.add(row)
            session.commit()
            return _state(_reservations(session, input.order_id), rule, plan.explanation)

    @activity.defn
    def reservation_state(self, order_id: str) -> ReservationState:
        """The order's pending hard reservations and backordered lines, as they are now."""
        with Session(self.engine) as session:
            rule = self.allocation.for_channel(_order_place(session, order_id)[0])
            return _state(_reservations(session, order_id), rule)

    @activity.defn
    def fill_backorders(self, input: FillBackordersInput) -> list[str]:
        """Turn backordered lines into hard reservations where stock is free now, oldest
        order first, each by its channel's rule. Returns the orders that got stock, in the
        order they got it (the stock sync wakes them in this order)."""
        with session_for(self.engine) as session:
            query = select(Reservation.sku).where(Reservation.state == BACKORDERED)
            if input.order_id:
                query = query.where(Reservation.order_id == input.order_id)
            skus = set(session.exec(query))
            if not skus:
                return []
            stocks = _lock_stock(session, skus)
            query = (select(Reservation).where(Reservation.state == BACKORDERED)
                     .order_by(col(Reservation.created_at), col(Reservation.id)))
            if input.order_id:
                query = query.where(Reservation.order_id == input.order_id)
            per_order: dict[str, list[Reservation]] = {}
            for row in session.exec(query.with_for_update()):
                per_order.setdefault(row.order_id, []).append(row)
            warehouses = _warehouses(session)
            woken: list[str] = []
            for order_id, soft in per_order.items():
                if self._fill_order(session, order_id, soft, stocks, warehouses):
                    woken.append(order_id)
            session.commit()
            return woken

    def _fill_order(self, session: Session, order_id: str, soft: list[Reservation],
                    stocks: dict[StockKey, Stock], warehouses: list[WarehouseInfo]) -> bool:
        channel, country = _order_place(session, order_id)
        rule = self.allocation.for_channel(channel)
        plan = plan_allocation({row.sku: row.quantity for row in soft}, _free(stocks),
                               warehouses, rule, country)
        if not plan.picks:
            return False
        shipped_rounds = session.exec(select(func.max(Shipment.round)).where(
            Shipment.order_id == order_id)).one()
        round_ = (shipped_rounds or 0) + 1
        existing = {(r.round, r.sku, r.warehouse): r
                    for r in _reservations(session, order_id) if r.round == round_}
        by_sku = {row.sku: row for row in soft}
        for pick in plan.picks:
            _book(session, existing, order_id, round_, pick.warehouse, pick.sku, pick.quantity,
                  stocks)
            row = by_sku[pick.sku]
            row.quantity -= pick.quantity
            if row.quantity <= 0:
                row.quantity, row.state = 0, FILLED
            session.add(row)
        return True

    @activity.defn
    def release_stock(self, input: ReleaseStockInput) -> int:
        """Give the order's reserved stock back; how many reservations were released.

        Backordered (soft) lines are dropped. With ``restock_allocated`` the stock already
        allocated to a shipment that never left (cancelled before the hand-off) goes back to
        ``on_hand`` as well."""
        with session_for(self.engine) as session:
            stocks, rows = _lock_reserved(session, input.order_id)
            for row in rows:
                if not is_dropship(row.warehouse):
                    stocks[row.warehouse, row.sku].reserved -= row.quantity
                row.state = RELEASED
                session.add(row)
            session.add_all(stocks.values())
            soft = _reservations(session, input.order_id, state=BACKORDERED, lock=True)
            for row in soft:
                row.state = RELEASED
                session.add(row)
            session.commit()
            released = len(rows) + len(soft)
            if input.restock_allocated:
                stocks, rows = _lock_reserved(session, input.order_id, CONSUMED)
                for row in rows:
                    if not is_dropship(row.warehouse):
                        stocks[row.warehouse, row.sku].on_hand += row.quantity
                    row.state = RELEASED
                    session.add(row)
                session.add_all(stocks.values())
                session.commit()
                released += len(rows)
            return released

    @activity.defn
    def allocate_shipments(self, input: AllocateShipmentInput) -> list[ShipmentView]:
        """Turn the order's hard reservations into shipments, one per warehouse (numbered on
        from the order's earlier shipments); the stock leaves ``on_hand``. A retry of the
        same round returns the same shipments; nothing reserved gives no shipment."""
        with session_for(self.engine) as session:
            if done := _shipments(session, input.order_id, input.round):
                return [_shipment_view(session, shipment) for shipment in done]
            stocks, rows = _lock_reserved(session, input.order_id)
            if done := _shipments(session, input.order_id, input.round):  # a concurrent attempt
                return [_shipment_view(session, shipment) for shipment in done]
            if not rows:
                return []
            rank = {w.code: i for i, w in enumerate(
                sorted(_warehouses(session), key=lambda w: (w.priority, w.code)))}
            per_warehouse: dict[str, list[Reservation]] = {}
            for row in sorted(rows, key=lambda r: (rank.get(r.warehouse, len(rank)),
                                                    r.warehouse)):
                per_warehouse.setdefault(row.warehouse, []).append(row)
            number = len(_shipments(session, input.order_id))
            created = [_consume(session, f"{input.order_id}-{number + i}", input.order_id,
                                input.round, group, stocks)
                       for i, group in enumerate(per_warehouse.values(), start=1)]
            session.commit()
            return [_shipment_view(session, shipment) for shipment in created]

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


def _dropship_partners(session: Session, skus: Iterable[str]) -> dict[str, str]:
    """``{sku: supplier partner}`` of the dropship / pre-order SKUs among ``skus``."""
    rows = session.exec(select(Product.sku, Product.dropship_partner).where(
        col(Product.sku).in_(set(skus)), col(Product.dropship_partner).is_not(None))).all()
    return {sku: partner for sku, partner in rows if partner}


def _warehouses(session: Session) -> list[WarehouseInfo]:
    return [WarehouseInfo(code=w.code, country=w.country, priority=w.priority)
            for w in session.exec(select(Warehouse))]


def _free(stocks: dict[StockKey, Stock]) -> dict[StockKey, int]:
    return {key: max(stock.on_hand - stock.reserved, 0) for key, stock in stocks.items()}


def _expected(stocks: dict[StockKey, Stock], sku: str) -> datetime | None:
    """The earliest date the stock feed expects ``sku`` in any warehouse."""
    dates = [s.expected_at for (_, stock_sku), s in stocks.items()
             if stock_sku == sku and s.expected_at is not None]
    return min(dates) if dates else None


def _book(session: Session, rows: dict[tuple[int, str, str], Reservation], order_id: str,
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


def _state(rows: list[Reservation], rule: AllocationRule,
           explanation: str = "") -> ReservationState:
    pending = [ReservedLine(warehouse=r.warehouse, sku=r.sku, quantity=r.quantity)
               for r in rows if r.state == RESERVED]
    backordered = [BackorderLine(sku=r.sku, quantity=r.quantity, expected_at=r.expected_at)
                   for r in rows if r.state == BACKORDERED]
    return ReservationState(pending=pending, backordered=backordered,
                            partial_delivery=rule.partial_delivery, explanation=explanation)


def _order_place(session: Session, order_id: str) -> tuple[str, str]:
    """The order's channel and delivery country ("", "DE" for an order not recorded)."""
    record = session.get(OrderRecord, order_id)
    if record is None:
        return "", "DE"
    address = session.get(CustomerAddress, record.shipping_address_id)
    return record.channel, address.country if address else "DE"


def _shipments(session: Session, order_id: str, round_: int | None = None) -> list[Shipment]:
    query = select(Shipment).where(Shipment.order_id == order_id)
    if round_ is not None:
        query = query.where(Shipment.round == round_)
    return list(session.exec(query.order_by(col(Shipment.created_at),
                                            col(Shipment.shipment_id))))


def _consume(session: Session, shipment_id: str, order_id: str, round_: int,
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


def _shipment_view(session: Session, shipment: Shipment) -> ShipmentView:
    if is_dropship(shipment.warehouse):
        partner = shipment.warehouse.removeprefix(DROPSHIP_PREFIX)
    else:
        warehouse = session.get(Warehouse, shipment.warehouse)
        partner = warehouse.partner if warehouse is not None else None
    return ShipmentView(shipment_id=shipment.shipment_id, warehouse=shipment.warehouse,
                        partner=partner,
                        lines=[ShipmentLine(**line) for line in json.loads(shipment.lines)])
