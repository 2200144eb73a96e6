"""Where batch work runs: in this process, or on a Dask cluster named by ``--cluster``.

``--cluster ADDRESS`` connects to a running Dask scheduler (``tcp://host:8786``);
``--cluster local`` or ``local:N`` starts a ``LocalCluster`` of N single-threaded worker
processes (default 2) for the duration of the command. Without ``--cluster`` commands run
in-process and Dask is never imported. Dask and distributed are the optional extra
``pip install -e ".[dask]"``; they are imported here only, and only when a cluster is asked for.

The client and every worker must see the same filesystem: tasks read the export and write
their parts under the output's folder.

A local cluster's workers keep glibc's adaptive malloc trimming: Dask's default
``MALLOC_TRIM_THRESHOLD_=65536`` (set in each worker process to give memory back to the OS
sooner) made the signal build about 40% slower per shard here. A remote cluster's workers
take their operator's Dask configuration (``distributed.nanny.pre-spawn-environ``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

EXTRA = 'pip install -e ".[dask]"'
LOCAL = "local"
DEFAULT_LOCAL_WORKERS = 2
CONNECT_TIMEOUT_S = 10
QUIET_HTTP = {"dashboard_address": "127.0.0.1:0"}
"""A local scheduler's HTTP endpoints (metrics, health) on a free port: by default they take 8787, and
when another scheduler on the machine holds it Dask warns and leaks the socket it tried."""


class ClusterError(RuntimeError):
    """The cluster cannot be used: the extra is not installed or the address is wrong."""


class WorkerLost(ClusterError):
    """A task was lost with the workers running it more often than the scheduler allows."""


def failed(err: ClusterError, unwritten: str, prefix: str = "") -> int:
    """Report a cluster failure on stderr; the command's exit code.

    Args:
        err: What went wrong.
        unwritten: What the command did not write (``"nothing registered"``), said after a lost worker.
        prefix: Put before the message (``"simulator: "``).

    Returns:
        1 when workers were lost mid-run (the command left nothing half-written), 2 when the cluster
        could not be used at all (a usage error, like a bad argument).
    """
    if isinstance(err, WorkerLost):
        print(f"{prefix}{err}; {unwritten}", file=sys.stderr)
        return 1
    print(f"{prefix}{err}", file=sys.stderr)
    return 2


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--cluster`` option, the same on every command that takes it."""
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS|local[:N]",
        help="run on Dask: a scheduler address (tcp://host:8786) or local[:N] for a LocalCluster "
        f"of N single-threaded worker processes (default {DEFAULT_LOCAL_WORKERS}); needs {EXTRA}",
    )


def parse(spec: str) -> tuple[str, str | int]:
    """``"local:3"`` -> ``("local", 3)``; anything else -> ``("address", spec)``.

    Raises:
        ClusterError: If the spec is empty or ``local:N`` has no positive integer N.
    """
    spec = spec.strip()
    if not spec:
        raise ClusterError("--cluster: empty address")
    if spec == LOCAL:
        return LOCAL, DEFAULT_LOCAL_WORKERS
    if spec.startswith(LOCAL + ":"):
        count = spec[len(LOCAL) + 1 :]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {spec}: expected local:N with N a positive integer")
        return LOCAL, int(count)
    return "address", spec


@contextlib.contextmanager
def connect(spec: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``spec`` names, or ``None`` without a spec.

    A local cluster is started here and shut down on exit (its worker processes with it).

    Args:
        spec: ``None`` (in-process), ``"local[:N]"`` or a scheduler address.

    Yields:
        The connected client, or ``None``.

    Raises:
        ClusterError: If the ``dask`` extra is missing, the spec is malformed or the
            scheduler cannot be reached within ``CONNECT_TIMEOUT_S`` seconds.
    """
    if spec is None:
        yield None
        return
    kind, value = parse(spec)
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ClusterError(f"--cluster needs Dask and distributed: {EXTRA} ({err})") from err
    import dask

    with contextlib.ExitStack() as stack:
        if kind == LOCAL:
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                local = LocalCluster(
                    n_workers=int(value),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    scheduler_kwargs=QUIET_HTTP,
                )
            stack.enter_context(local)
            address = local.scheduler_address
        else:
            address = str(value)
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise ClusterError(f"--cluster {spec}: cannot reach a Dask scheduler: {err}") from err
        stack.enter_context(client)
        yield client


def results(client: Any, futures: list) -> Iterator[Any]:
    """Each future's result, in the order given, as soon as it is ready.

    On any failure the remaining futures are cancelled, so nothing keeps running for a
    command that has already failed.

    Args:
        client: The client the futures belong to.
        futures: Futures of ``client``.

    Yields:
        The results, in order.

    Raises:
        WorkerLost: If a task was lost with the workers that ran it more often than the
            scheduler allows (``distributed.scheduler.allowed-failures``).
    """
    from distributed import KilledWorker

    try:
        for future in futures:
            yield future.result()
    except KilledWorker as err:
        raise WorkerLost(
            f"workers died while running task {err.task!r}; gave up after the allowed retries"
        ) from err
    finally:
        client.cancel([f for f in futures if not f.done()])
