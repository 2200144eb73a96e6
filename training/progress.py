"""What a long training step prints and how long it took: elapsed time and peak memory per line,
wall time per named step (logged to the run as ``time_<step>_s``)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from features.memory import release_free_memory


class Progress:
    """Prints a line with the elapsed time and the peak memory so far to stderr, and times named steps
    (``time_<step>_s``)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.seconds: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(
            f"[{time.monotonic() - self.start:6.1f}s {peak:4.1f} GB] {message}", file=sys.stderr, flush=True
        )

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        """Print ``message``, run the block and add its wall time to step ``name``."""
        self(message)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started
            release_free_memory()  # what the step freed goes back to the OS before the next one

    def metrics(self) -> dict[str, float]:
        """Each step's wall time as the MLflow metric ``time_<step>_s``."""
        return {f"time_{name}_s": round(seconds, 2) for name, seconds in self.seconds.items()}
