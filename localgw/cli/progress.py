"""A Rich byte progress bar on stderr; silent under --json or without a terminal."""

from __future__ import annotations

import contextlib
import sys

from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from localgw.cli.output import stderr


@contextlib.contextmanager
def byte_progress(total: int, done: int, quiet: bool = False):
    if quiet or not sys.stderr.isatty():
        yield lambda n: None
        return
    progress = Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=stderr,
                        transient=True)
    with progress:
        task = progress.add_task("pull", total=total, completed=done)
        yield lambda n: progress.advance(task, n)
