"""PDF cost per document: the real activities (render + store) on a scratch SQLite database."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from activities.db import make_engine, migrate
from activities.documents import DocumentActivities
from models.activities import DocumentInput
from models.orders import OrderStatus, OrderView, PaymentStatus, ShipmentView
from models.rules import compute_totals
from settings import Settings
from tests.helpers import make_order


def _view(index: int) -> OrderView:
    order = make_order(external_id=f"pdf-{index}-{time.time_ns()}",
                       lines=[("TENT-2P", 1, "229.00"), ("STOVE-1", 2, "39.90")], total=None)
    return OrderView(
        order_id=order.order_id, channel=order.channel, external_id=order.external_id,
        status=OrderStatus.SHIPPED, payment_method="paid", payment_status=PaymentStatus.PAID,
        currency=order.currency, customer=order.customer, billing_address=order.billing_address,
        shipping_address=order.delivery_address, lines=order.lines,
        totals=compute_totals(order))


def measure_pdf_ms(settings: Settings, *, samples: int = 20) -> dict[str, float]:
    """Mean milliseconds per delivery note, per Factur-X invoice (PDF/A-3b + CII XML,
    XSD-checked) and per plain PDF invoice, after one warm-up round."""
    with tempfile.TemporaryDirectory(prefix="orders-pdf-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'pdf.db'}"
        migrate(url)
        engine = make_engine(url)
        docs = DocumentActivities(engine, settings.model_copy(update={"einvoice": True}))
        plain = DocumentActivities(engine, settings.model_copy(update={"einvoice": False}))
        timings: dict[str, list[float]] = {"delivery note": [], "invoice Factur-X": [],
                                           "invoice plain PDF": []}
        for i in range(samples + 1):
            view, other = _view(2 * i), _view(2 * i + 1)
            shipment = ShipmentView(shipment_id=f"{view.order_id}-1", warehouse="MAIN")
            t0 = time.perf_counter()
            docs.create_delivery_note(DocumentInput(order=view, shipment=shipment))
            t1 = time.perf_counter()
            docs.issue_invoice(DocumentInput(order=view))
            t2 = time.perf_counter()
            plain.issue_invoice(DocumentInput(order=other))
            t3 = time.perf_counter()
            if i:  # the first round warms up fonts and templates
                timings["delivery note"].append(t1 - t0)
                timings["invoice Factur-X"].append(t2 - t1)
                timings["invoice plain PDF"].append(t3 - t2)
        engine.dispose()
    return {kind: 1000 * sum(v) / len(v) for kind, v in timings.items()}


def report_pdf(pdf: dict[str, float]) -> None:
    for kind, ms in pdf.items():
        print(f"PDF ms / {kind:<20} {ms:8.1f}   ({1000 / ms:5.1f} documents/s, one thread)")
    ratio = pdf["invoice Factur-X"] / pdf["invoice plain PDF"]
    print(f"Factur-X / plain invoice      {ratio:8.2f}")
