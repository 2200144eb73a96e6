"""Benchmark the simulator, the signal build, the publish and training past one process: in-process vs 1 and 2 local Dask workers.

    python bench/bench_scale.py                                  # 125k, 250k, 500k, 1M buyers
    python bench/bench_scale.py --sizes 125000,250000 --steps build
    python bench/bench_scale.py --sizes 125000,250000 --steps publish
    python bench/bench_scale.py --sizes 125000,250000 --steps train
    python bench/bench_scale.py --sizes '' --steps demo          # the README demo: train + publish, then the first answer

For each size (at a fixed partition size, ``--shard-size``) and each mode, one child
process runs the step and reports its wall time and peak RSS: in-process, the child's own
peak; on a cluster, the peak of each worker process (``getrusage`` on the worker) and of
the client, and the CPU time (user + system) of the client and the workers: on a busy shared
machine the wall time of 2 workers says little, the CPU time says whether the work divides.
The cluster start-up is not in the wall time (printed apart). The signal build
reads the export the in-process simulator wrote; so does the publish (``serving.publish``
to a parquet snapshot as of the export time, with exact TreeSHAP reasons by a model sized
like production: every registry signal, 300 trees, fit on synthetic rows as
``bench_serving.py --synthetic`` does, ``bench.synthetic``; loading it is in the wall time); so does training (the whole of
``python training/train.py``, default parameters, no assembly cache, MLflow in a SQLite store in the
scratch folder; with ``--cluster`` the assembly and the rating's booster run on the workers, the rest
in the client). The goals (flat memory per worker, 2-worker speed-up, the demo's time and memory) are printed
after the table. The machine is shared: the load average at start is printed, and figures from a
busy machine are not comparable with a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("simulate", "build", "publish", "train")
DEMO_GOAL_S = 90  # train + publish on a quiet 2-core machine
DEMO_GOAL_MIB = 2048  # peak memory of each (its process tree)
TREE_SAMPLE_S = 0.2
GOAL_RSS_FLAT = 0.20
GOAL_SPEEDUP_2W = 1.7
GOAL_1W_VS_IN_PROCESS = 0.15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="125000,250000,500000,1000000", help="buyers, comma-separated")
    parser.add_argument("--workers", default="0,1,2", help="0 = in-process, N = N local workers")
    parser.add_argument(
        "--steps", default="simulate,build", help="simulate, build, publish, train and/or demo"
    )
    parser.add_argument(
        "--simulate-workers", default=None, help="modes of the simulate step (default: --workers)"
    )
    parser.add_argument("--shard-size", type=int, default=25_000, help="buyers per partition (default 25000)")
    parser.add_argument("--months", type=int, default=24, help="simulated months (default 24)")
    parser.add_argument("--as-of", default="2024-07-01,2024-12-01", help="snapshot dates of the build")
    parser.add_argument(
        "--tmp", type=Path, default=None, help="scratch folder (default: a temp dir, removed)"
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: a JSON job
    return parser.parse_args(argv)


def run_one(job: dict) -> dict:
    """Child process: run one step in one mode and return its figures."""
    from features import build, build_cli
    from simulator.config import RunConfig
    from simulator.write import write_export

    def step(client) -> None:
        if job["step"] == "simulate":
            cfg = RunConfig(buyers=job["buyers"], months=job["months"], seed=7, shard_size=job["shard_size"])
            write_export(cfg, Path(job["out"]), client=client)
        elif job["step"] == "publish":
            publish_step(job, client)
        elif job["step"] == "train":
            train_step(job, client)
        else:
            as_of = build.parse_dates(job["as_of"])
            build_cli.write_signals(
                job["data"], as_of, Path(job["out"]), client=client, processes=job.get("processes")
            )

    workers: list[float] = []
    worker_cpu: list[float] = []
    startup = 0.0
    if job["workers"] == 0:
        began = time.perf_counter()
        step(None)
        wall = time.perf_counter() - began
    else:
        from features import cluster

        began = time.perf_counter()
        with cluster.connect(f"local:{job['workers']}") as client:
            client.wait_for_workers(job["workers"])
            startup = time.perf_counter() - began
            began = time.perf_counter()
            step(client)
            wall = time.perf_counter() - began
            usage = client.run(_usage)
            workers = [u[0] for u in usage.values()]
            worker_cpu = [u[1] for u in usage.values()]
    own_mib, own_cpu = _usage()
    return {
        **job,
        "wall_s": wall,
        "startup_s": startup,
        "client_mib": own_mib,
        "worker_mib": workers,
        "cpu_s": own_cpu + sum(worker_cpu),
        "worker_cpu_s": worker_cpu,
    }


def publish_step(job: dict, client) -> None:
    """The publish step: ``job["data"]``'s snapshot as of its export time, with the exact reasons of
    the model at ``job["model"]``, written to ``job["out"]`` (on ``client``, or in-process)."""
    from features import io
    from serving.publish import run as publish

    args = publish.parse_args(["--data", job["data"], "--model-uri", job["model"], "--out", job["out"]])
    names, _, rating = publish.load_signals_source(args)
    as_of = io.export_time(args.data, None)
    publish.publish(args.data, job["out"], "", names, as_of, rating=rating, client=client)


def train_step(job: dict, client) -> None:
    """The train step: ``python training/train.py`` on ``job["data"]`` (on ``client``'s cluster, or
    in-process), its MLflow store a SQLite file in the folder ``job["out"]``."""
    from training import train

    store = Path(job["out"])
    store.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"  # this child process only
    argv = ["--data", job["data"], "--cache-dir", "", "--register-name", "bench", "--experiment", "bench"]
    if client is not None:
        argv += ["--cluster", client.scheduler.address]
    if train.main(argv) != 0:
        raise RuntimeError(f"train.py failed on {job['data']} (workers {job['workers']})")


def bench_demo(tmp: Path) -> dict:
    """The README's demo commands in an empty folder, as a new user runs them after ``pip install``:
    ``python training/train.py`` (simulates the default marketplace), ``python -m serving.publish
    --data data/market``, then ``python -m serving.http.demo`` until its first example decision is
    answered. Returns each command's wall time and peak memory (its process tree's, see
    ``_tree_peak_mib``, or its largest process's RSS from ``wait4`` if higher) and the
    seconds from the demo server's start to that answer."""
    folder = tmp / "demo"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SERVING_API_KEYS")}
    repo = Path(__file__).resolve().parent.parent
    figures: dict = {"step": "demo"}
    commands = {
        "train": [sys.executable, str(repo / "training" / "train.py")],
        "publish": [sys.executable, "-m", "serving.publish", "--data", "data/market"],
    }
    for name, command in commands.items():
        with open(folder / f"{name}.log", "w") as log:
            started = time.monotonic()
            proc = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
            tree_mib = _tree_peak_mib(proc)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(command)} failed; see {folder / f'{name}.log'}")
        figures[f"{name}_s"] = time.monotonic() - started
        figures[f"{name}_mib"] = max(tree_mib, usage.ru_maxrss / 1024)
        print(
            f"demo {name}: {figures[f'{name}_s']:.1f} s, peak memory {figures[f'{name}_mib']:.0f} MiB "
            f"(process tree PSS, sampled every {TREE_SAMPLE_S} s: {tree_mib:.0f}; largest process RSS: "
            f"{usage.ru_maxrss / 1024:.0f})",
            flush=True,
        )
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.http.demo", "--port", "8799"],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        call = next(line for line in server.stdout if line.startswith("curl -s -X POST"))
        while True:  # the server prints its calls before it listens
            answer = subprocess.run(["bash", "-c", call], capture_output=True, text=True, check=False)
            if '"decision"' in answer.stdout or time.monotonic() - started > 60:
                break
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)
    figures["first_answer_s"] = time.monotonic() - started
    print(
        f"demo serve: first decision answered {figures['first_answer_s']:.1f} s after start: {answer.stdout[:160]}"
    )
    return figures


