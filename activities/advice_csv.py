"""The partner's CSV variant of the shipping advice.

One row per shipped order, UTF-8 (a BOM is fine), separated by ``;`` (or ``,``), with a
header row naming the columns: ``order_id``, ``carrier``, ``tracking_number`` (required),
``shipment_id``, ``shipped_at`` (ISO 8601; optional). Each row is checked by the same rules
as an openTRANS DISPATCHNOTIFICATION; anything unusable raises ``AdviceError`` naming the
line, and the whole file is then moved to the error folder with a ticket.
"""

from __future__ import annotations

import csv
import io

from activities.dispatch import AdviceError, confirmation, parse_datetime
from models.activities import AdviceConfirmation

__all__ = ["CSV_COLUMNS", "parse_csv_advice"]

CSV_COLUMNS = ("order_id", "shipment_id", "carrier", "tracking_number", "shipped_at")
_REQUIRED = ("order_id", "carrier", "tracking_number")


def parse_csv_advice(data: bytes) -> list[AdviceConfirmation]:
    """One confirmation per order (its first row), in file order."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AdviceError(f"not UTF-8 text: {exc}") from None
    delimiter = ";" if text.partition("\n")[0].count(";") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise AdviceError(f"header row lacks the column(s) {', '.join(missing)} "
                          f"(expected {delimiter.join(CSV_COLUMNS)})")
    found: dict[tuple[str, str, str], AdviceConfirmation] = {}  # one per parcel
    for row in reader:
        values = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
        line = reader.line_num
        if not any(values.values()):
            continue
        order_id = values.get("order_id", "")
        if not order_id:
            raise AdviceError(f"line {line}: no order_id")
        key = (order_id, values.get("shipment_id", ""), values.get("tracking_number", ""))
        if key in found:
            continue
        shipped = parse_datetime(values.get("shipped_at"), what=f"line {line}: shipped_at")
        found[key] = confirmation(order_id, values.get("shipment_id") or None,
                                       values.get("carrier", ""),
                                       values.get("tracking_number", ""), shipped,
                                       where=f"line {line}")
    if not found:
        raise AdviceError("no rows after the header")
    return list(found.values())
