"""The benchmark's worker process: the real order worker plus the no-op baseline worker."""

from __future__ import annotations

import asyncio

from temporalio.worker import Worker

from bench.noop import NOOP_TASK_QUEUE, NoopOrderWorkflow, noop_step
from settings import Settings
from worker import build_worker, connect


async def main() -> None:
    settings = Settings()
    client = await connect(settings)
    orders = build_worker(client, settings)
    noop = Worker(client, task_queue=NOOP_TASK_QUEUE, workflows=[NoopOrderWorkflow],
                  activities=[noop_step])
    await asyncio.gather(orders.run(), noop.run())


if __name__ == "__main__":
    asyncio.run(main())
