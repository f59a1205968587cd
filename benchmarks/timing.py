"""Timing kept apart from training (nanoGPT's bench.py): warm-up first, timed and reported apart;
then rounds of steps with the device synced only before and after a round; median, p10, p90.

Everything here takes a step callable and the backend's sync, so the same loop times a GAN step,
a fine-tune step or a phase of one."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable

import numpy as np


def quantiles(seconds: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90) in milliseconds."""
    a = np.asarray(seconds) * 1000
    return float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90))


def time_rounds(step: Callable[[], object], sync: Callable[[], None], rounds: int, warmup: int,
                min_round_s: float = 0.05, max_per_round: int = 1000) -> dict:
    """Warm up (the first step apart: compile, autotune, graph capture, MXNet's trace), then
    `rounds` rounds of enough steps to last min_round_s each. The step's last result comes back
    under 'last' (read it after timing: reading a device value is a host sync)."""
    t0 = time.perf_counter()
    last = step()
    sync()
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(max(warmup - 1, 0)):
        last = step()
    sync()
    per_step = (time.perf_counter() - t1) / max(warmup - 1, 1) if warmup > 1 else first
    steps_per_round = max(1, min(max_per_round, math.ceil(min_round_s / max(per_step, 1e-6))))
    times = []
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        for _ in range(steps_per_round):
            last = step()
        sync()  # the only host sync: after the round
        times.append((time.perf_counter() - t) / steps_per_round)
    med, p10, p90 = quantiles(times)
    return {"warmup_steps": warmup, "first_step_s": first, "warmup_s": first + per_step * max(warmup - 1, 0),
            "rounds": rounds, "steps_per_round": steps_per_round, "median_ms": med, "p10_ms": p10, "p90_ms": p90,
            "last": last}


def time_phases(phases: list[Callable[[], None]], sync: Callable[[], None], rounds: int) -> list[float]:
    """Each phase of a step timed between syncs, `rounds` times: the median ms of each. Separate
    rounds from the headline timing, which has no inner sync."""
    times: list[list[float]] = [[] for _ in phases]
    for _ in range(rounds):
        sync()
        for i, phase in enumerate(phases):
            t = time.perf_counter()
            phase()
            sync()
            times[i].append(time.perf_counter() - t)
    return [quantiles(t)[0] for t in times]


def peak_rss() -> tuple[int, str]:
    """The process's peak resident memory so far (monotonic, framework included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (whole run so far)"
