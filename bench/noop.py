"""A no-op workflow with the same shape as an order: the baseline the benchmark compares to.

Same number of activities (13), signals (2) and timers (3) as a prepaid order's lifecycle,
but every activity returns at once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

ACTIVITIES_PER_ORDER = 13  # record, check, reserve, 4 mails, allocate, carrier,
#                            2 documents, hand-off, invoice
NOOP_TASK_QUEUE = "bench-noop"


@activity.defn
async def noop_step(step: int) -> int:
    return step


@workflow.defn
class NoopOrderWorkflow:
    def __init__(self) -> None:
        self.paid = False
        self.shipped = False

    @workflow.run
    async def run(self, timer_seconds: float) -> int:
        timeout = timedelta(seconds=30)
        done = 0
        for step in range(4):  # record, check, reserve, confirmation mail
            done += await workflow.execute_activity(noop_step, step, start_to_close_timeout=timeout)
        await workflow.wait_condition(lambda: self.paid, timeout=timedelta(hours=1))  # timer 1
        for step in range(4, 9):  # allocate, carrier, delivery note, xml, hand-off
            done += await workflow.execute_activity(noop_step, step, start_to_close_timeout=timeout)
        await workflow.wait_condition(lambda: self.shipped, timeout=timedelta(hours=1))  # timer 2
        for step in range(9, 12):  # shipping mail, invoice, invoice mail
            done += await workflow.execute_activity(noop_step, step, start_to_close_timeout=timeout)
        await workflow.sleep(timedelta(seconds=timer_seconds))  # timer 3
        done += await workflow.execute_activity(noop_step, 12, start_to_close_timeout=timeout)
        return done

    @workflow.signal
    def pay(self) -> None:
        self.paid = True

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.query
    def ready_to_ship(self) -> bool:
        return self.paid
