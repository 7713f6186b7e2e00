"""Master data from a TOML file: warehouses, products, initial stock, customers' billing.

The file has four arrays of tables (see ``demo/masterdata.toml``)::

    [[warehouses]]  code, name, country = "DE", priority = 0
    [[products]]    sku, name, weight_g, length_mm, width_mm, height_mm, price = "229.00"
    [[stock]]       warehouse, sku, on_hand
    [[customers]]   email, collective_invoice, einvoice, buyer_reference, payment_term_days

A ``[[customers]]`` entry sets the billing profile of the customer with that e-mail
address (created if unknown; names and addresses still come from the orders).

Loading is an idempotent upsert: warehouses and products take the file's values; a stock
row gets ``on_hand`` only when it does not exist yet, so loading again (every ``make run``)
keeps the real stock levels. Every entry is validated first; ``MasterDataError`` names the
file and the entry at fault. ``list_products`` and ``stock_levels`` read the catalog back
(with live stock) for the HTTP API.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from models.billing import EinvoiceFormat
from models.tables import Customer, Product, Stock, Warehouse

__all__ = ["MasterData", "MasterDataError", "list_products", "load_master_data",
           "read_master_data", "stock_levels", "unknown_partners"]

_ATTEMPTS = 3  # a concurrent loader may insert the same key first: start over
_Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
_Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_Millimetres = Annotated[int, Field(gt=0, le=10_000)]


class MasterDataError(ValueError):
    """The master-data file is missing, not TOML, or an entry is invalid.

    ``path`` is the file, ``entry`` the offending entry (e.g. ``products[3] (TENT-2P)``)
    or ``None`` when the file as a whole is at fault.
    """

    def __init__(self, path: Path, entry: str | None, message: str) -> None:
        where = f"{path}: {entry}" if entry else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.entry = entry


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarehouseEntry(_Entry):
    code: _Code
    name: _Name
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "DE"
    priority: int = 0
    street: Annotated[str, StringConstraints(max_length=200)] = ""
    postal_code: Annotated[str, StringConstraints(max_length=20)] = ""
    city: Annotated[str, StringConstraints(max_length=100)] = ""
    # same-day dispatch for hand-offs before this time (shown on the shipment)
    cutoff: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] | None = None
    partner: _Code | None = None  # the partner operating it (settings); None: the default


class ProductEntry(_Entry):
    sku: _Sku
    name: _Name
    weight_g: Annotated[int, Field(gt=0, le=1_000_000)]
    length_mm: _Millimetres
    width_mm: _Millimetres
    height_mm: _Millimetres
    price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
    hazardous: bool = False  # dangerous goods: only carriers that take them
    age_check: bool = False  # delivery with an age check (e.g. 18+)
    dropship_partner: _Code | None = None  # the supplier ships it (a partner in the settings)


class StockEntry(_Entry):
    warehouse: _Code
    sku: _Sku
    on_hand: Annotated[int, Field(ge=0)]


class CustomerEntry(_Entry):
    email: EmailStr
    collective_invoice: bool = False  # one invoice per month (payment method invoice)
    einvoice: EinvoiceFormat | None = None  # None: ORDERS_B2B_EINVOICE for B2B customers
    buyer_reference: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                      max_length=100)] | None = None
    payment_term_days: Annotated[int, Field(ge=0, le=365)] | None = None

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class MasterData(BaseModel):
    warehouses: list[WarehouseEntry] = Field(default_factory=list)
    products: list[ProductEntry] = Field(default_factory=list)
    stock: list[StockEntry] = Field(default_factory=list)
    customers: list[CustomerEntry] = Field(default_factory=list)


E = TypeVar("E", bound=_Entry)
_LABEL_KEY = {"warehouses": "code", "products": "sku", "customers": "email"}


def _describe(section: str, index: int, raw: Any) -> str:
    label = None
    if isinstance(raw, dict):
        label = (f"{raw.get('warehouse')}/{raw.get('sku')}" if section == "stock"
                 else raw.get(_LABEL_KEY[section]))
    return f"{section}[{index}]" + (f" ({label})" if label else "")


def _entries(path: Path, raw: dict[str, Any], section: str, model: type[E]) -> list[E]:
    raws = raw.get(section, [])
    if not isinstance(raws, list):
        raise MasterDataError(path, section, f"expected an array of tables [[{section}]]")
    entries: list[E] = []
    for index, item in enumerate(raws):
        try:
            entries.append(model.model_validate(item))
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                                 for e in err.errors())
            raise MasterDataError(path, _describe(section, index, item), problems) from err
    return entries


def read_master_data(path: Path) -> MasterData:
    """Read and validate the file; raises ``MasterDataError``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MasterDataError(path, None, f"cannot read: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise MasterDataError(path, None, f"not valid TOML: {err}") from err
    unknown = sorted(set(raw) - set(MasterData.model_fields))
    if unknown:
        raise MasterDataError(path, None, f"unknown sections {unknown}; expected "
                                          f"{sorted(MasterData.model_fields)}")
    data = MasterData(warehouses=_entries(path, raw, "warehouses", WarehouseEntry),
                      products=_entries(path, raw, "products", ProductEntry),
                      stock=_entries(path, raw, "stock", StockEntry),
                      customers=_entries(path, raw, "customers", CustomerEntry))
    _check_duplicates(path, data)
    return data


def _check_duplicates(path: Path, data: MasterData) -> None:
    for section, key in _LABEL_KEY.items():
        seen: set[str] = set()
        for index, entry in enumerate(getattr(data, section)):
            value = getattr(entry, key)
            if value in seen:
                raise MasterDataError(path, f"{section}[{index}] ({value})", f"duplicate {key}")
            seen.add(value)
    pairs: set[tuple[str, str]] = set()
    for index, stock in enumerate(data.stock):
        if (stock.warehouse, stock.sku) in pairs:
            raise MasterDataError(path, f"stock[{index}] ({stock.warehouse}/{stock.sku})",
                                  "duplicate warehouse and sku")
        pairs.add((stock.warehouse, stock.sku))


# --- the upsert --------------------------------------------------------------------------


def _upsert(session: Session, model: type[SQLModel], key: Any, values: dict[str, Any]) -> str:
    """Insert or update one row; ``created``, ``updated`` or ``unchanged``."""
    row = session.get(model, key)
    if row is None:
        session.add(model(**values))
        return "created"
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    return "updated" if changed else "unchanged"


def _store(session: Session, path: Path, data: MasterData) -> Counter[str]:
    counts: Counter[str] = Counter()
    for warehouse in data.warehouses:
        counts[_upsert(session, Warehouse, warehouse.code, warehouse.model_dump())] += 1
    for product in data.products:
        counts[_upsert(session, Product, product.sku, product.model_dump())] += 1
    session.flush()
    for index, entry in enumerate(data.stock):
        where = f"stock[{index}] ({entry.warehouse}/{entry.sku})"
        if session.get(Warehouse, entry.warehouse) is None:
            raise MasterDataError(path, where, f"unknown warehouse {entry.warehouse!r}")
        if session.get(Product, entry.sku) is None:
            raise MasterDataError(path, where, f"unknown product {entry.sku!r}")
        query = select(Stock).where(Stock.warehouse == entry.warehouse, Stock.sku == entry.sku)
        if session.exec(query).first() is None:
            session.add(Stock(warehouse=entry.warehouse, sku=entry.sku, on_hand=entry.on_hand))
            counts["created"] += 1
        else:
            counts["unchanged"] += 1
    for customer in data.customers:
        counts[_billing_profile(session, customer)] += 1
    return counts


def _billing_profile(session: Session, entry: CustomerEntry) -> str:
    """Set the billing profile of the customer ``entry.email`` (created if unknown)."""
    values = entry.model_dump(exclude={"email"})
    row = session.exec(select(Customer).where(Customer.email == entry.email)).first()
    if row is None:
        session.add(Customer(email=entry.email, **values))
        return "created"
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    return "updated" if changed else "unchanged"


def load_master_data(engine: Engine, path: Path) -> dict[str, int]:
    """Validate ``path`` and upsert it in one transaction.

    Returns the number of entries per section and of rows ``created``, ``updated`` and
    ``unchanged``; raises ``MasterDataError`` on a bad file (nothing is written then).
    """
    data = read_master_data(path)
    counts = _store_with_retry(engine, path, data)
    return {"warehouses": len(data.warehouses), "products": len(data.products),
            "stock": len(data.stock), "customers": len(data.customers),
            "created": counts["created"],
            "updated": counts["updated"], "unchanged": counts["unchanged"]}


def _store_with_retry(engine: Engine, path: Path, data: MasterData) -> Counter[str]:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with Session(engine) as session:
                counts = _store(session, path, data)
                session.commit()
                return counts
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def unknown_partners(engine: Engine, partners: set[str]) -> list[str]:
    """Warehouses and products that name a partner not in ``partners`` (one line each)."""
    with Session(engine) as session:
        warehouses = session.exec(select(Warehouse).where(
            col(Warehouse.partner).is_not(None))).all()
        products = session.exec(select(Product).where(
            col(Product.dropship_partner).is_not(None))).all()
    problems = [f"warehouse {w.code}: unknown partner {w.partner!r}" for w in warehouses
                if w.partner not in partners]
    problems += [f"product {p.sku}: unknown dropship partner {p.dropship_partner!r}"
                 for p in products if p.dropship_partner not in partners]
    return problems


# --- the catalog as the API shows it ----------------------------------------------------


def _stock_entry(stock: Stock) -> dict[str, Any]:
    return {"warehouse": stock.warehouse, "on_hand": stock.on_hand, "reserved": stock.reserved,
            "available": max(stock.on_hand - stock.reserved, 0)}


def list_products(engine: Engine) -> list[dict[str, Any]]:
    """The catalog with stock per warehouse; money as decimal strings."""
    with Session(engine) as session:
        products = session.exec(select(Product).order_by(col(Product.sku))).all()
        stocks = session.exec(select(Stock).order_by(col(Stock.warehouse))).all()
    per_sku: dict[str, list[dict[str, Any]]] = {}
    for stock in stocks:
        per_sku.setdefault(stock.sku, []).append(_stock_entry(stock))
    return [{"sku": p.sku, "name": p.name, "weight_g": p.weight_g,
             "dimensions": {"length_mm": p.length_mm, "width_mm": p.width_mm,
                            "height_mm": p.height_mm},
             "price": f"{p.price:.2f}", "stock": per_sku.get(p.sku, []),
             "available": sum(entry["available"] for entry in per_sku.get(p.sku, []))}
            for p in products]


def stock_levels(engine: Engine, sku: str) -> dict[str, dict[str, int]]:
    """``{warehouse: {on_hand, reserved, available}}`` of one SKU."""
    with Session(engine) as session:
        stocks = session.exec(select(Stock).where(Stock.sku == sku)).all()
    return {stock.warehouse: {k: v for k, v in _stock_entry(stock).items() if k != "warehouse"}
            for stock in stocks}
