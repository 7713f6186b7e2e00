"""The CSV variant of the shipping advice: parsed by the same rules as openTRANS."""

from __future__ import annotations

import pytest

from activities.advice_csv import parse_csv_advice
from activities.dispatch import AdviceError


def test_semicolon_and_comma_files_parse() -> None:
    for sep in (";", ","):
        data = (f"order_id{sep}carrier{sep}tracking_number{sep}shipped_at\n"
                f"webshop-1{sep}DHL{sep}JJD1{sep}2026-11-25T10:00:00\n"
                f"webshop-2{sep}DPD{sep}0123{sep}\n"
                f"webshop-1{sep}DHL{sep}JJD9{sep}\n"  # a second parcel of the order
                f"webshop-1{sep}DHL{sep}JJD1{sep}\n").encode()  # another line of parcel 1
        first, second, third = parse_csv_advice(data)
        assert (third.order_id, third.tracking_number) == ("webshop-1", "JJD9")
        assert (first.order_id, first.carrier, first.tracking_number) == ("webshop-1", "DHL",
                                                                         "JJD1")
        assert first.shipped_at is not None and first.shipped_at.tzinfo is not None
        assert (second.order_id, second.shipped_at, second.shipment_id) == ("webshop-2", None,
                                                                           None)


@pytest.mark.parametrize(("data", "message"), [
    (b"order_id;carrier\nwebshop-1;DHL\n", "lacks the column(s) tracking_number"),
    (b"order_id;carrier;tracking_number\n", "no rows"),
    (b"order_id;carrier;tracking_number\n;DHL;X1\n", "line 2: no order_id"),
    (b"order_id;carrier;tracking_number\nwebshop-1;DHL;bad number!\n", "line 2: order"),
    (b"order_id;carrier;tracking_number;shipped_at\nwebshop-1;DHL;X1;gestern\n",
     "line 2: shipped_at"),
    ("order_id;carrier;tracking_number\nw;DHL;X\n".encode("utf-16"), "not UTF-8"),
])
def test_unusable_csv_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(AdviceError) as caught:
        parse_csv_advice(data)
    assert message in str(caught.value)