def _tree_peak_mib(proc: subprocess.Popen) -> float:
    """The highest sum of PSS over ``proc`` and its descendants (forked build children, any helper
    process), sampled every ``TREE_SAMPLE_S`` seconds until ``proc`` exits (left for ``wait4`` to
    reap). ``wait4``'s ``ru_maxrss`` is the largest single process, not the machine's total;
    PSS shares copy-on-write pages between the forks instead of counting them in each."""
    import psutil

    root, peak = psutil.Process(proc.pid), 0
    while root.status() != psutil.STATUS_ZOMBIE:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child that ended between the listing and the read
                total += p.memory_full_info().pss
        peak = max(peak, total)
        time.sleep(TREE_SAMPLE_S)
    return peak / 2**20


def print_demo_goal(demo: dict) -> None:
    """The demo goal: train + publish within ``DEMO_GOAL_S`` seconds, each within ``DEMO_GOAL_MIB``."""
    total = demo["train_s"] + demo["publish_s"]
    fast = "met" if total <= DEMO_GOAL_S else "MISSED"
    print(
        f"  demo: train {demo['train_s']:.1f} s + publish {demo['publish_s']:.1f} s = {total:.1f} s "
        f"(goal <= {DEMO_GOAL_S} s on a quiet machine): {fast}; first answer {demo['first_answer_s']:.1f} s after the server starts"
    )
    for name in ("train", "publish"):
        lean = "met" if demo[f"{name}_mib"] <= DEMO_GOAL_MIB else "MISSED"
        print(f"  demo: {name} peak memory {demo[f'{name}_mib']:.0f} MiB (goal <= {DEMO_GOAL_MIB}): {lean}")


