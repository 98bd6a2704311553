"""`spikeforge sweep`: validate the spec, skip the points OUTDIR already holds, run the rest and
store each one as it finishes."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from spikeforge.isa import SpikeforgeError
from spikeforge.outdir import check_writable, write_file
from spikeforge.progress import bar
from spikeforge.sweeps.pool import connect, run_dask, run_local
from spikeforge.sweeps.spec import MAX_POINTS, Point, load_spec
from spikeforge.sweeps.store import Store, writer_lock


@dataclass
class SweepRun:
    """What one `sweep` command did."""

    outdir: str
    points: int  # design points of the spec
    stored: int  # of them already in OUTDIR before this run
    seconds: float = 0.0
    errors: list[tuple[Point, str]] = field(default_factory=list)  # of the points run now

    @property
    def ran(self) -> int:
        return self.points - self.stored


def run_sweep(spec_file: str, outdir: str, workers: int | None = None, scheduler: str | None = None,
              progress: bool = False, max_points: int = MAX_POINTS) -> SweepRun:
    """Run every design point of `spec_file` not yet in OUTDIR/results.sqlite, on `workers` local
    processes (default: the CPU count) or the Dask scheduler at `scheduler`. Everything is checked
    (spec, OUTDIR writable, scheduler reachable) before OUTDIR is touched; one sweep at a time
    writes to a directory."""
    if workers is not None and workers < 1:
        raise SpikeforgeError(f"--workers: must be >= 1, got {workers}")
    if max_points < 1:
        raise SpikeforgeError(f"--max-points: must be >= 1, got {max_points}")
    spec = load_spec(spec_file, max_points)
    points = spec.points()
    check_writable(outdir)
    client = connect(scheduler) if scheduler else None
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with writer_lock(out), closing(Store(out)) as store:
            store.claim(spec.settings(), spec.files, outdir)
            if Path(spec_file).resolve() != (out / "spec.yaml").resolve():
                write_file(str(out / "spec.yaml"), lambda p: shutil.copyfile(spec_file, p))
            done = store.done()
            todo = [p for p in points if p.hash not in done]
            summary = SweepRun(outdir, len(points), len(points) - len(todo))
            t0 = time.perf_counter()
            results = run_dask(todo, client) if client else run_local(todo, workers or os.cpu_count() or 1)
            with bar(progress, len(todo), "sweep") as advance:
                for n, (point, result) in enumerate(results, 1):
                    store.add({"hash": point.hash, **point.columns(), **result})
                    if result["status"] != "ok":
                        summary.errors.append((point, result["error"]))
                    advance(n)
            summary.seconds = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
    return summary
