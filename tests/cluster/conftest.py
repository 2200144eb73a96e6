"""Small exports and local Dask clusters for the cluster tests (2 single-threaded workers).

Every cluster here is started and shut down by the test that uses it, and each test
checks it leaves no child process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.cluster import QUIET_HTTP
from simulator.config import ID_STRIDE, RunConfig
from simulator.write import write_export

DEVICE_TABLES = ("account_events", "orders")
SHARED_EVERY = 3
"""Devices whose local index is a multiple of this become one device across all shards."""


def cross_shard_devices(export: Path) -> None:
    """Make devices cross shards: the simulator draws devices per shard (``part * 10**10 + i``);
    here device ``i`` of every shard becomes the same device ``i`` when ``i % SHARED_EVERY == 0``,
    as a fraud group spread over shards would look in a real export."""
    for name in DEVICE_TABLES:
        for path in sorted((export / name).glob("part-*.parquet")):
            table = pq.read_table(path)
            column = table["device_id"]
            missing = column.is_null().to_numpy(zero_copy_only=False)
            device = column.fill_null(0).to_numpy().astype(np.int64)
            local = device % ID_STRIDE
            moved = np.where(local % SHARED_EVERY == 0, local, device)
            field = table.schema.field("device_id")
            index = table.schema.get_field_index("device_id")
            table = table.set_column(index, field, pa.array(moved, mask=missing, type=field.type))
            pq.write_table(table, path)


@pytest.fixture(scope="session")
def cross_shard_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 buyers x 12 months in 8 parts of 100 (2 device buckets), with devices shared across parts."""
    out = tmp_path_factory.mktemp("cross_shard") / "export"
    write_export(RunConfig(buyers=800, months=12, seed=3, shard_size=100), out)
    cross_shard_devices(out)
    return out


@contextlib.contextmanager
def local_client(allowed_failures: int | None = None) -> Iterator:
    """A ``LocalCluster`` of 2 single-threaded worker processes and its client."""
    import dask
    from distributed import Client, LocalCluster

    config = {} if allowed_failures is None else {"distributed.scheduler.allowed-failures": allowed_failures}
    with (
        dask.config.set(config),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs=QUIET_HTTP,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def killer(marker: Path, prefix: str, once: bool):
    """A worker plugin that SIGKILLs its own worker process when a task named ``prefix...``
    starts executing: only the first time across the cluster if ``once`` (the marker file
    is created atomically), otherwise every time."""
    from distributed import WorkerPlugin

    class KillOnTask(WorkerPlugin):
        name = "kill-on-task"

        def transition(self, key, start, finish, **kwargs) -> None:
            if finish != "executing" or not str(key).startswith(prefix):
                return
            if once:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
            else:
                with marker.open("a") as kills:
                    kills.write(f"{key}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    return KillOnTask()


def _children() -> set[int]:
    """Live child processes, less multiprocessing's resource tracker (one per Python process,
    started with the first spawned worker and shared by every later one until exit)."""
    import psutil

    alive = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                alive.add(child.pid)
    return alive


@pytest.fixture(autouse=True)
def no_processes_left_behind() -> Iterator[None]:
    before = _children()
    yield
    deadline = time.monotonic() + 10
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {sorted(left)}"
