"""A small progress display for multi-step CLI work (rich, on stderr)."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def steps(enabled: bool, total: int):
    """Yield `step(description)`; each call advances a rich progress bar on stderr."""
    if not enabled or not sys.stderr.isatty():
        yield lambda description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=total)
        first = [True]

        def step(description: str) -> None:
            if not first[0]:
                bar.advance(task)
            first[0] = False
            bar.update(task, description=description)

        yield step
        bar.advance(task)


@contextlib.contextmanager
def bar(enabled: bool, total: int, description: str):
    """Yield `advance(done)`: a progress bar with ETA on stderr over `total` items."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    # lines printed meanwhile go above the bar when stdout is the same terminal, else to stdout's file
    with Progress(TextColumn(description), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                  redirect_stdout=sys.stdout.isatty()) as p:
        task = p.add_task(description, total=total)
        yield lambda done: p.update(task, completed=done)
