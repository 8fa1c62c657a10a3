"""A run's lease, kept while the run lasts, and the fence its writes stop at.

A claim takes a lease (`leaseUntil` on the prompt): until it ends no other consumer claims the
prompt. The keeper renews it every third of its length for as long as the run lasts (generation,
the last deltas, the final write), and calls the ECS worker's `keep_alive` so the message stays
hidden as long. A renewal that is refused means the run is over (canceled, removed or claimed
again): `lost`. One that cannot be made (a throttled table) is tried again shortly; if none lands
before the lease ends, the run must stop writing a moment before (`past_fence`, `fence`): past it
another consumer may claim the prompt and start its events over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.domain.prompt import Prompt

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore

logger = Logger(child=True)

KeepAlive = Callable[[], Awaitable[None]]

FENCE_MARGIN_MS = 1000  # a run stops writing this long (at most a quarter lease) before its lease ends
_RETRY_SECONDS = 1.0  # after a renewal that could not be made
# Renewals get threads of their own: queued behind a run's event writes (each may sleep through a
# throttled table's backoff) they would come too late, and the run would lose a lease nobody took.
_RENEWALS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lease")


def fence_of(lease_until_ms: int, lease: float) -> float:
    """When a run holding a lease until `lease_until_ms` stops writing (epoch seconds)."""
    margin_ms = min(FENCE_MARGIN_MS, int(lease * 1000) // 4)
    return (lease_until_ms - margin_ms) / 1000


class LeaseKeeper:
    def __init__(
        self,
        repository: PromptStore,
        claimed: Prompt,
        lease: float,
        *,
        clock: Callable[[], float] = time.time,
        on_renewed: Callable[[float], None] = lambda fence: None,
        keep_alive: KeepAlive | None = None,
    ) -> None:
        self._repo = repository
        self._claimed = claimed
        self._lease = lease
        self._clock = clock
        self._on_renewed = on_renewed
        self._keep_alive = keep_alive
        self.until_ms = claimed.leaseUntil
        self.lost = False  # a renewal was refused: the run is over

    @property
    def fence(self) -> float:
        return fence_of(self.until_ms, self._lease)

    def _renew_at(self) -> float:
        return self.until_ms / 1000 - self._lease * 2 / 3

    def past_fence(self) -> bool:
        return self._clock() >= self.fence

    async def keep(self) -> None:
        """Renew until cancelled or lost, each time a third of the lease has passed since it was
        set (counted from the lease itself: a claim that took a while leaves less of it)."""
        loop = asyncio.get_running_loop()
        renew_at = self._renew_at()
        while not self.lost:
            await asyncio.sleep(max(0.0, renew_at - self._clock()))
            until = int((self._clock() + self._lease) * 1000)
            try:
                renewed = await loop.run_in_executor(_RENEWALS, self._repo.renew_lease, self._claimed, until)
            except Exception:
                logger.exception("could not renew the lease; trying again", prompt_id=self._claimed.id)
                renew_at = self._clock() + _RETRY_SECONDS
                continue
            if not renewed:
                self.lost = True
                return
            self.until_ms = until
            self._on_renewed(self.fence)
            renew_at = self._renew_at()
            if self._keep_alive is not None:
                try:
                    await self._keep_alive()
                except Exception:
                    logger.exception("could not keep the message hidden", prompt_id=self._claimed.id)
