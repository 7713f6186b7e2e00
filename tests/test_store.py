"""The database activities (activities/store.py) and the master-data loader, on SQLite and
PostgreSQL. The ``engine`` is shared by the whole session, so every test makes its own
warehouses, products and orders with unique names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from activities.db import make_engine, migrate
from activities.masterdata import MasterDataError, load_master_data
from activities.payments import open_items
from activities.store import StoreActivities, list_products, stock_levels
from activities.tickets import TicketActivities, list_tickets
from models.activities import (
    AllocateShipmentInput,
    FillBackordersInput,
    OpenTicketInput,
    OrderInput,
    RecordPaymentInput,
    ReleaseStockInput,
    ReserveStockInput,
    ResolveTicketInput,
    StockLine,
)
from models.allocation import AllocationConfig, AllocationRule
from models.billing import BillingProfile
from models.orders import HoldReason, OrderIn, PaymentIn
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
from settings import PROJECT_DIR

DEMO_MASTERDATA = PROJECT_DIR / "demo" / "masterdata.toml"
T = TypeVar("T")


def uid() -> str:
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def tickets(engine: Engine) -> TicketActivities:
    return TicketActivities(engine)


@pytest.fixture
def store(engine: Engine) -> StoreActivities:
    return StoreActivities(engine)


# --- factories ---------------------------------------------------------------------------


def make_warehouse(engine: Engine, *, priority: int = 1) -> str:
    code = f"W{uid()}"
    with Session(engine) as session:
        session.add(Warehouse(code=code, name=f"Lager {code}", priority=priority))
        session.commit()
    return code


def make_product(engine: Engine, stock: dict[str, int]) -> str:
    """A product with ``{warehouse: on_hand}``; returns its SKU."""
    sku = f"SKU-{uid()}"
    with Session(engine) as session:
        session.add(Product(sku=sku, name=f"Artikel {sku}", weight_g=500, length_mm=100,
                            width_mm=100, height_mm=100, price=Decimal("19.90")))
        session.flush()
        session.add_all(Stock(warehouse=warehouse, sku=sku, on_hand=on_hand)
                        for warehouse, on_hand in stock.items())
        session.commit()
    return sku


def make_order(*, email: str, street: str = "Lindenweg 4", sku: str = "TENT-2P",
               shipping_street: str | None = None) -> OrderIn:
    address = {"name": "Anna Berg", "street": street, "postal_code": "94032",
               "city": "Passau", "country": "DE"}
    shipping = {**address, "street": shipping_street} if shipping_street else None
    return OrderIn.model_validate({
        "channel": "test", "external_id": uid(), "placed_at": "2026-11-25T09:14:00+01:00",
        "customer": {"email": email, "first_name": "Anna", "last_name": "Berg"},
        "billing_address": address, "shipping_address": shipping,
        "lines": [{"sku": sku, "name": "Zelt", "quantity": 1, "unit_price": "229.00",
                   "tax_rate": "19"}],
        "shipping": {"price": "4.90"}, "payment": {"method": "prepaid"}, "total": "233.90",
    })


def reserve(store: StoreActivities, order_id: str, *lines: tuple[str, int]) -> Any:
    return store.reserve_stock(ReserveStockInput(
        order_id=order_id, lines=[StockLine(sku=sku, quantity=qty) for sku, qty in lines]))


def count(engine: Engine, model: type[Any], *where: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


def level(engine: Engine, warehouse: str, sku: str) -> tuple[int, int]:
    """``(on_hand, reserved)``."""
    found = stock_levels(engine, sku)[warehouse]
    return found["on_hand"], found["reserved"]


def in_threads(n: int, job: Callable[[int], T]) -> list[T]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(job, range(n)))


# --- orders and customers ----------------------------------------------------------------


def test_same_email_and_address_is_one_customer_one_address(
        store: StoreActivities, engine: Engine) -> None:
    email = f"Anna.{uid()}@Example.de"
    first = store.record_order(OrderInput(order=make_order(email=email)))
    assert first.new_customer and first.new_address
    second = store.record_order(OrderInput(order=make_order(email=email.lower(),
                                                            street="lindenweg  4")))
    assert (second.customer_id, second.new_customer, second.new_address) == (
        first.customer_id, False, False)
    assert count(engine, Customer, Customer.email == email.lower()) == 1
    assert count(engine, CustomerAddress, CustomerAddress.customer_id == first.customer_id) == 1


def test_same_email_new_address_is_a_second_address(store: StoreActivities,
                                                    engine: Engine) -> None:
    email = f"bernd.{uid()}@example.de".lower()
    first = store.record_order(OrderInput(order=make_order(email=email)))
    second = store.record_order(OrderInput(order=make_order(email=email, street="Hauptstr. 1")))
    assert (second.customer_id, second.new_customer, second.new_address) == (
        first.customer_id, False, True)
    third = store.record_order(OrderInput(order=make_order(email=email, street="Lindenweg 4",
                                                           shipping_street="Hauptstraße 1")))
    assert not third.new_address  # both addresses known by now
    assert count(engine, Customer, Customer.email == email) == 1
    assert count(engine, CustomerAddress, CustomerAddress.customer_id == first.customer_id) == 2


def test_record_order_retry_stores_the_order_once(store: StoreActivities,
                                                  engine: Engine) -> None:
    order = make_order(email=f"carla.{uid()}@example.de")
    first = store.record_order(OrderInput(order=order))
    again = store.record_order(OrderInput(order=order))
    assert again.customer_id == first.customer_id
    assert count(engine, OrderRecord, OrderRecord.order_id == order.order_id) == 1
    with Session(engine) as session:
        record = session.get(OrderRecord, order.order_id)
        assert record is not None and record.total == Decimal("233.90")
        assert OrderIn.model_validate_json(record.payload) == order


def test_concurrent_orders_of_a_new_customer_make_one_customer(
        store: StoreActivities, engine: Engine) -> None:
    email = f"dora.{uid()}@example.de".lower()
    orders = [make_order(email=email) for _ in range(8)]
    results = in_threads(8, lambda i: store.record_order(OrderInput(order=orders[i])))
    assert len({r.customer_id for r in results}) == 1
    assert count(engine, Customer, Customer.email == email) == 1
    assert count(engine, CustomerAddress,
                 CustomerAddress.customer_id == results[0].customer_id) == 1
    assert count(engine, OrderRecord,
                 col(OrderRecord.order_id).in_([o.order_id for o in orders])) == 8


def test_check_order_knows_the_catalog(store: StoreActivities, engine: Engine) -> None:
    sku = make_product(engine, {})
    assert store.check_order(OrderInput(order=make_order(email="e@example.de", sku=sku))
                             ).holds == []
    holds = store.check_order(OrderInput(order=make_order(email="e@example.de",
                                                          sku="NOT-THERE"))).holds
    assert [h.reason for h in holds] == [HoldReason.UNKNOWN_SKU]


# --- stock -------------------------------------------------------------------------------


def reserved_in(result: Any) -> dict[str, str]:
    """``{sku: warehouse}`` of the hard reservations (one warehouse per SKU here)."""
    return {line.sku: line.warehouse for line in result.pending}


def test_reserve_twice_reserves_once(store: StoreActivities, engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    sku = make_product(engine, {warehouse: 10})
    order_id = f"o-{uid()}"
    first = reserve(store, order_id, (sku, 2), (sku, 1))  # lines of one SKU add up
    again = reserve(store, order_id, (sku, 3))
    assert first.pending == again.pending
    assert [(p.warehouse, p.quantity) for p in first.pending] == [(warehouse, 3)]
    assert level(engine, warehouse, sku) == (10, 3)
    assert count(engine, Reservation, Reservation.order_id == order_id) == 1


def test_reserve_picks_one_warehouse_by_priority(store: StoreActivities,
                                                 engine: Engine) -> None:
    first, second, third = (make_warehouse(engine, priority=p) for p in (1, 2, 3))
    tent = make_product(engine, {first: 5, second: 5, third: 5})
    stove = make_product(engine, {first: 0, second: 1, third: 9})
    result = reserve(store, f"o-{uid()}", (tent, 2), (stove, 1))
    # the first lacks the stove; the second ships the whole order: no split
    assert reserved_in(result) == {tent: second, stove: second}
    assert not result.backordered
    assert level(engine, first, tent) == (5, 0)
    assert level(engine, second, tent) == (5, 2)
    assert level(engine, second, stove) == (1, 1)


def test_no_single_warehouse_splits_by_priority(store: StoreActivities,
                                                engine: Engine) -> None:
    north, south = make_warehouse(engine, priority=1), make_warehouse(engine, priority=2)
    tent = make_product(engine, {north: 5, south: 0})
    stove = make_product(engine, {north: 0, south: 2})
    order_id = f"o-{uid()}"
    result = reserve(store, order_id, (tent, 1), (stove, 1))
    assert reserved_in(result) == {tent: north, stove: south}
    shipments = store.allocate_shipments(AllocateShipmentInput(order_id=order_id))
    assert [(s.shipment_id, s.warehouse, [(ln.sku, ln.quantity) for ln in s.lines])
            for s in shipments] == [(f"{order_id}-1", north, [(tent, 1)]),
                                    (f"{order_id}-2", south, [(stove, 1)])]
    assert store.allocate_shipments(AllocateShipmentInput(order_id=order_id)) == shipments
    assert level(engine, north, tent) == (4, 0) and level(engine, south, stove) == (1, 0)


def test_nearest_prefers_the_delivery_country(engine: Engine) -> None:
    store = StoreActivities(engine, AllocationConfig(
        channels={"amazon": AllocationRule(rule="nearest")}))
    german, austrian = make_warehouse(engine, priority=1), make_warehouse(engine, priority=2)
    with Session(engine) as session:
        session.get(Warehouse, austrian).country = "AT"  # type: ignore[union-attr]
        session.commit()
    tent = make_product(engine, {german: 5, austrian: 5})
    to_austria = store.reserve_stock(ReserveStockInput(
        order_id=f"o-{uid()}", lines=[StockLine(sku=tent, quantity=1)], channel="amazon",
        country="AT"))
    by_priority = store.reserve_stock(ReserveStockInput(
        order_id=f"o-{uid()}", lines=[StockLine(sku=tent, quantity=1)], channel="webshop",
        country="AT"))
    assert reserved_in(to_austria) == {tent: austrian}
    assert reserved_in(by_priority) == {tent: german}


def test_no_split_rule_backorders_the_whole_order(engine: Engine) -> None:
    store = StoreActivities(engine, AllocationConfig(default=AllocationRule(split=False)))
    north, south = make_warehouse(engine, priority=1), make_warehouse(engine, priority=2)
    tent = make_product(engine, {north: 5})
    stove = make_product(engine, {south: 2})
    order_id = f"o-{uid()}"
    result = reserve(store, order_id, (tent, 1), (stove, 1))
    assert result.pending == []
    assert {b.sku: b.quantity for b in result.backordered} == {tent: 1, stove: 1}
    assert level(engine, north, tent) == (5, 0)  # nothing held while it waits
    # stock for the stove comes into the north warehouse: now one warehouse has it all
    with Session(engine) as session:
        session.add(Stock(warehouse=north, sku=stove, on_hand=1))
        session.commit()
    assert order_id in store.fill_backorders(FillBackordersInput())
    state = store.reservation_state(order_id)
    assert reserved_in(state) == {tent: north, stove: north} and not state.backordered


def test_missing_stock_is_backordered_with_an_expected_date(store: StoreActivities,
                                                            engine: Engine) -> None:
    north, south = make_warehouse(engine), make_warehouse(engine)
    plenty = make_product(engine, {north: 10})
    scarce = make_product(engine, {north: 1, south: 2})
    expected = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with Session(engine) as session:
        row = session.exec(select(Stock).where(Stock.sku == scarce,
                                               Stock.warehouse == south)).one()
        row.expected_at = expected
        session.commit()
    result = reserve(store, f"o-{uid()}", (plenty, 1), (scarce, 4), ("NO-SUCH-SKU", 1))
    held = {(p.warehouse, p.sku): p.quantity for p in result.pending}
    assert held == {(north, plenty): 1, (north, scarce): 1, (south, scarce): 2}
    short = {b.sku: (b.quantity, b.expected_at) for b in result.backordered}
    assert short[scarce] == (1, expected)  # the stock feed's date
    assert short["NO-SUCH-SKU"][0] == 1
    lead = short["NO-SUCH-SKU"][1]  # no date from the feed: today + the lead time (7 days)
    assert lead is not None and timedelta(days=6) < lead - datetime.now(UTC) <= timedelta(days=7)
    assert level(engine, south, scarce) == (2, 2)


def test_stock_arrival_fills_backorders_oldest_first(store: StoreActivities,
                                                     engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    sku = make_product(engine, {warehouse: 0})
    older, newer = f"o-{uid()}-old", f"o-{uid()}-new"
    reserve(store, older, (sku, 2))
    reserve(store, newer, (sku, 1))
    with Session(engine) as session:
        session.exec(select(Stock).where(Stock.sku == sku)).one().on_hand = 2
        session.commit()
    woken = store.fill_backorders(FillBackordersInput())
    assert older in woken and newer not in woken  # the older order takes both units
    assert [(p.sku, p.quantity) for p in store.reservation_state(older).pending] == [(sku, 2)]
    assert store.reservation_state(older).backordered == []
    assert [b.quantity for b in store.reservation_state(newer).backordered] == [1]
    assert newer not in store.fill_backorders(FillBackordersInput())  # nothing free now
    assert level(engine, warehouse, sku) == (2, 2)


def test_later_round_after_a_shipment_is_its_own_shipment(store: StoreActivities,
                                                          engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    tent = make_product(engine, {warehouse: 1})
    order_id = f"o-{uid()}"
    reserve(store, order_id, (tent, 3))  # 1 now, 2 backordered
    first = store.allocate_shipments(AllocateShipmentInput(order_id=order_id, round=1))
    assert [(s.shipment_id, [ln.quantity for ln in s.lines]) for s in first] == [
        (f"{order_id}-1", [1])]
    with Session(engine) as session:
        session.exec(select(Stock).where(Stock.sku == tent)).one().on_hand += 5
        session.commit()
    assert order_id in store.fill_backorders(FillBackordersInput(order_id=order_id))
    second = store.allocate_shipments(AllocateShipmentInput(order_id=order_id, round=2))
    assert [(s.shipment_id, [ln.quantity for ln in s.lines]) for s in second] == [
        (f"{order_id}-2", [2])]
    assert store.allocate_shipments(AllocateShipmentInput(order_id=order_id, round=2)) == second
    assert level(engine, warehouse, tent) == (3, 0)


def test_release_returns_stock_once(store: StoreActivities, engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    sku = make_product(engine, {warehouse: 4})
    order_id = f"o-{uid()}"
    reserve(store, order_id, (sku, 3))
    assert store.release_stock(ReleaseStockInput(order_id=order_id)) == 1
    assert store.release_stock(ReleaseStockInput(order_id=order_id)) == 0
    assert level(engine, warehouse, sku) == (4, 0)
    assert reserve(store, order_id, (sku, 4)).reserved  # reserving again reuses the row
    assert level(engine, warehouse, sku) == (4, 4)


def test_allocate_takes_stock_off_once(store: StoreActivities, engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    tent, stove = make_product(engine, {warehouse: 10}), make_product(engine, {warehouse: 3})
    order_id = f"o-{uid()}"
    reserve(store, order_id, (tent, 2), (stove, 1))
    [shipment] = store.allocate_shipments(AllocateShipmentInput(order_id=order_id))
    assert store.allocate_shipments(AllocateShipmentInput(order_id=order_id)) == [shipment]
    assert (shipment.shipment_id, shipment.warehouse) == (f"{order_id}-1", warehouse)
    assert level(engine, warehouse, tent) == (8, 0)
    assert level(engine, warehouse, stove) == (2, 0)
    assert store.release_stock(ReleaseStockInput(order_id=order_id)) == 0  # consumed stays
    assert not reserve(store, order_id, (tent, 2)).pending  # and a retry reserves nothing
    assert level(engine, warehouse, tent) == (8, 0)
    assert count(engine, Shipment, Shipment.order_id == order_id) == 1


def test_cancel_after_allocation_restocks_once(store: StoreActivities, engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    tent, stove = make_product(engine, {warehouse: 10}), make_product(engine, {warehouse: 3})
    order_id = f"o-{uid()}"
    reserve(store, order_id, (tent, 2), (stove, 1))
    store.allocate_shipments(AllocateShipmentInput(order_id=order_id))
    assert level(engine, warehouse, tent) == (8, 0)
    restock = ReleaseStockInput(order_id=order_id, restock_allocated=True)
    assert store.release_stock(restock) == 2
    assert store.release_stock(restock) == 0  # a retry gives nothing back twice
    assert level(engine, warehouse, tent) == (10, 0)
    assert level(engine, warehouse, stove) == (3, 0)


def test_a_cancelled_order_is_marked_for_bank_matching(store: StoreActivities,
                                                       engine: Engine) -> None:
    kept, cancelled = make_order(email="a@kept.example"), make_order(email="b@gone.example")
    for order in (kept, cancelled):
        store.record_order(OrderInput(order=order))
    store.release_stock(ReleaseStockInput(order_id=kept.order_id))
    cancel = ReleaseStockInput(order_id=cancelled.order_id, cancelled=True)
    store.release_stock(cancel)
    store.release_stock(cancel)  # a retry

    items = {i.order_id: i for i in open_items(engine, days=1)}

    assert items[kept.order_id].cancelled is False
    assert items[cancelled.order_id].cancelled is True
    with Session(engine) as session:
        record = session.get(OrderRecord, cancelled.order_id)
        assert record is not None and record.cancelled_at is not None


def test_allocate_without_reservation_makes_no_shipment(store: StoreActivities) -> None:
    assert store.allocate_shipments(AllocateShipmentInput(order_id=f"o-{uid()}")) == []


def test_last_units_go_to_exactly_as_many_orders(store: StoreActivities,
                                                 engine: Engine) -> None:
    warehouse = make_warehouse(engine)
    sku = make_product(engine, {warehouse: 5})
    prefix = f"o-{uid()}"
    results = in_threads(10, lambda i: reserve(store, f"{prefix}-{i}", (sku, 1)))
    assert sum(r.reserved for r in results) == 5
    assert all(r.backordered[0].quantity == 1 for r in results if not r.reserved)
    assert level(engine, warehouse, sku) == (5, 5)
    assert count(engine, Reservation, Reservation.sku == sku,
                 Reservation.state == "reserved") == 5


# --- tickets and payments ----------------------------------------------------------------


def test_tickets_are_idempotent_and_resolvable(engine: Engine,
                                               tickets: TicketActivities) -> None:
    order_id = f"o-{uid()}"
    ticket = OpenTicketInput(order_id=order_id, key="hold-1", kind="hold", title="Prüfen",
                             body="- comment")
    first, again = tickets.open_ticket(ticket), tickets.open_ticket(ticket)
    assert first == again and first.status == "open"
    assert [t["id"] for t in list_tickets(engine, status="open")
            if t["order_id"] == order_id] == [first.ticket_id]
    resolve = ResolveTicketInput(order_id=order_id, key="hold-1", by="maria", note="ok")
    resolved = tickets.resolve_ticket(resolve)
    assert resolved is not None and resolved.status == "resolved"
    assert tickets.resolve_ticket(resolve.model_copy(update={"by": "someone"})) == resolved
    (row,) = [t for t in list_tickets(engine, status=None) if t["order_id"] == order_id]
    assert (row["resolved_by"], row["resolution"], row["status"]) == ("maria", "ok", "resolved")
    assert row["created_at"].endswith("+00:00")
    assert tickets.resolve_ticket(resolve.model_copy(update={"key": "nope"})) is None


def test_ticket_without_order(tickets: TicketActivities) -> None:
    key = f"import-{uid()}"
    ticket = OpenTicketInput(order_id=None, key=key, kind="import", title="Bestand")
    assert tickets.open_ticket(ticket) == tickets.open_ticket(ticket)
    resolved = tickets.resolve_ticket(ResolveTicketInput(order_id=None, key=key, by="system"))
    assert resolved is not None and resolved.status == "resolved"


def test_payment_is_recorded_once(store: StoreActivities, engine: Engine) -> None:
    order_id = f"o-{uid()}"
    payment = RecordPaymentInput(order_id=order_id, key="pay-1", payment=PaymentIn(
        amount=Decimal("233.90"), reference="webshop-100234"))
    store.record_payment(payment)
    store.record_payment(payment)
    assert count(engine, Payment, Payment.order_id == order_id) == 1


def test_list_products_shows_stock_per_warehouse(store: StoreActivities,
                                                 engine: Engine) -> None:
    north, south = make_warehouse(engine, priority=1), make_warehouse(engine, priority=2)
    sku = make_product(engine, {north: 7, south: 3})
    reserve(store, f"o-{uid()}", (sku, 2))
    (product,) = [p for p in list_products(engine) if p["sku"] == sku]
    assert product["price"] == "19.90" and product["dimensions"]["length_mm"] == 100
    assert sorted((s["warehouse"], s["on_hand"], s["reserved"], s["available"])
                  for s in product["stock"]) == sorted([(north, 7, 2, 5), (south, 3, 0, 3)])
    assert product["available"] == 8


# --- master data -------------------------------------------------------------------------


@pytest.fixture
def fresh_engine(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'masterdata.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_load_master_data_is_idempotent(fresh_engine: Engine) -> None:
    first = load_master_data(fresh_engine, DEMO_MASTERDATA)
    assert (first["warehouses"], first["products"], first["stock"]) == (2, 12, 13)
    assert first["customers"] == 2
    assert first["created"] == 29 and first["updated"] == 0
    with Session(fresh_engine) as session:  # stock moved since: a reload must keep it
        row = session.exec(select(Stock).where(Stock.sku == "TENT-2P")).one()
        row.on_hand, row.reserved = 7, 2
        session.add(row)
        session.commit()
    second = load_master_data(fresh_engine, DEMO_MASTERDATA)
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 29)
    assert level(fresh_engine, "MAIN", "TENT-2P") == (7, 2)
    assert level(fresh_engine, "MAIN", "LANTERN-OLD") == (0, 0)
    (tent,) = [p for p in list_products(fresh_engine) if p["sku"] == "TENT-2P"]
    assert (tent["name"], tent["price"]) == ("Trekkingzelt 2P", "229.00")


@pytest.mark.parametrize(("text", "names"), [
    pytest.param('[[products]]\nsku = "A-1"\nname = "A"\nweight_g = 1\nlength_mm = 1\n'
                 'width_mm = 1\nheight_mm = 1\nprice = "x"\n', "products[0] (A-1)", id="price"),
    pytest.param('[[warehouses]]\ncode = "M"\nname = "M"\n[[stock]]\nwarehouse = "M"\n'
                 'sku = "B-2"\non_hand = 1\n', "stock[0] (M/B-2)", id="unknown-product"),
    pytest.param('[[warehouses]]\ncode = "M"\nname = "M"\n[[warehouses]]\ncode = "M"\n'
                 'name = "N"\n', "warehouses[1] (M)", id="duplicate"),
    pytest.param("[[products]\n", "not valid TOML", id="syntax"),
    pytest.param('[[customers]]\nemail = "a@b.example"\neinvoice = "pdf"\n',
                 "customers[0] (a@b.example): einvoice", id="einvoice"),
    pytest.param('[[customers]]\nemail = "a@b.example"\n[[customers]]\n'
                 'email = "A@b.example"\n', "customers[1] (a@b.example)", id="dup-customer"),
])
def test_bad_master_data_names_file_and_entry(fresh_engine: Engine, tmp_path: Path,
                                              text: str, names: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MasterDataError) as caught:
        load_master_data(fresh_engine, path)
    assert str(path) in str(caught.value) and names in str(caught.value)
    assert count(fresh_engine, Warehouse) == 0


def test_customer_billing_terms_from_master_data(fresh_engine: Engine,
                                                 tmp_path: Path) -> None:
    order = make_order(email="Einkauf@Bergsport.example")
    store = StoreActivities(fresh_engine)
    assert store.record_order(OrderInput(order=order)).billing == BillingProfile()
    path = tmp_path / "customers.toml"
    path.write_text('[[customers]]\nemail = "EINKAUF@bergsport.example"\n'
                    'collective_invoice = true\neinvoice = "xrechnung"\n'
                    'buyer_reference = "PO-1"\npayment_term_days = 30\n', encoding="utf-8")

    counts = load_master_data(fresh_engine, path)
    again = load_master_data(fresh_engine, path)

    assert (counts["updated"], again["unchanged"]) == (1, 1)
    expected = BillingProfile(collective_invoice=True, einvoice="xrechnung",
                              buyer_reference="PO-1", payment_term=timedelta(days=30))
    second = make_order(email="einkauf@bergsport.example")
    result = store.record_order(OrderInput(order=second))
    assert result.billing == expected
    assert store.record_order(OrderInput(order=order)).billing == expected  # a retry
    with Session(fresh_engine) as session:  # one customer, its name from the order kept
        (customer,) = session.exec(select(Customer)).all()
        assert customer.last_name == order.customer.last_name
