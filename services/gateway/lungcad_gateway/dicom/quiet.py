"""When a study is complete: a quiet period after its last instance. Pure bookkeeping on a
monotonic clock passed in by the caller."""

from __future__ import annotations

from collections.abc import Hashable


class QuietPeriod:
    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: dict[Hashable, float] = {}

    def touch(self, key: Hashable, now: float) -> None:
        """An instance of ``key`` arrived at ``now``."""
        self._last[key] = max(now, self._last.get(key, now))

    def due(self, now: float) -> list[Hashable]:
        """The keys whose last arrival is at least the quiet period before ``now``, oldest
        first."""
        ready = [(t, k) for k, t in self._last.items() if now - t >= self.period_s]
        return [k for _, k in sorted(ready, key=lambda item: item[0])]

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the next key is due (0 when one is), None when nothing is waiting."""
        if not self._last:
            return None
        return max(0.0, min(self._last.values()) + self.period_s - now)

    def __len__(self) -> int:
        return len(self._last)
