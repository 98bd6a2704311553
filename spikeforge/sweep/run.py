"""`spikeforge sweep`: validate the spec, skip the points OUTDIR already holds, run the rest and
store each one as it finishes."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from isa import SpikeforgeError
from spikeforge.progress import bar
from spikeforge.sweep.pool import run_dask, run_local
from spikeforge.sweep.spec import Point, load_spec
from spikeforge.sweep.store import Store


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
              progress: bool = False) -> SweepRun:
    """Run every design point of `spec_file` not yet in OUTDIR/results.sqlite, on `workers` local
    processes (default: the CPU count) or the Dask scheduler at `scheduler`."""
    if workers is not None and workers < 1:
        raise SpikeforgeError(f"--workers: must be >= 1, got {workers}")
    spec = load_spec(spec_file)  # every check before OUTDIR is touched
    points = spec.points()
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise SpikeforgeError("exists and is not a directory", outdir)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out)
    try:
        store.claim(spec.settings(), spec.files, outdir)
        if Path(spec_file).resolve() != (out / "spec.yaml").resolve():
            shutil.copyfile(spec_file, out / "spec.yaml")
        done = store.done()
        todo = [p for p in points if p.hash not in done]
        summary = SweepRun(outdir, len(points), len(points) - len(todo))
        t0 = time.perf_counter()
        results = run_dask(todo, scheduler) if scheduler else run_local(todo, workers or os.cpu_count() or 1)
        with bar(progress, len(todo), "sweep") as advance:
            for n, (point, result) in enumerate(results, 1):
                store.add({"hash": point.hash, **point.columns(), **result})
                if result["status"] != "ok":
                    summary.errors.append((point, result["error"]))
                advance(n)
        summary.seconds = time.perf_counter() - t0
    finally:
        store.close()
    return summary
