"""Keeping the served cloud share near a target, and not sending steps to an upstream that keeps failing.

`OnlineThreshold` is RouteLLM's calibration done on live traffic: the threshold is the (1 - target) quantile of the
last `window` p_cloud values, so "cloud when p_cloud >= threshold" sends about `target` of the recent steps to the
cloud whatever the traffic mix. Traffic whose p_cloud keeps drifting upward (or downward) stays ahead of a quantile
of the past, so the quantile's share is corrected by the integral of the error between the target and the share the
rule actually sent (time constant half a window), which holds the long-run share on target. `CircuitBreaker` opens
after `failures` consecutive failures and lets one request try again after `cooldown_s`.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np


def share_threshold(p_cloud: np.ndarray, target: float) -> float:
    """The threshold under which "p >= threshold" selects a `target` share of `p_cloud` (ties may add more)."""
    values = np.sort(np.asarray(p_cloud, np.float64))
    if target <= 0:
        return float(np.nextafter(values[-1], np.inf)) if len(values) else 1.0
    if target >= 1 or len(values) == 0:
        return 0.0
    return float(values[min(len(values) - 1, int(np.floor(len(values) * (1.0 - target))))])


class OnlineThreshold:
    def __init__(self, target: float, window: int = 200, warmup: int = 20, initial: float = 0.5,
                 feedback: float = 2.0):
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"--cloud-share must be in [0, 1], got {target}")
        self.target, self.warmup, self.initial = target, warmup, initial
        self.step_size = feedback / window  # of the integral correction: time constant window / feedback steps
        self.correction = 0.0  # added to the target share the quantile is taken at
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def threshold(self) -> float:
        with self._lock:
            if len(self._recent) < self.warmup:
                return self.initial
            return share_threshold(np.fromiter(self._recent, np.float64), self.target + self.correction)

    def observe(self, p_cloud: float) -> float:
        """Record a step's p_cloud and return the threshold it is routed with (set before it is added)."""
        threshold = self.threshold()
        with self._lock:
            self._recent.append(float(p_cloud))
            if len(self._recent) > self.warmup:
                sent = float(p_cloud >= threshold)  # the rule's decision, whatever the upstreams' health then
                # kept within [0, 1] as a share, so a long outage or a one-sided mix cannot wind it up
                self.correction = float(np.clip(self.correction + self.step_size * (self.target - sent),
                                                -self.target, 1.0 - self.target))
        return threshold


class CircuitBreaker:
    def __init__(self, failures: int = 3, cooldown_s: float = 30.0, clock=time.monotonic):
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at >= self.cooldown_s:  # half-open: let one request try
                self._opened_at = None
                self._consecutive = self.failures - 1
                return True
            return False

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._consecutive, self._opened_at = 0, None
            else:
                self._consecutive += 1
                if self._consecutive >= self.failures:
                    self._opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None
