"""Which deployment to try next: rank order, weights within a rank, circuit breakers.

Breakers are per deployment and per process (docs/config.md "providers": ``circuit_breaker``): a deployment
opens after ``failures`` consecutive failures, lets one probe through after ``cooldown``
seconds (half-open), and closes on the probe's success. Per-deployment in-flight counts
serve the ``least_in_flight`` strategy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.pipeline.routing import Deployment, Route

CLOSED, OPEN, HALF_OPEN = 0, 1, 2


class Breaker:
    __slots__ = ("cooldown", "failures", "in_flight", "opened_at", "probing", "threshold")

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.failures = 0
        self.threshold = threshold
        self.cooldown = cooldown
        self.opened_at = 0.0
        self.probing = False
        self.in_flight = 0

    def state(self, now: float) -> int:
        if self.failures < self.threshold:
            return CLOSED
        return HALF_OPEN if now - self.opened_at >= self.cooldown else OPEN

    def allow(self, now: float) -> bool:
        s = self.state(now)
        if s == CLOSED:
            return True
        if s == HALF_OPEN and not self.probing:
            self.probing = True  # exactly one probe at a time
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.probing = False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.opened_at = now

    def retry_in(self, now: float) -> float:
        return max(0.0, self.cooldown - (now - self.opened_at))


class Balancer:
    def __init__(
        self,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[Deployment, int], None] | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.clock = clock
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self.on_state = on_state

    def breaker(self, dep: Deployment) -> Breaker:
        key = (dep.provider, dep.target.upstream_model)
        b = self.breakers.get(key)
        if b is None:
            cb = dep.adapter.cfg.circuit_breaker
            b = self.breakers[key] = Breaker(cb.failures, cb.cooldown)
        return b

    def order(self, route: Route, least_in_flight: bool = False) -> list[Deployment]:
        """All deployments in the order to try them: by rank; within a rank by weight (or load)."""
        deps = route.deployments
        if len(deps) == 1:
            return [deps[0]]
        out: list[Deployment] = []
        i = 0
        while i < len(deps):
            j = i
            while j < len(deps) and deps[j].rank == deps[i].rank:
                j += 1
            group = list(deps[i:j])
            if least_in_flight:
                group.sort(key=lambda d: self.breaker(d).in_flight)
            else:
                group = self._weighted_order(group)
            out.extend(group)
            i = j
        return out

    def _weighted_order(self, group: list[Deployment]) -> list[Deployment]:
        ordered = []
        while group:
            pick = self.rng.choices(range(len(group)), weights=[d.weight for d in group])[0]
            ordered.append(group.pop(pick))
        return ordered

    def acquire(self, dep: Deployment) -> bool:
        """May this deployment be tried now? Counts it in flight when it may."""
        b = self.breaker(dep)
        now = self.clock()
        before = b.state(now)
        if not b.allow(now):
            return False
        b.in_flight += 1
        if before == HALF_OPEN and self.on_state:
            self.on_state(dep, HALF_OPEN)
        return True

    def release(self, dep: Deployment) -> None:
        b = self.breaker(dep)
        b.in_flight -= 1
        b.probing = False  # a probe that ended without a verdict (client gone) frees the slot

    def success(self, dep: Deployment) -> None:
        b = self.breaker(dep)
        was_open = b.failures >= b.threshold
        b.success()
        if was_open and self.on_state:
            self.on_state(dep, CLOSED)

    def failure(self, dep: Deployment) -> None:
        b = self.breaker(dep)
        b.failure(self.clock())
        if self.on_state and b.failures >= b.threshold:
            self.on_state(dep, OPEN)

    def retry_after(self, deps: list[Deployment]) -> int:
        now = self.clock()
        return max(1, int(min((self.breaker(d).retry_in(now) for d in deps), default=1) + 0.999))
