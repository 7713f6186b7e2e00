"""Fulfilment: an order's shipments from allocation to the last shipping confirmation.

``Fulfilment`` sits between ``OrderSteps`` (state and single steps) and ``OrderWorkflow``
(the lifecycle, holds, signals). It turns reservations into shipments, one per warehouse
(or per dropship supplier), hands each to its partner, and waits for each one's
confirmation with its own timer; lines that were backordered follow in later rounds when
the stock sync signals ``stock_arrived``. Holds and cancels come from ``OrderWorkflow``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.documents import DocumentActivities
    from activities.handoff_http import PARTNER_REJECTED
    from activities.mail import MailActivities
    from activities.partners import PARTNER_UNKNOWN, PartnerActivities
    from activities.reservations import DROPSHIP_PREFIX
    from activities.shipping import ShippingActivities
    from activities.store import StoreActivities
    from activities.tickets import TicketActivities
    from models.activities import (
        AllocateShipmentInput,
        CarrierChoice,
        ChooseCarrierInput,
        DocumentInput,
        HandOffInput,
        OpenTicketInput,
        ReservationState,
        ResolveTicketInput,
        SendMailInput,
    )
    from models.carriers import ShipmentNeeds
    from models.orders import (
        CancelInput,
        HoldInput,
        HoldReason,
        HoldView,
        OrderStatus,
        ReleaseInput,
        ShipmentConfirmation,
        ShipmentView,
        shipment_lines,
    )
    from models.workflow_io import format_duration
    from workflows.steps import _CARRIER, _ESCALATED, _TRACKING, OrderSteps

__all__ = ["Fulfilment"]


class Fulfilment(OrderSteps):
    # Set by OrderWorkflow: its signals and its hold / cancel handling.
    _release: ReleaseInput | None
    _hold: HoldInput | None
    _cancel: CancelInput | None
    _confirmations: list[ShipmentConfirmation]
    _stock_arrived: bool
    _reservation: ReservationState
    _round: int
    _overdue: list[str]
    _deadlines: dict[str, asyncio.Task[None]]

    async def _checkpoint(self, *, cancellable: bool = True) -> None:
        raise NotImplementedError  # OrderWorkflow

    async def _hold_until_released(self, holds: list[HoldView], *, kind: str,
                                   status: OrderStatus = OrderStatus.ON_HOLD,
                                   cancellable: bool = True) -> None:
        raise NotImplementedError  # OrderWorkflow

    # --- the loop --------------------------------------------------------------------

    async def _fulfil(self) -> None:
        """Ship every line: allocate what is reserved into shipments (one per warehouse),
        hand each off, and wait for each one's confirmation with its own timeout; lines that
        were backordered follow in later rounds when the stock sync wakes the order."""
        while True:
            await self._checkpoint(cancellable=not self._handed_off_any())
            state = self._reservation
            if state.pending and (state.partial_delivery or not state.backordered):
                await self._ship_round()
                continue
            await self._apply_confirmations()
            await self._escalate_due()
            unshipped = [s for s in self.view.shipments if s.status != "shipped"]
            if not unshipped and not state.backordered and not state.pending:
                return
            self._show_fulfilment()
            await workflow.wait_condition(
                lambda: bool(self._confirmations) or bool(self._overdue) or self._stock_arrived
                or self._release is not None or self._hold is not None
                or (not self._handed_off_any() and self._cancel is not None))
            if self._stock_arrived or self._release is not None:
                release, self._release, self._stock_arrived = self._release, None, False
                if release is not None:
                    note = f": {release.note}" if release.note else ""
                    self.event("released", f"backorder released by {release.by}{note}")
                self._reservation = await self.refresh_reservation(fill=release is not None)

    async def _ship_round(self) -> None:
        shipments = await self.allocate(self._round)
        self._reservation = self._reservation.model_copy(update={"pending": []})
        if not shipments:
            return
        self._round += 1
        for shipment in shipments:
            if shipment.warehouse.startswith(DROPSHIP_PREFIX):
                self.event("carrier", f"{shipment.shipment_id} ships from the supplier "
                                      f"{shipment.partner}, who chooses the carrier")
            else:
                await self._choose_carrier(shipment)
            await self._checkpoint(cancellable=not self._handed_off_any())
            await self._hand_off(shipment)
            self._deadlines[shipment.shipment_id] = asyncio.create_task(
                self._confirmation_deadline(shipment))
            self._update_shipping_status()

    def _confirmation_timeout(self, shipment: ShipmentView) -> timedelta:
        """The partner's SLA (a dropship supplier's), else the policy's timeout."""
        return self.policy.route(shipment.partner).sla or self.policy.ship_confirmation_timeout

    async def _confirmation_deadline(self, shipment: ShipmentView) -> None:
        await workflow.sleep(self._confirmation_timeout(shipment),
                             summary=f"shipping confirmation of {shipment.shipment_id} due")
        self._overdue.append(shipment.shipment_id)

    async def _choose_carrier(self, shipment: ShipmentView) -> None:
        while True:
            choice = await self.choose_carrier(shipment)
            if choice.decision.chosen is not None:
                return
            await self._hold_until_released(
                [HoldView(reason=HoldReason.NO_CARRIER,
                          detail=f"{shipment.shipment_id}: {choice.explanation}")],
                kind="no-carrier",
                cancellable=not self._handed_off_any())

    async def _hand_off(self, shipment: ShipmentView) -> None:
        while True:
            try:
                await self.hand_off(shipment)
                return
            except ActivityError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError)
                        and cause.type in (PARTNER_REJECTED, PARTNER_UNKNOWN)):
                    raise
                await self._hold_until_released(
                    [HoldView(reason=HoldReason.HANDOFF_REJECTED,
                              detail=f"{shipment.shipment_id}: {cause.message}")],
                    kind="handoff",
                    cancellable=not self._handed_off_any())

    async def _apply_confirmations(self) -> None:
        """Match each received confirmation to its shipment and tell the customer; one that
        fits no shipment yet waits while backordered lines may still make one."""
        waiting: list[ShipmentConfirmation] = []
        while self._confirmations:
            confirmation = self._confirmations.pop(0)
            shipment = self._shipment_for(confirmation)
            if shipment is None:
                if self._reservation.backordered or self._reservation.pending:
                    waiting.append(confirmation)
                else:
                    self.event("signal", f"shipping confirmation {confirmation.tracking_number}"
                                         " ignored: it matches no open shipment")
                continue
            deadline = self._deadlines.pop(shipment.shipment_id, None)
            if deadline is not None and not deadline.done():
                deadline.cancel()
            await self.notify_shipped(shipment, confirmation)
            if shipment.escalated:
                await self.resolve_escalation(shipment, confirmation)
            self._update_shipping_status()
            if self.policy.invoice_per_shipment and not self._all_shipped() \
                    and not self.collective():
                self._show_fulfilment()
                await self.invoice_shipment(shipment)
        self._confirmations = waiting

    def _shipment_for(self, confirmation: ShipmentConfirmation) -> ShipmentView | None:
        open_ = [s for s in self.view.shipments if s.status != "shipped"]
        if confirmation.shipment_id:
            return next((s for s in open_ if s.shipment_id == confirmation.shipment_id), None)
        handed = [s for s in open_ if s.status == "handed_off"]
        same_carrier = [s for s in handed if s.carrier == confirmation.carrier]
        return (same_carrier or handed or open_ or [None])[0]

    async def _escalate_due(self) -> None:
        overdue, self._overdue = self._overdue, []
        for shipment in self.view.shipments:
            if (shipment.shipment_id in overdue and shipment.status == "handed_off"
                    and not shipment.escalated):
                await self.escalate(shipment, self._confirmation_timeout(shipment))

    def _handed_off_any(self) -> bool:
        return any(s.status in ("handed_off", "shipped") for s in self.view.shipments)

    def _all_shipped(self) -> bool:
        """Every shipment confirmed and no line left to ship."""
        shipments = self.view.shipments
        complete = not self._reservation.backordered and not self._reservation.pending
        return bool(shipments) and all(s.status == "shipped" for s in shipments) and complete

    def _update_shipping_status(self) -> None:
        shipped = [s for s in self.view.shipments if s.status == "shipped"]
        if self._all_shipped():
            self.set_status(OrderStatus.SHIPPED)
        elif shipped:
            self.set_status(OrderStatus.PARTIALLY_SHIPPED)
        elif self._handed_off_any():
            self.set_status(OrderStatus.HANDED_OFF)

    def _show_fulfilment(self) -> None:
        """Status and details line while the order waits for confirmations or stock: every
        shipment with its state, then what is still backordered."""
        state = self._reservation
        parts = [self._shipment_text(s) for s in self.view.shipments]
        if state.backordered:
            parts.append("waiting for stock of " + ", ".join(
                f"{b.sku} x{b.quantity}" + (f" (expected {b.expected_at:%Y-%m-%d})"
                                            if b.expected_at else "")
                for b in state.backordered))
        if not self._handed_off_any() and state.backordered:
            detail = ", ".join(f"{b.sku} x{b.quantity}" for b in state.backordered)
            if not self.view.hold_reasons:
                self.view.hold_reasons = [HoldView(reason=HoldReason.OUT_OF_STOCK,
                                                   detail=f"backordered: {detail}")]
                self.set_hold_attribute(HoldReason.OUT_OF_STOCK.value)
            self.set_status(OrderStatus.BACKORDERED)
        elif self.view.hold_reasons and self.view.status == OrderStatus.BACKORDERED:
            self.view.hold_reasons = []
            self.set_hold_attribute(None)
        self._update_shipping_status()
        self.wait_for("; ".join(parts))

    @staticmethod
    def _shipment_text(shipment: ShipmentView) -> str:
        where = shipment.partner if shipment.warehouse.startswith(DROPSHIP_PREFIX) \
            else shipment.warehouse
        if shipment.status == "shipped":
            return (f"{shipment.shipment_id} ({where}): shipped with {shipment.carrier} "
                    f"{shipment.tracking_number}")
        if shipment.status == "handed_off":
            since = (f" since {shipment.handed_off_at:%Y-%m-%d %H:%M} UTC"
                     if shipment.handed_off_at else "")
            escalated = ", escalated" if shipment.escalated else ""
            return (f"{shipment.shipment_id} ({where}): waiting for the shipping "
                    f"confirmation{since}{escalated}")
        return f"{shipment.shipment_id} ({where}): {shipment.status}"

    # --- the shipment steps -------------------------------------------------------------

    async def allocate(self, round_: int) -> list[ShipmentView]:
        if not any(s.status != "allocated" for s in self.view.shipments):
            self.set_status(OrderStatus.ALLOCATING)
        self.wait_for("allocating the shipments")
        shipments: list[ShipmentView] = await self._activity(
            StoreActivities.allocate_shipments,
            AllocateShipmentInput(order_id=self.order_id, round=round_),
            "turn the reservations into shipments (one per warehouse)")
        known = {s.shipment_id for s in self.view.shipments}
        self.view.shipments += [s for s in shipments if s.shipment_id not in known]
        for shipment in shipments:
            items = ", ".join(f"{line.sku} x{line.quantity}" for line in shipment.lines)
            self.event("allocated", f"shipment {shipment.shipment_id} from {shipment.warehouse}:"
                                    f" {items}")
        return [s for s in self.view.shipments if s.shipment_id in
                {shipment.shipment_id for shipment in shipments}]

    async def choose_carrier(self, shipment: ShipmentView) -> CarrierChoice:
        self.wait_for(f"choosing a carrier for {shipment.shipment_id}")
        order = self.order
        choice: CarrierChoice = await self._activity(
            ShippingActivities.choose_carrier,
            ChooseCarrierInput(order_id=self.order_id, shipment_id=shipment.shipment_id,
                               needs=ShipmentNeeds(country=order.delivery_address.country,
                                                   express=order.shipping.method == "express",
                                                   cod=order.payment.method == "cod")),
            "choose the carrier (service, country, weight, size, price)")
        chosen, parcel = choice.decision.chosen, choice.parcel
        size = f"{parcel.weight_g} g, {parcel.length_mm}x{parcel.width_mm}x{parcel.height_mm} mm"
        if chosen is None:
            self.event("carrier", f"no carrier fits {shipment.shipment_id} ({size}):"
                                  f"\n{choice.explanation}")
            return choice
        shipment.carrier = chosen.carrier
        if choice.tracking_url:
            self._tracking_templates[shipment.shipment_id] = choice.tracking_url
        workflow.upsert_search_attributes([_CARRIER.value_set(chosen.carrier)])
        self.event("carrier", f"carrier {chosen.carrier} for {shipment.shipment_id} ({size}):"
                              f"\n{choice.explanation}")
        return choice

    async def hand_off(self, shipment: ShipmentView) -> None:
        self.wait_for(f"handing off {shipment.shipment_id} to the fulfillment partner")
        doc_input = DocumentInput(order=self.view, shipment=shipment)
        route = self.policy.route(shipment.partner)
        note = await self._activity(DocumentActivities.create_delivery_note, doc_input,
                                    "render the delivery note (PDF)")
        if route.format == "csv":
            xml = await self._activity(DocumentActivities.create_order_csv, doc_input,
                                       "build the shipment CSV")
        else:
            xml = await self._activity(DocumentActivities.create_order_xml, doc_input,
                                       "build the openTRANS ORDER XML")
        known = {d.document_id for d in self.view.documents}
        self.view.documents += [d for d in (note, xml) if d.document_id not in known]
        if route.channel == "email":
            attach = [note.document_id] + ([xml.document_id] if route.format == "opentrans"
                                           else [])
            partner, files = await self._mail_partner(route.email, shipment, attach)
        else:
            result = await self._activity(
                PartnerActivities.hand_off,
                HandOffInput(order_id=self.order_id, shipment_id=shipment.shipment_id,
                             document_ids=[xml.document_id, note.document_id],
                             order=self.view, partner=route.code),
                f"hand the shipment to {route.code} ({route.channel})")
            partner, files = result.partner, result.files
        shipment.status = "handed_off"
        shipment.handed_off_at = workflow.now()
        shipment.files = files
        self.event("handed_off", f"{shipment.shipment_id} handed off to {partner}: "
                                 f"{', '.join(files)}")

    async def _mail_partner(self, to: str, shipment: ShipmentView,
                            document_ids: list[str]) -> tuple[str, list[str]]:
        """The e-mail channel: the shipment order to the partner's address, once."""
        context = {"handoff": self.view.model_dump(mode="json"),
                   "shipment": shipment.model_dump(mode="json"),
                   "lines": [line.model_dump(mode="json")
                             for line in shipment_lines(self.view, shipment)]}
        result = await self._activity(
            MailActivities.send_mail,
            SendMailInput(order_id=self.order_id, key=f"handoff-{shipment.shipment_id}",
                          to=to, template="partner_handoff", context=context,
                          attachments=document_ids),
            "mail the delivery note and order XML to the partner")
        return to, [f"mailto:{to} ({result.message_id})"]

    async def escalate(self, shipment: ShipmentView, timeout: timedelta) -> None:
        ticket = await self._activity(
            TicketActivities.open_ticket,
            OpenTicketInput(order_id=self.order_id, key=f"escalation-{shipment.shipment_id}",
                            kind="escalation",
                            title=f"Order {self.order_id}: no shipping confirmation for "
                                  f"{shipment.shipment_id}",
                            body=f"Shipment {shipment.shipment_id} ({shipment.warehouse}) handed "
                                 f"off, not confirmed within {format_duration(timeout)}."),
            "open an escalation ticket")
        self._add_ticket(ticket)
        shipment.escalated = True
        self.view.escalated = True
        workflow.upsert_search_attributes([_ESCALATED.value_set(True)])
        self.event("escalated", f"no shipping confirmation for {shipment.shipment_id}; "
                                f"ticket #{ticket.ticket_id}")

    async def resolve_escalation(self, shipment: ShipmentView,
                                 confirmation: ShipmentConfirmation) -> None:
        ticket = await self._activity(
            TicketActivities.resolve_ticket,
            ResolveTicketInput(order_id=self.order_id, key=f"escalation-{shipment.shipment_id}",
                               by="system", note=f"confirmed late: {confirmation.tracking_number}"),
            "resolve the escalation ticket")
        if ticket is not None:
            self._add_ticket(ticket)

    async def notify_shipped(self, shipment: ShipmentView,
                             confirmation: ShipmentConfirmation) -> None:
        shipment.status = "shipped"
        shipment.tracking_number = confirmation.tracking_number
        shipment.shipped_at = confirmation.shipped_at or workflow.now()
        template = self._tracking_templates.get(shipment.shipment_id)
        if confirmation.carrier != shipment.carrier or not template:
            template = self.policy.tracking_url
        shipment.tracking_url = template.format(
            carrier=confirmation.carrier, tracking_number=confirmation.tracking_number)
        shipment.carrier = confirmation.carrier
        workflow.upsert_search_attributes([_CARRIER.value_set(confirmation.carrier),
                                           _TRACKING.value_set(confirmation.tracking_number)])
        self.event("shipped", f"{shipment.shipment_id} shipped with {confirmation.carrier} "
                              f"{confirmation.tracking_number}")
        await self.send_customer_mail(
            f"shipped-{shipment.shipment_id}", "shipping_confirmation",
            extra={"shipment": shipment.model_dump(mode="json"),
                   "lines": [line.model_dump(mode="json")
                             for line in shipment_lines(self.view, shipment)]})
