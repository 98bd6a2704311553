"""Running design points: a local pool of worker processes, or a Dask distributed cluster. Both
yield `(point, result)` as each point finishes, and both keep the points that share a compiled
program together, so that each worker compiles as few programs as it can."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import re
import signal
import threading
import time
from collections import deque
from statistics import median
from typing import Iterable, Iterator

from spikeforge.isa import SpikeforgeError
from spikeforge.sweeps.spec import Point

Results = Iterator[tuple[Point, dict]]


def group(points: Iterable[Point]) -> dict[tuple, deque[Point]]:
    """Points by compile key, in spec order."""
    groups: dict[tuple, deque[Point]] = {}
    for p in points:
        groups.setdefault(p.compile_key, deque()).append(p)
    return groups


class _Dispatch:
    """Hands a free worker its next point: more of the compile group it is on, else the first group
    no worker has started, else the last point of the largest group when a second compile of it
    pays off (measured: point and compile times so far)."""

    def __init__(self, points: list[Point]):
        self.groups = group(points)
        self.started: set[tuple] = set()
        self.seconds: dict[bool, list[float]] = {True: [], False: []}  # by whether the point compiled

    def record(self, seconds: float, compiled: bool) -> None:
        self.seconds[compiled].append(seconds)

    def take(self, key: tuple | None, others: set[tuple]) -> tuple[Point, bool] | None:
        """(point, whether the worker must compile for it), or None: nothing worth doing. `key`:
        the group of the worker's last point; `others`: the groups other workers are on."""
        if self.groups.get(key):
            return self._pop(key, self.groups[key].popleft), False
        fresh = next((k for k in self.groups if k not in self.started), None)
        if fresh is not None:
            self.started.add(fresh)
            return self._pop(fresh, self.groups[fresh].popleft), True
        largest = max(self.groups, key=lambda k: len(self.groups[k]), default=None)
        if largest is None or largest in others and not self._worth_compiling(len(self.groups[largest])):
            return None
        return self._pop(largest, self.groups[largest].pop), True

    def _worth_compiling(self, remaining: int) -> bool:
        """Whether a second worker, compiling first, finishes `remaining` points of a group sooner."""
        if not self.seconds[True] or not self.seconds[False]:
            return True
        point = median(self.seconds[False])
        return remaining * point > median(self.seconds[True]) + point

    def _pop(self, key: tuple, pop) -> Point:
        point = pop()
        if not self.groups[key]:
            del self.groups[key]
        return point


def _serve(tasks, results) -> None:
    """A worker process: evaluate the points it is sent until told to stop or its parent is gone."""
    from spikeforge.sweeps.evaluate import evaluate

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    parent = os.getppid()
    while True:
        try:
            point = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if point is None:
            return
        results.put((point.hash, evaluate(point)))


class _Worker:
    """One worker process with its own task queue, and the point it is working on."""

    def __init__(self, ctx, results):
        self.tasks = ctx.Queue()
        self.proc = ctx.Process(target=_serve, args=(self.tasks, results), daemon=True)
        self.proc.start()
        self.point: Point | None = None
        self.key: tuple | None = None  # compile group of the last point
        self.compiles, self.sent = False, 0.0

    def next(self, dispatch: _Dispatch, others: set[tuple]) -> None:
        """Send the worker its next point, if there is one worth sending."""
        self.point = None
        taken = dispatch.take(self.key, others)
        if taken is not None:
            self.point, self.compiles = taken
            self.key, self.sent = self.point.compile_key, time.perf_counter()
            self.tasks.put(self.point)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join()


def run_local(points: list[Point], workers: int) -> Results:
    """Evaluate `points` on `workers` local processes, one point at a time per worker."""
    ctx = mp.get_context("spawn")  # no fork of a parent that may run threads (progress bar)
    results = ctx.Queue()
    dispatch = _Dispatch(points)
    pool = [_Worker(ctx, results) for _ in range(min(workers, len(points)))]

    def feed(w: _Worker) -> None:
        w.next(dispatch, {o.key for o in pool if o is not w and o.point is not None})

    try:
        for w in pool:
            feed(w)
        while any(w.point for w in pool):
            try:
                done, row = results.get(timeout=0.5)
            except queue.Empty:
                for i, w in enumerate(pool):
                    if w.point is not None and not w.proc.is_alive():
                        pool[i] = _Worker(ctx, results)
                        feed(pool[i])
                        yield w.point, {"status": "error", "error": f"worker process died (exit code {w.proc.exitcode})"}
                continue
            w = next((w for w in pool if w.point is not None and w.point.hash == done), None)
            if w is None:  # from a worker that died after sending it
                continue
            point = w.point
            dispatch.record(time.perf_counter() - w.sent, w.compiles)
            feed(w)  # keep the worker busy while the parent stores the result
            yield point, row
    finally:
        for w in pool:
            w.stop()


DASK_DEADLINE = 15.0  # seconds to reach a Dask scheduler, hard: the attempt is abandoned after it
_ADDRESS = re.compile(r"inproc://\S+|(?:(?:tcp|tls|ws|wss)://)?(?:[\w.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})")


def connect(address: str):
    """A `distributed.Client` of the Dask scheduler at `address`, with workers; the address is
    checked first and the connection is given up after DASK_DEADLINE seconds, whatever answers."""
    m = _ADDRESS.fullmatch(address)
    if not m or m.group(1) is not None and not 0 < int(m.group(1)) < 65536:
        raise SpikeforgeError("not a Dask scheduler address (expected tcp://HOST:PORT)", address)
    box: dict = {}

    def attempt() -> None:
        from distributed import Client
        try:
            box["client"] = Client(address, timeout=DASK_DEADLINE - 5)
        except Exception as e:  # noqa: BLE001 -- any failure to connect is the user's address
            box["error"] = e

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(DASK_DEADLINE)
    if t.is_alive():
        raise SpikeforgeError(f"no Dask scheduler answered within {DASK_DEADLINE:.0f} s", address)
    if "error" in box:
        e = box["error"]
        raise SpikeforgeError(f"cannot connect to the Dask scheduler ({type(e).__name__}: {str(e)[:200]})", address)
    client = box["client"]
    if not client.scheduler_info()["workers"]:
        client.close()
        raise SpikeforgeError("the Dask cluster has no workers", address)
    return client


def run_dask(points: list[Point], client) -> Results:
    """Evaluate `points` on the Dask cluster of `client` (see `connect`), each compile group
    preferring one worker."""
    from distributed import as_completed

    from spikeforge.sweeps.evaluate import evaluate

    workers = sorted(client.scheduler_info()["workers"])
    futures = {}
    for i, members in enumerate(group(points).values()):
        for p in members:
            f = client.submit(evaluate, p, pure=False, workers=[workers[i % len(workers)]], allow_other_workers=True)
            futures[f] = p
    for f in as_completed(futures):
        try:
            row = f.result()
        except Exception as e:  # noqa: BLE001 -- a lost worker: the point is an error, the sweep goes on
            row = {"status": "error", "error": f"{type(e).__name__}: {e}"}
        yield futures[f], row
