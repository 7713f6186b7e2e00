"""Inputs of the order workflow: the order plus the policy in force when it started."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from models.orders import OrderIn

__all__ = ["OrderPolicy", "OrderWorkflowInput"]


class OrderPolicy(BaseModel):
    """Durations and templates the workflow needs; taken from Settings at submit time so that
    a running order keeps the policy it started with."""

    payment_reminder_after: timedelta = timedelta(days=3)
    cancel_unpaid_after: timedelta = timedelta(days=14)
    ship_confirmation_timeout: timedelta = timedelta(days=2)
    review_request_after: timedelta = timedelta(days=7)
    tracking_url: str = "https://tracking.example.com/{carrier}/{tracking_number}"
    activity_timeout: timedelta = timedelta(seconds=60)


class OrderWorkflowInput(BaseModel):
    order: OrderIn
    policy: OrderPolicy = OrderPolicy()