def bench_publish(common: dict, data: Path, tmp: Path, modes: list[int]) -> list[dict]:
    """Time the publish of ``data`` in each mode (one child each), printing each line; returns the rows."""
    model = str(tmp / "model" / "model")  # one production-sized model for every size and mode
    if not Path(model).exists():
        from bench.synthetic import synthetic_setup

        model = synthetic_setup(tmp / "model", 1)[0]
    rows = []
    for workers in modes:
        out = tmp / f"snapshot_{common['buyers']}_{workers}.parquet"
        job = {**common, "step": "publish", "workers": workers, "data": str(data), "out": str(out)}
        rows.append(child({**job, "model": model}))
        print_table(rows[-1:])
        sys.stdout.flush()
        out.unlink()
    return rows


def _usage() -> tuple[float, float]:
    """This process's peak RSS (MiB) and CPU time (user + system, s) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def child(job: dict) -> dict:
    """Run ``job`` in a fresh child process (so peaks are its own) and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(job)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak(row: dict) -> float:
    """Peak RSS per process doing the work: the worker maximum on a cluster, else the process."""
    return max(row["worker_mib"]) if row["worker_mib"] else row["client_mib"]


def _mode(row: dict) -> str:
    """ "in-process" (forked processes on every core), "1 process" (in-process, one process) or "N workers"."""
    if row["workers"] == 0:
        return "1 process" if row.get("processes") == 1 else "in-process"
    return f"{row['workers']} worker" + "s" * (row["workers"] > 1)


def print_table(rows: list[dict]) -> None:
    """One line per (step, size, mode)."""
    print(
        f"{'step':<9} {'buyers':>9} {'parts':>5} {'mode':<11} {'wall s':>8} {'buyers/s':>9} "
        f"{'peak RSS/worker MiB':>20} {'client MiB':>10} {'CPU s (workers)':>18} {'start s':>7}"
    )
    for r in rows:
        mode = _mode(r)
        per_worker = (
            "/".join(f"{m:.0f}" for m in r["worker_mib"]) if r["worker_mib"] else f"{r['client_mib']:.0f}"
        )
        cpu = f"{r['cpu_s']:.0f}"
        if r["worker_cpu_s"]:
            cpu += " (" + "/".join(f"{c:.0f}" for c in r["worker_cpu_s"]) + ")"
        print(
            f"{r['step']:<9} {r['buyers']:>9,} {r['parts']:>5} {mode:<11} {r['wall_s']:>8.1f} "
            f"{r['buyers'] / r['wall_s']:>9,.0f} {per_worker:>20} {r['client_mib']:>10.0f} {cpu:>18} {r['startup_s']:>7.1f}"
        )


