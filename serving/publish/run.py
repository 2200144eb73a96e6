"""``python -m serving.publish``: write the online snapshot from a raw export.

Builds every buyer's signals as of the export time (or ``--as-of``), shard by shard with
the feature builder, keeps the champion model's signals in its column order, and writes
them to a parquet file (``--out``, with each buyer's exact TreeSHAP reasons by that model)
or to Redis (``--redis``). The running service picks
the new snapshot up on its own (watcher) or on ``POST /v1/admin/reload``.
With ``--cluster`` each buyer shard is a Dask task that builds, explains and writes its
partition (:mod:`serving.publish.distributed`); the snapshot is the same.

Example::

    python -m serving.publish --data data/market --out data/online/snapshot.parquet
    python -m serving.publish --data data/market --redis redis://127.0.0.1:6379/0 --cluster local:2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from features import cluster
from serving.config import load_config
from serving.publish.batch_reasons import model_identity, snapshot_rows
from serving.publish.snapshot import SnapshotMeta, is_redis, open_writer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = load_config({"watch_interval_s": 0})
    p = argparse.ArgumentParser(prog="python -m serving.publish", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="raw export directory")
    p.add_argument("--as-of", default=None, help="ISO-8601 UTC instant (default: the export time)")
    p.add_argument(
        "--model-uri", default=defaults.model_uri, help=f"model whose signals to keep ({defaults.model_uri})"
    )
    p.add_argument(
        "--tracking-uri", default=defaults.mlflow_tracking_uri, help="MLflow tracking/registry URI"
    )
    p.add_argument("--all-signals", action="store_true", help="keep every registry signal (no model needed)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help=f"parquet file to write (default {defaults.snapshot})")
    where.add_argument("--redis", default=None, help="redis:// URL to publish to instead of a file")
    p.add_argument("--prefix", default=defaults.redis_prefix, help="Redis key prefix")
    p.add_argument(
        "--no-exact-reasons",
        action="store_true",
        help="do not store exact TreeSHAP reasons (the service then uses the model's lookup table)",
    )
    p.add_argument("--buyers-limit", type=int, default=None, help="only the first N buyers (smoke runs)")
    cluster.add_argument(p)
    args = p.parse_args(argv)
    args.location = args.redis or args.out or defaults.snapshot
    return args


def load_signals_source(args: argparse.Namespace) -> tuple[list[str], str, object | None]:
    """The signals to publish, a description of where they came from, and the loaded model
    (None with ``--all-signals``)."""
    if args.all_signals:
        from features.registry import signal_names

        return list(signal_names()), "the registry", None
    from serving.live import load_model

    config = load_config(
        {"model_uri": args.model_uri, "mlflow_tracking_uri": args.tracking_uri, "watch_interval_s": 0}
    )
    rating = load_model(config)
    return list(rating.model.signal_names), f"{args.model_uri} (version {rating.version})", rating


def publish(
    data: Path,
    location: str,
    prefix: str,
    names: list[str],
    as_of,
    limit: int | None = None,
    rating=None,
    log=None,
    client: Any = None,
) -> SnapshotMeta:
    """Build the signals for all buyers as of ``as_of`` and write the snapshot.

    The new snapshot is committed (the file renamed into place, Redis ``meta`` switched)
    only after every shard was written; on any failure the writer is aborted (no temporary
    file, no uncommitted Redis rows) and the previous snapshot stays live.

    Args:
        data: Raw export directory.
        location: Parquet path or ``redis://`` URL.
        prefix: Redis key prefix.
        names: Signals to keep, in order.
        as_of: The instant (UTC ``pandas.Timestamp``).
        limit: Only the first ``limit`` buyers (in-process only).
        rating: The loaded rating (``rating.artifact.LoadedRating``); when given and the
            location is a file, each buyer's exact TreeSHAP reasons are stored too.
        log: Optional callable taking a progress line.
        client: A ``distributed.Client``: one task per buyer shard
            (:mod:`serving.publish.distributed`); ``None``: in this process.

    Returns:
        The committed snapshot's metadata.

    Raises:
        ValueError: If ``limit`` is given with a ``client``.
    """
    from features.build import build_shards

    if client is not None and limit is not None:
        raise ValueError("limit: not supported on a cluster (the first N buyers are a sequential cut)")
    exact = rating is not None and not is_redis(location)
    model = rating.model if exact else None
    writer = open_writer(
        location, prefix, names, as_of.isoformat(), model_identity(rating) if exact else None
    )
    try:
        if client is None:
            for frame in build_shards(data, [as_of], limit, log=log):
                writer.append(*snapshot_rows(frame, names, model))
        else:
            from serving.publish.distributed import publish_parts

            publish_parts(client, data, as_of, writer, names, model, log)
    except BaseException:
        try:
            writer.abort()
        except Exception as exc:  # noqa: BLE001 - the failure that led here is the one to report
            if log is not None:
                log(f"could not remove the uncommitted snapshot {writer.version}: {exc}")
        raise
    return writer.commit()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cluster is not None and args.buyers_limit is not None:
        print("--buyers-limit: not supported with --cluster", file=sys.stderr)
        return 2
    from features import io
    from features.validate import ContractError

    try:
        as_of = io.export_time(args.data, args.as_of)
    except ValueError as exc:
        print(f"--as-of: {exc}", file=sys.stderr)
        return 2
    try:  # first: the signal build reads the raw tables as the contract says
        io.validate_export(args.data)
    except (ContractError, ValueError) as exc:
        print(f"cannot publish from {args.data}: {exc}", file=sys.stderr)
        return 2
    try:
        names, source, rating = load_signals_source(args)
    except Exception as exc:  # noqa: BLE001 - report why the model could not be read
        print(f"cannot read the signal list from {args.model_uri}: {exc}", file=sys.stderr)
        print("train and promote a model first, or pass --all-signals", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        with cluster.connect(args.cluster) as client:
            meta = publish(
                args.data,
                args.location,
                args.prefix,
                names,
                as_of,
                args.buyers_limit,
                None if args.no_exact_reasons else rating,
                log=lambda m: print(m, file=sys.stderr),
                client=client,
            )
    except ContractError as exc:
        print(exc, file=sys.stderr)
        return 1
    except cluster.ClusterError as exc:
        return cluster.failed(exc, f"nothing published to {args.location} (the previous snapshot stays live)")
    print(
        f"published {meta.n_buyers} buyers x {len(names)} signals as of {meta.as_of} "
        f"(signals of {source}{', exact reasons' if meta.reasons_model else ''}) to {args.location}, "
        f"version {meta.version}, in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
