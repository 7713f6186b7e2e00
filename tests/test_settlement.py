"""Marketplace settlements (Amazon flat file V2): parsing, then the import on the real stack:
an order paid at the marketplace is recorded, an order waiting for money gets paid, an
unknown order and a refund become tickets; the same report twice changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
from sqlmodel import Session, col, select

from activities.settlement import SettlementError, parse_settlement
from models.orders import OrderIn, OrderStatus, PaymentStatus
from models.tables import Payment, Ticket
from tests.helpers import Stack, order_payload, ship_and_invoice
from tests.test_bank import stack  # noqa: F401 (the same stack fixture)

STAFF = {"Authorization": "Bearer test-staff"}
HEADER = ("settlement-id\tsettlement-start-date\tsettlement-end-date\tdeposit-date\t"
          "total-amount\tcurrency\ttransaction-type\torder-id\tmerchant-order-id\t"
          "adjustment-id\tshipment-id\tmarketplace-name\tamount-type\tamount-description\t"
          "amount\tfulfillment-id\tposted-date\tposted-date-time\torder-item-code\t"
          "merchant-order-item-id\tmerchant-adjustment-item-id\tsku\tquantity-purchased\t"
          "promotion-id")


def report(settlement_id: str, total: str, rows: list[tuple[str, str, str, str, str]]) -> bytes:
    """``rows``: (transaction-type, order-id, amount-type, amount-description, amount)."""
    lines = [HEADER, "\t".join([settlement_id, "2026-11-11 00:00:00 UTC",
                                "2026-11-25 00:00:00 UTC", "2026-11-27 00:00:00 UTC", total,
                                "EUR"] + [""] * 18)]
    for kind, order_id, amount_type, description, amount in rows:
        lines.append("\t".join([settlement_id, "", "", "", "", "EUR", kind, order_id, "", "",
                                "", "Amazon.de", amount_type, description, amount, "MFN",
                                "2026-11-20", "2026-11-20 10:00:00 UTC", "", "", "", "SKU",
                                "1", ""]))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def test_payout_per_order_fees_and_refunds_apart() -> None:
    data = report("111", "1.234,56", [
        ("Order", "302-1", "ItemPrice", "Principal", "229,00"),
        ("Order", "302-1", "ItemPrice", "Shipping", "4,90"),
        ("Order", "302-1", "ItemFees", "Commission", "-35,09"),
        ("Order", "302-1", "Promotion", "Shipping", "-4,90"),
        ("Refund", "302-2", "ItemPrice", "Principal", "-19,95"),
        ("other-transaction", "", "other-transaction", "Subscription Fee", "-39,00"),
    ])

    settlement = parse_settlement(data, max_bytes=100_000)

    assert (settlement.settlement_id, settlement.total, settlement.currency) == (
        "111", Decimal("1234.56"), "EUR")
    first, second = settlement.orders
    assert (first.order_id, first.paid, first.fees, first.refunded) == (
        "302-1", Decimal("229.00"), Decimal("-35.09"), Decimal("0"))
    assert (second.order_id, second.refunded) == ("302-2", Decimal("-19.95"))
    assert settlement.other == Decimal("-39.00")


def test_a_cell_starting_with_a_quote_is_text_not_a_quoted_field() -> None:
    data = report("1", "2.00", [
        ("Order", "302-1", "ItemPrice", '"Geschenk', "1.00"),
        ("Order", "302-2", "ItemPrice", "Principal", "1.00"),
    ])
    assert [(o.order_id, o.paid) for o in parse_settlement(data, max_bytes=1_000_000).orders] \
        == [("302-1", Decimal("1.00")), ("302-2", Decimal("1.00"))]


@pytest.mark.parametrize(("data", "reason"), [
    (b"order-id,amount\n1,2\n", "missing columns"),
    (report("1", "10.00", [("Order", "302-9", "ItemPrice", "Principal", "zehn")]),
     "line 3: not an amount"),
    (HEADER.encode() + b"\n", "summary row"),
    (report("1", "10.00", [("Order", "302-9", "ItemPrice", "Principal", "NaN")]),
     "line 3: not an amount"),
    (report("1", "10.00", [("Order", "302-9", "ItemPrice", "Principal", "1e3")]),
     "line 3: not an amount"),
    (report("1", "10.00", []) + "\t".join(["1", "", "", "", "", "EUR", "", "302-9"]).encode()
     + b"\r\n", "line 3: order 302-9 without a transaction-type"),
    (report("1", "10.00", [("Order", "302-9", "ItemPrice", "Principal", "1.005")]),
     "line 3: '1.005' has more than two decimals"),
    (report("1", "10.00", []).replace(b"\tEUR\t", b"\t\t", 1), "currency '' is not an ISO"),
    (report("1", "10.00", [("Order", "302-9", "ItemPrice", "x" * 200_000, "1.00")]),
     "line 3: field larger than field limit"),
])
def test_bad_reports_are_rejected_naming_the_line(data: bytes, reason: str) -> None:
    with pytest.raises(SettlementError, match=reason):
        parse_settlement(data, max_bytes=1_000_000)



def amazon_order(method: str) -> OrderIn:
    external = f"302-{uuid.uuid4().int % 10**7:07d}-{uuid.uuid4().int % 10**7:07d}"
    return OrderIn.model_validate({**order_payload(method=method), "channel": "amazon",
                                   "external_id": external})


async def test_settlement_is_matched_by_the_marketplace_order_id(
        api: httpx.AsyncClient, stack: Stack) -> None:  # noqa: F811
    collected, waiting = amazon_order("paid"), amazon_order("invoice")
    await stack.submit(collected)
    await ship_and_invoice(stack, waiting)
    await stack.wait_status(collected.order_id, OrderStatus.HANDED_OFF, OrderStatus.SHIPPED,
                            OrderStatus.INVOICED, query=False)
    data = report(f"S{uuid.uuid4().hex[:8]}", "400.00", [
        ("Order", collected.external_id, "ItemPrice", "Principal", "229.00"),
        ("Order", collected.external_id, "ItemPrice", "Shipping", "4.90"),
        ("Order", collected.external_id, "ItemFees", "Commission", "-35.09"),
        ("Order", waiting.external_id, "ItemPrice", "Principal", "233.90"),
        ("Order", "302-0000000-0000000", "ItemPrice", "Principal", "10.00"),
        ("Refund", collected.external_id, "ItemPrice", "Principal", "-20.00"),
    ])

    answer = await api.post("/payments/settlements?wait=true", headers=STAFF, content=data)

    assert answer.status_code == 200, answer.text
    summary = answer.json()["summary"]
    assert (summary["orders"], summary["recorded"], summary["signalled"], summary["tickets"]) \
        == (3, 1, 1, 2)
    assert Decimal(summary["fees"]) == Decimal("-35.09")
    for _ in range(100):
        if (await stack.view(waiting.order_id)).payment_status == PaymentStatus.PAID:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the order waiting for money was not paid")
    with Session(stack.engine) as session:
        recorded = session.exec(select(Payment).where(
            col(Payment.order_id).in_([collected.order_id, waiting.order_id]))).all()
        tickets = session.exec(select(Ticket).where(
            col(Ticket.key).startswith(f"settlement-{answer.json()['sha256'][:16]}"))).all()
    assert sorted((p.order_id, p.amount) for p in recorded) == sorted([
        (collected.order_id, Decimal("233.90")), (waiting.order_id, Decimal("233.90"))])
    assert sorted(t.kind for t in tickets) == ["payment", "refund"]
    assert any("302-0000000-0000000" in t.title for t in tickets)

    again = await api.post("/payments/settlements?wait=true", headers=STAFF, content=data)
    assert again.json()["already_imported"] is True
    other_bytes = data.replace(b"\r\n", b"\n")  # the same report, saved with other line ends
    resent = await api.post("/payments/settlements?wait=true", headers=STAFF,
                            content=other_bytes)
    assert resent.status_code == 200 and resent.json()["already_imported"] is False
    await asyncio.sleep(0.5)
    with Session(stack.engine) as session:
        after = session.exec(select(Payment).where(
            col(Payment.order_id).in_([collected.order_id, waiting.order_id]))).all()
    assert len(after) == len(recorded)  # nothing paid twice
    assert (await stack.view(waiting.order_id)).totals.paid == Decimal("233.90")
    bad = await api.post("/payments/settlements", headers=STAFF, content=b"a;b\n1;2\n")
    assert bad.status_code == 422 and "missing columns" in bad.json()["detail"]["reason"]