def print_goals(rows: list[dict]) -> None:
    """The scale goals, each with the figures it is judged on (or why it was not measured)."""

    def find(step: str, buyers: int, workers: int, processes: int | None = None) -> dict | None:
        key = (step, buyers, workers, processes)
        return next(
            (r for r in rows if (r["step"], r["buyers"], r["workers"], r.get("processes")) == key), None
        )

    sizes = sorted({r["buyers"] for r in rows})
    print("goals:")
    for step in STEPS:
        for workers in (1, 2):
            base, top = find(step, 250_000, workers), find(step, sizes[-1], workers) if sizes else None
            if base is None or top is None or top is base:
                print(
                    f"  {step}: peak RSS per worker flat 250k -> largest ({workers}w): not measured (needs 250k and a larger size)"
                )
                continue
            change = _peak(top) / _peak(base) - 1
            verdict = "met" if abs(change) <= GOAL_RSS_FLAT else "MISSED"
            print(
                f"  {step}: peak RSS per worker 250k -> {top['buyers']:,} ({workers}w): "
                f"{_peak(base):.0f} -> {_peak(top):.0f} MiB ({change:+.0%}; goal within {GOAL_RSS_FLAT:.0%}): {verdict}"
            )
    for buyers in sizes:
        one, two = find("build", buyers, 1), find("build", buyers, 2)
        if one and two:
            speedup = one["wall_s"] / two["wall_s"]
            verdict = "met" if speedup >= GOAL_SPEEDUP_2W else "MISSED"
            print(
                f"  build {buyers:,}: 2 workers / 1 worker throughput {speedup:.2f}x "
                f"(goal >= {GOAL_SPEEDUP_2W}x, {two['parts']} parts): {verdict}"
            )
        for inproc in (find("build", buyers, 0, 1), find("build", buyers, 0)):
            if one and inproc:
                slower = one["wall_s"] / inproc["wall_s"] - 1
                verdict = "met" if slower <= GOAL_1W_VS_IN_PROCESS else "MISSED"
                note = (
                    "" if inproc.get("processes") == 1 else "; a process per core against one: for reference"
                )
                print(
                    f"  build {buyers:,}: 1 worker vs {_mode(inproc)} wall {slower:+.0%} "
                    f"(goal within {GOAL_1W_VS_IN_PROCESS:.0%}{note}): {verdict}"
                )


def bench(args: argparse.Namespace, tmp: Path) -> None:
    """Run every (size, step, mode) in turn, printing each line as it completes, then the table."""
    load = os.getloadavg()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [int(w) for w in args.workers.split(",")]
    sim_workers = [int(w) for w in (args.simulate_workers or args.workers).split(",")]
    steps = [s for s in args.steps.split(",") if s]
    print(
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"on {os.cpu_count()} cores (shared machine)"
    )
    print(
        f"sizes {sizes}, partition (shard) size {args.shard_size:,} buyers, {args.months} months, "
        f"build as of {args.as_of}; modes {modes}, simulate {sim_workers} (0 = in-process)",
        flush=True,
    )
    rows = []
    demo = bench_demo(tmp) if "demo" in steps else None
    for buyers in sizes:
        data = tmp / f"market_{buyers}"
        parts = -(-buyers // args.shard_size)
        common = {"buyers": buyers, "parts": parts, "months": args.months, "shard_size": args.shard_size}
        # the in-process simulator writes the export the builds read, whether or not it is timed
        sim_modes = sim_workers if "simulate" in steps else []
        for workers in sorted(set(sim_modes) | {0}, key=lambda w: w != 0):
            out = data if workers == 0 else tmp / f"sim_{buyers}_{workers}"
            row = child({**common, "step": "simulate", "workers": workers, "out": str(out)})
            if workers in sim_modes:
                rows.append(row)
                print_table([row])
                sys.stdout.flush()
            if out != data:
                shutil.rmtree(out)
        if "build" in steps:
            # in-process on every core (forked processes), and in one process like one worker
            build_modes = [(w, p) for w in modes for p in ((None, 1) if w == 0 else (None,))]
            for workers, processes in build_modes:
                out = tmp / f"signals_{buyers}_{workers}.parquet"
                job = {**common, "step": "build", "workers": workers, "data": str(data), "out": str(out)}
                row = child({**job, "as_of": args.as_of, "processes": processes})
                rows.append(row)
                print_table([row])
                sys.stdout.flush()
                out.unlink()
        if "publish" in steps:
            rows += bench_publish(common, data, tmp, modes)
        if "train" in steps:
            for workers in modes:
                out = tmp / f"train_{buyers}_{workers}"
                rows.append(
                    child({**common, "step": "train", "workers": workers, "data": str(data), "out": str(out)})
                )
                print_table(rows[-1:])
                sys.stdout.flush()
                shutil.rmtree(out)
        shutil.rmtree(data)
        print(flush=True)
    print(f"load average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_table(rows)
    print_goals(rows)
    if demo is not None:
        print_demo_goal(demo)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--one``, one job in this child process); exit code 0."""
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
        bench(args, args.tmp)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        bench(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
