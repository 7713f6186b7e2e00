"""Hand-off over HTTP: the shipment as JSON, POSTed to the partner with an idempotency key.

The partner gets ``Idempotency-Key: {order_id}/{shipment_id}`` with every attempt, so a
retry after a lost answer cannot create a second shipment on its side. Temporal retries
server errors, timeouts, 408 and 429; any other 4xx is the partner refusing the content,
which no retry fixes: a non-retryable ``ApplicationError(type="PartnerRejected")``.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from models.orders import OrderView, shipment_lines
from models.tables import Document
from settings import Partner

__all__ = ["PARTNER_REJECTED", "deliver_json", "idempotency_key", "shipment_json"]

PARTNER_REJECTED = "PartnerRejected"
HTTP_TIMEOUT = 30.0
_RETRYABLE_4XX = {408, 425, 429}


def idempotency_key(order_id: str, shipment_id: str) -> str:
    return f"{order_id}/{shipment_id}"


def shipment_json(order: OrderView, shipment_id: str,
                  documents: list[Document]) -> dict[str, Any]:
    """What the partner needs to pick, pack and ship: no prices, documents attached."""
    shipment = next((s for s in order.shipments if s.shipment_id == shipment_id), None)
    return {
        "order_id": order.order_id,
        "shipment_id": shipment_id,
        "warehouse": shipment.warehouse if shipment else None,
        "carrier": shipment.carrier if shipment else None,
        "shipping_method": order.shipping_method,
        "placed_at": order.placed_at.isoformat() if order.placed_at else None,
        "customer": {"email": str(order.customer.email), "phone": order.customer.phone},
        "delivery_address": order.shipping_address.model_dump(mode="json"),
        "lines": [{"sku": line.sku, "name": line.name, "quantity": line.quantity}
                  for line in shipment_lines(order, shipment)],
        "comment": order.comment,
        "packer_note": order.packer_note,
        "gift_message": order.gift_message,
        "documents": [{"filename": doc.filename, "media_type": doc.media_type,
                       "sha256": doc.sha256,
                       "content_base64": base64.b64encode(doc.content).decode("ascii")}
                      for doc in documents],
    }


def deliver_json(partner: Partner, body: dict[str, Any], key: str) -> int:
    """POST ``body`` to the partner; returns the HTTP status of the accepted answer."""
    if not partner.url:
        raise ApplicationError(f"partner {partner.code}: channel http needs a url",
                               type="PartnerMisconfigured", non_retryable=True)
    headers = {"Idempotency-Key": key}
    if partner.token:
        headers["Authorization"] = f"Bearer {partner.token}"
    response = httpx.post(partner.url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
    if response.is_success:
        return response.status_code
    detail = f"partner {partner.code} answered {response.status_code}: {response.text[:500]}"
    if 400 <= response.status_code < 500 and response.status_code not in _RETRYABLE_4XX:
        raise ApplicationError(detail, type=PARTNER_REJECTED, non_retryable=True)
    raise RuntimeError(detail)  # 5xx, 408, 429: Temporal tries again
