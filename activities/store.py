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

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import reservations as rs
from activities.db import get_or_create, session_for
from activities.masterdata import list_products, stock_levels
from models import rules
from models.activities import (
    AllocateShipmentInput,
    CheckOrderResult,
    FillBackordersInput,
    OrderInput,
    RecordOrderResult,
    RecordPaymentInput,
    ReleaseStockInput,
    ReservationState,
    ReserveStockInput,
)
from models.allocation import (
    AllocationConfig,
    AllocationRule,
    WarehouseInfo,
    plan_allocation,
    warehouse_order,
)
from models.billing import BillingProfile
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
)
from models.tax import TaxConfig

__all__ = ["StoreActivities", "list_products", "stock_levels"]



class StoreActivities:
    """Activities on the order database; ``engine`` is shared by all threads.

    ``allocation`` holds the rule per channel; ``lead_time`` dates a backordered line when
    the stock feed does not say when the SKU comes in."""

    def __init__(self, engine: Engine, allocation: AllocationConfig | None = None,
                 lead_time: timedelta = timedelta(days=7), tax: TaxConfig | None = None) -> None:
        self.engine = engine
        self.allocation = allocation or AllocationConfig()
        self.lead_time = lead_time
        self.tax = tax

    # --- orders ----------------------------------------------------------------------

    @activity.defn
    def record_order(self, input: OrderInput) -> RecordOrderResult:
        """Store the order once; find or create its customer (by e-mail) and addresses."""
        order = input.order
        with session_for(self.engine) as session:
            known = session.get(OrderRecord, order.order_id)
            if known is not None:
                customer = session.get(Customer, known.customer_id)
                return RecordOrderResult(customer_id=known.customer_id, new_customer=False,
                                         new_address=False,
                                         billing=billing_profile(customer))
            customer, new_customer = _customer(session, order.customer)
            assert customer.id is not None
            billing, new_billing = _address(session, customer.id, order.billing_address)
            shipping, new_shipping = _address(session, customer.id, order.delivery_address)
            assert billing.id is not None and shipping.id is not None
            get_or_create(session, select(OrderRecord).where(
                OrderRecord.order_id == order.order_id),
                lambda: _order_record(order, customer.id, billing.id, shipping.id, self.tax))
            session.commit()
            return RecordOrderResult(customer_id=customer.id, new_customer=new_customer,
                                     new_address=new_billing or new_shipping,
                                     billing=billing_profile(customer))

    @activity.defn
    def check_order(self, input: OrderInput) -> CheckOrderResult:
        """The hold reasons of the order (totals, SKUs, address, comment)."""
        skus = {line.sku for line in input.order.lines}
        with session_for(self.engine) as session:
            known = set(session.exec(select(Product.sku).where(col(Product.sku).in_(skus))))
        return CheckOrderResult(holds=rules.check_order(input.order, known_skus=known,
                                                        tax=self.tax))

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
            stocks = rs.lock_stock(session, wanted)
            earlier = rs.reservations(session, input.order_id, lock=True)
            if any(row.state != rs.RELEASED for row in earlier):
                return rs.state_of(earlier, rule)
            reused = {(r.round, r.sku, r.warehouse): r for r in earlier}
            for sku, partner in rs.dropship_partners(session, wanted).items():
                row = reused.get((1, sku, rs.DROPSHIP_PREFIX + partner)) or Reservation(
                    order_id=input.order_id, round=1, sku=sku,
                    warehouse=rs.DROPSHIP_PREFIX + partner, quantity=0)
                row.quantity, row.state = wanted.pop(sku), rs.RESERVED
                session.add(row)
            plan = plan_allocation(wanted, rs.free(stocks), rs.warehouses(session), rule,
                                   input.country)
            for pick in plan.picks:
                rs.book(session, reused, input.order_id, 1, pick.warehouse, pick.sku,
                      pick.quantity, stocks)
            now = datetime.now(UTC)
            for sku, quantity in plan.short.items():
                row = reused.get((0, sku, "")) or Reservation(
                    order_id=input.order_id, round=0, sku=sku, warehouse="", quantity=0)
                row.quantity, row.state = quantity, rs.BACKORDERED
                row.expected_at = rs.expected(stocks, sku) or now + self.lead_time
                row.created_at = now
                session.add(row)
            session.commit()
            return rs.state_of(rs.reservations(session, input.order_id), rule,
                               plan.explanation)

    @activity.defn
    def reservation_state(self, order_id: str) -> ReservationState:
        """The order's pending hard reservations and backordered lines, as they are now."""
        with Session(self.engine) as session:
            rule = self.allocation.for_channel(rs.order_place(session, order_id)[0])
            return rs.state_of(rs.reservations(session, order_id), rule)

    @activity.defn
    def fill_backorders(self, input: FillBackordersInput) -> list[str]:
        """Turn backordered lines into hard reservations where stock is free now, oldest
        order first, each by its channel's rule. Returns the orders that got stock, in the
        order they got it (the stock sync wakes them in this order)."""
        with session_for(self.engine) as session:
            query = select(Reservation.sku).where(Reservation.state == rs.BACKORDERED)
            if input.order_id:
                query = query.where(Reservation.order_id == input.order_id)
            skus = set(session.exec(query))
            if not skus:
                return []
            stocks = rs.lock_stock(session, skus)
            query = (select(Reservation).where(Reservation.state == rs.BACKORDERED)
                     .order_by(col(Reservation.created_at), col(Reservation.id)))
            if input.order_id:
                query = query.where(Reservation.order_id == input.order_id)
            per_order: dict[str, list[Reservation]] = {}
            for row in session.exec(query.with_for_update()):
                per_order.setdefault(row.order_id, []).append(row)
            warehouses = rs.warehouses(session)
            woken: list[str] = []
            for order_id, soft in per_order.items():
                if self._fill_order(session, order_id, soft, stocks, warehouses):
                    woken.append(order_id)
            session.commit()
            return woken

    def _fill_order(self, session: Session, order_id: str, soft: list[Reservation],
                    stocks: dict[rs.StockKey, Stock], warehouses: list[WarehouseInfo]) -> bool:
        channel, country = rs.order_place(session, order_id)
        rule = self.allocation.for_channel(channel)
        plan = plan_allocation({row.sku: row.quantity for row in soft}, rs.free(stocks),
                               warehouses, rule, country)
        if not plan.picks:
            return False
        shipped_rounds = session.exec(select(func.max(Shipment.round)).where(
            Shipment.order_id == order_id)).one()
        round_ = (shipped_rounds or 0) + 1
        existing = {(r.round, r.sku, r.warehouse): r
                    for r in rs.reservations(session, order_id) if r.round == round_}
        by_sku = {row.sku: row for row in soft}
        for pick in plan.picks:
            rs.book(session, existing, order_id, round_, pick.warehouse, pick.sku, pick.quantity,
                  stocks)
            row = by_sku[pick.sku]
            row.quantity -= pick.quantity
            if row.quantity <= 0:
                row.quantity, row.state = 0, rs.FILLED
            session.add(row)
        return True

    @activity.defn
    def release_stock(self, input: ReleaseStockInput) -> int:
        """Give the order's reserved stock back; how many reservations were released.

        Backordered (soft) lines are dropped. With ``restock_allocated`` the stock already
        allocated to a shipment that never left (cancelled before the hand-off) goes back to
        ``on_hand`` as well."""
        with session_for(self.engine) as session:
            stocks, rows = rs.lock_reserved(session, input.order_id)
            for row in rows:
                if not rs.is_dropship(row.warehouse):
                    stocks[row.warehouse, row.sku].reserved -= row.quantity
                row.state = rs.RELEASED
                session.add(row)
            session.add_all(stocks.values())
            record = session.get(OrderRecord, input.order_id) if input.cancelled else None
            if record is not None and record.cancelled_at is None:
                record.cancelled_at = datetime.now(UTC)
                session.add(record)
            soft = rs.reservations(session, input.order_id, state=rs.BACKORDERED, lock=True)
            for row in soft:
                row.state = rs.RELEASED
                session.add(row)
            session.commit()
            released = len(rows) + len(soft)
            if input.restock_allocated:
                stocks, rows = rs.lock_reserved(session, input.order_id, rs.CONSUMED)
                for row in rows:
                    if not rs.is_dropship(row.warehouse):
                        stocks[row.warehouse, row.sku].on_hand += row.quantity
                    row.state = rs.RELEASED
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
            if done := rs.shipments(session, input.order_id, input.round):
                return [rs.shipment_view(session, shipment) for shipment in done]
            stocks, rows = rs.lock_reserved(session, input.order_id)
            if done := rs.shipments(session, input.order_id, input.round):  # a concurrent attempt
                return [rs.shipment_view(session, shipment) for shipment in done]
            if not rows:
                return []
            rank = {code: i for i, code in enumerate(
                warehouse_order(rs.warehouses(session), AllocationRule(), ""))}
            per_warehouse: dict[str, list[Reservation]] = {}
            for row in sorted(rows, key=lambda r: (rank.get(r.warehouse, len(rank)),
                                                    r.warehouse)):
                per_warehouse.setdefault(row.warehouse, []).append(row)
            number = len(rs.shipments(session, input.order_id))
            created = [rs.consume(session, f"{input.order_id}-{number + i}", input.order_id,
                                input.round, group, stocks)
                       for i, group in enumerate(per_warehouse.values(), start=1)]
            session.commit()
            return [rs.shipment_view(session, shipment) for shipment in created]

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


def customer_billing(session: Session, email: str) -> BillingProfile:
    """The billing profile of the customer with that e-mail address."""
    customer = session.exec(select(Customer).where(Customer.email == email.lower())).first()
    return billing_profile(customer)


def billing_profile(customer: Customer | None) -> BillingProfile:
    """The billing profile master data gave the customer (defaults for anyone else)."""
    if customer is None:
        return BillingProfile()
    days = customer.payment_term_days
    return BillingProfile(
        collective_invoice=customer.collective_invoice,
        einvoice=customer.einvoice,  # type: ignore[arg-type]  # checked by master data
        buyer_reference=customer.buyer_reference,
        payment_term=timedelta(days=days) if days is not None else None)


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


def _order_record(order: OrderIn, customer_id: int, billing_id: int, shipping_id: int,
                  tax: TaxConfig | None) -> OrderRecord:
    return OrderRecord(order_id=order.order_id, channel=order.channel,
                       external_id=order.external_id, customer_id=customer_id,
                       billing_address_id=billing_id, shipping_address_id=shipping_id,
                       currency=order.currency, total=rules.compute_totals(order, tax).total,
                       payload=order.model_dump_json())
