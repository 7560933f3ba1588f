"""The limits without Redis: the Lua scripts' semantics over this process's own counters.

With ``--workers N`` or several replicas each process enforces the limits on its own (N times the
configured rate in total).
"""

from __future__ import annotations

import time
from collections import deque

from gateway.config import Limits
from gateway.pipeline.limits.verdict import (
    BDAY,
    BMONTH,
    DAY_MS,
    RPM,
    TPD,
    TPM,
    Admission,
    Verdict,
    budget_micro,
    month_of,
)


class _KeyState:
    """One subject's counters in memory (the Lua script's four keys)."""

    __slots__ = ("bd", "bd_used", "bm", "bm_used", "buckets", "day", "day_used", "requests")

    def __init__(self) -> None:
        self.requests: deque[int] = deque()  # admission times (ms), oldest first
        self.buckets: dict[int, int] = {}  # bucket index -> tokens
        self.day = -1
        self.day_used = 0
        self.bd, self.bd_used = -1, 0  # budget: day number and micro-dollars spent or reserved
        self.bm, self.bm_used = -1, 0  # budget: month index and the same


class MemoryLimits:
    """The Lua scripts' semantics over per-process state (see the module docstring)."""

    def __init__(self, window_ms: int, width: int, nb: int) -> None:
        self.window, self.width, self.nb = window_ms, width, nb
        # Bounded by the configured subjects: only those with limits get here.
        self.keys: dict[str, _KeyState] = {}

    def check(self, key_name: str, limits: Limits, prompt: int, reserve: int = 0) -> Verdict:
        now = int(time.time() * 1000)
        st = self.keys.get(key_name)
        if st is None:
            st = self.keys[key_name] = _KeyState()
        need = max(prompt, 1)
        cur, day = now // self.width, now // DAY_MS
        fails: list[tuple[int, int, str]] = []  # (too_large, wait, kind): the largest is reported

        reqs = st.requests
        while reqs and reqs[0] <= now - self.window:
            reqs.popleft()
        if limits.rpm is not None and len(reqs) >= limits.rpm:
            fails.append((0, reqs[len(reqs) - limits.rpm] + self.window - now, RPM))

        for b in [b for b in st.buckets if b < cur - self.nb]:
            del st.buckets[b]
        used = sum(st.buckets.values())
        if limits.tpm is not None:
            if need > limits.tpm:
                fails.append((1, self.window, TPM))
            elif used + need > limits.tpm:
                left = used
                for b in sorted(st.buckets):
                    left -= st.buckets[b]
                    if left + need <= limits.tpm:
                        fails.append((0, (b + self.nb + 1) * self.width - now, TPM))
                        break

        if st.day != day:
            st.day, st.day_used = day, 0
        if limits.tokens_per_day is not None and st.day_used + need > limits.tokens_per_day:
            fails.append((int(need > limits.tokens_per_day), (day + 1) * DAY_MS - now, TPD))

        bday, bmon = budget_micro(limits)
        month, month_end = month_of(day) if bday or bmon else (0, 0)
        if bday or bmon:
            if st.bd != day:
                st.bd, st.bd_used = day, 0
            if st.bm != month:
                st.bm, st.bm_used = month, 0
            bneed = max(reserve, 1)
            if bday and st.bd_used + bneed > bday:
                fails.append((int(bneed > bday), (day + 1) * DAY_MS - now, BDAY))
            if bmon and st.bm_used + bneed > bmon:
                fails.append((int(bneed > bmon), month_end * DAY_MS - now, BMONTH))

        if not fails:
            if limits.rpm is not None:
                reqs.append(now)
            if limits.tpm is not None and prompt > 0:
                st.buckets[cur] = st.buckets.get(cur, 0) + prompt
                used += prompt
            if limits.tokens_per_day is not None:
                st.day_used += prompt
            if bday or bmon:
                st.bd_used += reserve
                st.bm_used += reserve
        large, wait, kind = max(fails) if fails else (0, 0, "")
        oldest = min((b for b, v in st.buckets.items() if v > 0), default=None)
        return Verdict(
            allowed=not fails,
            failed=kind,
            retry_ms=wait,
            too_large=bool(large),
            requests=len(reqs),
            requests_reset_ms=reqs[0] + self.window - now if reqs else 0,
            tokens=used,
            tokens_reset_ms=0 if oldest is None else (oldest + self.nb + 1) * self.width - now,
            day_tokens=st.day_used,
            day=day,
            bucket=cur,
            budget_day=st.bd_used if st.bd == day else 0,
            budget_month=st.bm_used if st.bm == month else 0,
            month=month,
            month_end=month_end,
            now_ms=now,
        )

    def settle(self, a: Admission, delta: int, cost_delta: int = 0) -> None:
        st = self.keys.get(a.key_name)
        if st is None:
            return
        now = int(time.time() * 1000)
        cur, today = now // self.width, now // DAY_MS
        if a.tpm and delta:
            if delta > 0:
                st.buckets[cur] = st.buckets.get(cur, 0) + delta
            elif a.bucket >= cur - self.nb and a.bucket in st.buckets:
                st.buckets[a.bucket] = max(0, st.buckets[a.bucket] + delta)
        if a.tpd and delta:
            if delta > 0:
                if st.day != today:
                    st.day, st.day_used = today, 0
                st.day_used += delta
            elif st.day == a.day:
                st.day_used = max(0, st.day_used + delta)
        if a.budget and cost_delta:
            if cost_delta > 0:
                month, _ = month_of(today)
                if st.bd != today:
                    st.bd, st.bd_used = today, 0
                if st.bm != month:
                    st.bm, st.bm_used = month, 0
                st.bd_used += cost_delta
                st.bm_used += cost_delta
            else:
                if st.bd == a.day:
                    st.bd_used = max(0, st.bd_used + cost_delta)
                if st.bm == a.month:
                    st.bm_used = max(0, st.bm_used + cost_delta)
