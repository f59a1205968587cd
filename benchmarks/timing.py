"""Timing kept apart from training (nanoGPT's bench.py): warm-up first, timed and reported apart;
then rounds of steps with the device synced only before and after a round; median, p10, p90.

Everything here takes step callables and the backend's sync, so the same loop times a GAN step,
a fine-tune step, a phase of one, or several arms (the project's step and its source loop) in
the same rounds."""

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


def _warm(step: Callable[[], object], sync: Callable[[], None], warmup: int) -> tuple[float, float, object]:
    """The first step apart (compile, autotune, graph capture, MXNet's trace), then the rest of the
    warm-up: (first step s, s per warm step, last result)."""
    t0 = time.perf_counter()
    last = step()
    sync()
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(max(warmup - 1, 0)):
        last = step()
    sync()
    per_step = (time.perf_counter() - t1) / max(warmup - 1, 1) if warmup > 1 else first
    return first, per_step, last


def time_interleaved(arms: dict[str, Callable[[], object]], sync: Callable[[], None], rounds: int, warmup: int,
                     min_round_s: float = 0.05, max_per_round: int = 1000) -> dict[str, dict]:
    """Several steps timed in the same rounds, so that they share the machine's state (clock,
    caches, other load): each warms up apart, then every round runs each arm for enough steps to
    last min_round_s, in an order that rotates from round to round. Per arm: median, p10, p90
    ms/step over the rounds, each round's ms/step under 'times_ms' (round k of every arm ran in the
    same rotation: pair them to cancel the machine's drift), and its last result under 'last' (read
    it after timing: reading a device value is a host sync)."""
    names = list(arms)
    warm = {n: _warm(arms[n], sync, warmup) for n in names}
    per_round = {n: max(1, min(max_per_round, math.ceil(min_round_s / max(w[1], 1e-6)))) for n, w in warm.items()}
    last = {n: w[2] for n, w in warm.items()}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            step = arms[n]
            sync()
            t = time.perf_counter()
            for _ in range(per_round[n]):
                last[n] = step()
            sync()  # the only host syncs: around the round
            times[n].append((time.perf_counter() - t) / per_round[n])
    out = {}
    for n in names:
        first, per_step, _ = warm[n]
        med, p10, p90 = quantiles(times[n])
        out[n] = {"warmup_steps": warmup, "first_step_s": first, "warmup_s": first + per_step * max(warmup - 1, 0),
                  "rounds": rounds, "steps_per_round": per_round[n], "median_ms": med, "p10_ms": p10,
                  "p90_ms": p90, "times_ms": [t * 1000 for t in times[n]], "last": last[n]}
    return out


def time_rounds(step: Callable[[], object], sync: Callable[[], None], rounds: int, warmup: int,
                min_round_s: float = 0.05, max_per_round: int = 1000) -> dict:
    """One step timed alone: warm-up, then `rounds` rounds (time_interleaved with one arm)."""
    return time_interleaved({"step": step}, sync, rounds, warmup, min_round_s, max_per_round)["step"]


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
    """The process's peak resident memory so far (monotonic, framework included). On Linux from
    /proc/self/status VmHWM, this process's own high-water mark: getrusage's ru_maxrss survives
    fork and exec, so a row's fresh process would report its parent's peak when that was higher."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "process peak RSS (whole run so far)"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (whole run so far)"
