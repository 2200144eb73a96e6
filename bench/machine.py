"""The header of a benchmark's output: the machine's load and cores, and the marketplace measured
(figures from a busy machine are not comparable with a quiet one)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def describe(data: Path) -> str:
    """The machine's load and cores, and the marketplace's size (the header of a benchmark's output)."""
    manifest = json.loads((Path(data) / "manifest.json").read_text())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"load average at start (1/5/15 min): {load}; cores: {os.cpu_count()}\n"
        f"marketplace {data}: {manifest['buyers']:,} buyers, {manifest['months']} months, seed {manifest['seed']}"
    )
