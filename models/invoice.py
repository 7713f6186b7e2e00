"""Invoice amounts as printed, and the figures of its EN 16931 e-invoice, as pure functions.

``compute_invoice`` gives what the PDF shows: the lines as priced (gross for ``b2c``, net
for ``b2b``), shipping, VAT per rate and totals, by ``models.rules.order_tax`` (so the
invoice total is the order's ``totals.total``).

``einvoice_figures`` turns that into what an EN 16931 (Factur-X / ZUGFeRD, CII) invoice
states: net line amounts, shipping as document-level charges (one per VAT rate, as the
shipping is split across the rates), and the VAT breakdown per category and rate. The
EN 16931 calculation rules hold exactly: per rate, basis = sum of line net amounts + charges
(BR-S-08 and its siblings), totals add up (BR-CO-10 to BR-CO-16), and the basis, VAT and
gross per rate are the printed invoice's. With gross prices the net line amounts are
derived per line and the rounding remainder of a rate goes to its largest line, so the net
amounts add up to the printed net of that rate to the cent.

Pure and sandbox-safe; money is ``Decimal`` rounded to cents half up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from models.orders import SHIPPING_SKU, OrderView
from models.rules import line_total, order_tax, round_money
from models.tax import TaxAmount, TaxConfig, split_shipping

__all__ = [
    "EinvoiceCharge",
    "EinvoiceFigures",
    "EinvoiceLine",
    "EinvoiceTax",
    "Invoice",
    "InvoiceLine",
    "category_of",
    "compute_invoice",
    "einvoice_figures",
]

HUNDRED = Decimal(100)
ROUNDING_REASON = "Rundungsausgleich"
PRICE_PLACES = Decimal("0.0001")

# UNCL5305 VAT category codes and, for the 0 % treatments, the VATEX exemption codes.
CATEGORY_BY_TREATMENT = {"export": "G", "reverse_charge": "K"}
EXEMPTION_CODES = {"G": "VATEX-EU-G", "K": "VATEX-EU-IC"}


@dataclass(frozen=True)
class InvoiceLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    tax_rate: Decimal  # the rate applied (the destination's under OSS, 0 % for 0 % treatments)
    total: Decimal


@dataclass(frozen=True)
class Invoice:
    prices_gross: bool  # b2c: prices include VAT; b2b: VAT is added on top
    lines: list[InvoiceLine]
    shipping: Decimal
    shipping_rates: list[Decimal]  # shipping is taxed like the goods: these rates, pro rata
    shipping_parts: dict[Decimal, Decimal]  # the shipping price per rate (as priced)
    taxes: list[TaxAmount]
    net: Decimal
    tax: Decimal
    gross: Decimal
    treatment: str  # domestic, oss, reverse_charge, export
    note: str  # the legal note for 0 % treatments ("" for none)


def compute_invoice(order: OrderView, tax: TaxConfig | None = None, *,
                    earlier: Sequence[OrderView] = ()) -> Invoice:
    """Line totals, VAT per rate and totals of ``order`` as the invoice prints them.

    With ``earlier`` (the partial invoices already issued for some of the order's shipments,
    their lines without shipping), ``order`` is the whole order and the result is its final
    invoice: the lines not invoiced yet, the whole shipping (split across the rates by the
    whole order's goods), and per rate exactly what the order owes minus what the partial
    invoices charged, so that all invoices together add up to the order to the cent."""
    prices_gross = order.customer.type == "b2c"
    shipping = round_money(order.totals.shipping)
    country = order.shipping_address.country
    result = order_tax(order.lines, shipping, customer=order.customer, country=country,
                       tax=tax)
    decision = result.decision
    remaining = Counter[str]()
    for line in order.lines:
        remaining[line.sku] += line.quantity
    amounts = result.amounts
    if earlier:
        for partial in earlier:
            for line in partial.lines:
                remaining[line.sku] -= line.quantity
        before = [order_tax(p.lines, Decimal(0), customer=order.customer, country=country,
                            tax=tax).amounts for p in earlier]
        amounts = [_minus(amount, [a for part in before for a in part if a.rate == amount.rate])
                   for amount in amounts]
    lines = []
    for ln in order.lines:
        quantity = min(ln.quantity, remaining[ln.sku])
        remaining[ln.sku] -= quantity
        if quantity > 0:
            lines.append(InvoiceLine(
                sku=ln.sku, name=ln.name, quantity=quantity, unit_price=ln.unit_price,
                tax_rate=decision.rate(ln.tax_rate),
                total=line_total(ln.model_copy(update={"quantity": quantity}))))
    goods: dict[Decimal, Decimal] = defaultdict(Decimal)
    for ln in order.lines:  # the whole order's goods: the shipping split of its total
        goods[decision.rate(ln.tax_rate)] += line_total(ln)
    parts = {rate: part for rate, part in split_shipping(shipping, goods).items() if part}
    if earlier:  # a rate the partial invoices settled to the cent is not on the final one
        amounts = [a for a in amounts if a.net or a.tax or a.rate in parts
                   or any(ln.tax_rate == a.rate for ln in lines)]
    net = sum((a.net for a in amounts), Decimal("0.00"))
    vat = sum((a.tax for a in amounts), Decimal("0.00"))
    return Invoice(prices_gross=prices_gross, lines=lines, shipping=shipping,
                   shipping_rates=[a.rate for a in amounts if a.gross or not earlier],
                   shipping_parts=parts, taxes=amounts, net=net, tax=vat, gross=net + vat,
                   treatment=decision.treatment, note=decision.note)


def _minus(amount: TaxAmount, earlier: list[TaxAmount]) -> TaxAmount:
    net = amount.net - sum((a.net for a in earlier), Decimal(0))
    vat = amount.tax - sum((a.tax for a in earlier), Decimal(0))
    return TaxAmount(rate=amount.rate, net=net, tax=vat, gross=net + vat)


# --- EN 16931 figures ------------------------------------------------------------------


@dataclass(frozen=True)
class EinvoiceLine:
    sku: str
    name: str
    quantity: int
    net_price: Decimal  # up to 4 places (net amount / quantity with gross prices)
    net_amount: Decimal
    category: str
    rate: Decimal


@dataclass(frozen=True)
class EinvoiceCharge:
    reason: str
    amount: Decimal  # net
    category: str
    rate: Decimal


@dataclass(frozen=True)
class EinvoiceTax:
    category: str
    rate: Decimal
    basis: Decimal
    tax: Decimal
    exemption_reason: str = ""
    exemption_code: str = ""


@dataclass(frozen=True)
class EinvoiceFigures:
    lines: list[EinvoiceLine]
    charges: list[EinvoiceCharge]
    taxes: list[EinvoiceTax]

    @property
    def line_total(self) -> Decimal:
        return sum((ln.net_amount for ln in self.lines), Decimal("0.00"))

    @property
    def charge_total(self) -> Decimal:
        return sum((c.amount for c in self.charges if c.amount > 0), Decimal("0.00"))

    @property
    def allowance_total(self) -> Decimal:
        """Charges below zero are allowances (a final invoice's rounding remainder)."""
        return sum((-c.amount for c in self.charges if c.amount < 0), Decimal("0.00"))

    @property
    def basis_total(self) -> Decimal:
        return self.line_total + self.charge_total - self.allowance_total

    @property
    def tax_total(self) -> Decimal:
        return sum((t.tax for t in self.taxes), Decimal("0.00"))

    @property
    def grand_total(self) -> Decimal:
        return self.basis_total + self.tax_total


def category_of(treatment: str, rate: Decimal) -> str:
    """UNCL5305: G export, K intra-community supply, Z zero rated, S standard."""
    if treatment in CATEGORY_BY_TREATMENT:
        return CATEGORY_BY_TREATMENT[treatment]
    return "Z" if rate == 0 else "S"


def _net(amount: Decimal, rate: Decimal, prices_gross: bool) -> Decimal:
    if not prices_gross or rate == 0:
        return amount
    return round_money(amount * HUNDRED / (HUNDRED + rate))


def _spread(remainder: Decimal, nets: dict[int, Decimal], at_rate: list[int]) -> Decimal:
    """Put a rate's rounding remainder on its lines, the largest first: all of it on the
    largest line if that keeps it at zero or more (BR-27: no negative net price), else a
    cent at a time over the lines; returns what is left (lines all at zero)."""
    if not remainder or not at_rate:
        return remainder
    largest = max(at_rate, key=lambda i: nets[i])
    if nets[largest] + remainder >= 0:
        nets[largest] += remainder
        return Decimal(0)
    cent = Decimal("0.01")
    for i in sorted(at_rate, key=lambda i: nets[i], reverse=True):
        while remainder < 0 and nets[i] >= cent:
            nets[i] -= cent
            remainder += cent
    return remainder


def einvoice_figures(invoice: Invoice, *, shipping_reason: str = "Versandkosten"
                     ) -> EinvoiceFigures:
    """The EN 16931 view of ``invoice`` (see the module docstring); lines keep their order."""
    nets: dict[int, Decimal] = {}
    categories: dict[Decimal, str] = {}
    charges: list[EinvoiceCharge] = []
    taxes: list[EinvoiceTax] = []
    for amount in invoice.taxes:  # one per applied rate
        rate = amount.rate
        category = categories[rate] = category_of(invoice.treatment, rate)
        at_rate = [i for i, ln in enumerate(invoice.lines) if ln.tax_rate == rate]
        for i in at_rate:
            nets[i] = _net(invoice.lines[i].total, rate, invoice.prices_gross)
        shipping = invoice.shipping_parts.get(rate, Decimal(0))
        charge = _net(shipping, rate, invoice.prices_gross)
        remainder = amount.net - sum((nets[i] for i in at_rate), Decimal(0)) - charge
        remainder = _spread(remainder, nets, at_rate)
        if remainder and shipping:
            charge += remainder
        elif remainder:  # e.g. a final invoice's remainder at a rate it has nothing else at
            charges.append(EinvoiceCharge(reason=ROUNDING_REASON, amount=remainder,
                                          category=category, rate=rate))
        if shipping:
            charges.append(EinvoiceCharge(reason=shipping_reason, amount=charge,
                                          category=category, rate=rate))
        code = EXEMPTION_CODES.get(category, "")
        taxes.append(EinvoiceTax(category=category, rate=rate, basis=amount.net,
                                 tax=amount.tax, exemption_reason=invoice.note if code else "",
                                 exemption_code=code))
    lines = []
    for i, line in enumerate(invoice.lines):
        net = nets[i]
        price = line.unit_price
        if invoice.prices_gross and line.tax_rate != 0:
            price = (net / line.quantity).quantize(PRICE_PLACES, ROUND_HALF_UP)
        lines.append(EinvoiceLine(sku=line.sku, name=line.name, quantity=line.quantity,
                                  net_price=price, net_amount=net,
                                  category=categories[line.tax_rate], rate=line.tax_rate))
    if not lines:  # only shipping left (split orders): CII needs an item, so it is one
        lines = [EinvoiceLine(sku=SHIPPING_SKU, name=c.reason, quantity=1, net_price=c.amount,
                              net_amount=c.amount, category=c.category, rate=c.rate)
                 for c in charges]
        charges = []
    return EinvoiceFigures(lines=lines, charges=charges, taxes=taxes)
