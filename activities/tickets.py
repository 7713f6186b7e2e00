"""Tickets: the manual queue (holds, backorders, escalations, payment questions).

A ticket is keyed by ``(order_id, key)``: a retried activity finds the ticket it opened.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar
from temporalio import activity

from activities.db import get_or_create, session_for
from models.activities import OpenTicketInput, ResolveTicketInput
from models.orders import TicketView
from models.tables import Ticket, utcnow

__all__ = ["TicketActivities", "list_tickets"]


class TicketActivities:
    """Open and resolve tickets (sync: the worker runs them in its thread pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn
    def open_ticket(self, input: OpenTicketInput) -> TicketView:
        """Open the ticket ``(order_id, key)``; a retry returns the one already open."""
        with session_for(self.engine) as session:
            ticket, _ = get_or_create(
                session, _ticket_query(input.order_id, input.key),
                lambda: Ticket(order_id=input.order_id, key=input.key, kind=input.kind,
                               title=input.title, body=input.body))
            session.commit()
            return _ticket_view(ticket)

    @activity.defn
    def resolve_ticket(self, input: ResolveTicketInput) -> TicketView | None:
        """Mark the ticket resolved (once); ``None`` when there is no such ticket."""
        with session_for(self.engine) as session:
            query = _ticket_query(input.order_id, input.key).with_for_update()
            ticket = session.exec(query).first()
            if ticket is None:
                return None
            if ticket.status != "resolved":
                ticket.status = "resolved"
                ticket.resolved_by = input.by
                ticket.resolution = input.note
                ticket.resolved_at = utcnow()
                session.add(ticket)
                session.commit()
            return _ticket_view(ticket)


def _ticket_query(order_id: str | None, key: str) -> SelectOfScalar[Ticket]:
    owner = (col(Ticket.order_id).is_(None) if order_id is None
             else col(Ticket.order_id) == order_id)
    return select(Ticket).where(owner, Ticket.key == key)


def _ticket_view(ticket: Ticket) -> TicketView:
    assert ticket.id is not None
    return TicketView(ticket_id=ticket.id, kind=ticket.kind, title=ticket.title,
                      status=ticket.status)


# --- read side for the API ---------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 with zone; SQLite hands back naive datetimes, which we store in UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def list_tickets(engine: Engine, *, status: str | None = None) -> list[dict[str, Any]]:
    """Tickets, oldest first; ``status`` ``open`` or ``resolved``, empty or None for all."""
    query = select(Ticket).order_by(col(Ticket.created_at), col(Ticket.id))
    if status:
        query = query.where(Ticket.status == status)
    with session_for(engine) as session:
        return [{"id": t.id, "order_id": t.order_id, "key": t.key, "kind": t.kind,
                 "title": t.title, "body": t.body, "status": t.status,
                 "created_at": _iso(t.created_at), "resolved_at": _iso(t.resolved_at),
                 "resolved_by": t.resolved_by, "resolution": t.resolution}
                for t in session.exec(query)]
