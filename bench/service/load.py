"""The load generator: a small asyncio HTTP/1.1 client on 127.0.0.1 (keep-alive connections, closed and open
loops, clients stalled mid-body), and one measured round of one target."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from dataclasses import dataclass

import numpy as np

from bench.service.servers import HOST, Server


@dataclass
class Result:
    """Latencies (seconds) and wall time of one run."""

    latencies: np.ndarray
    elapsed: float
    errors: int
    statuses: dict

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if len(self.latencies) else math.nan


def raw_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection that reopens when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(port: int, requests: list[bytes], concurrency: int) -> Result:
    """Send every request, ``concurrency`` at a time, each connection back to back."""
    latencies = np.empty(len(requests))
    statuses: dict[int, int] = {}
    errors = 0
    next_index = iter(range(len(requests)))

    async def user() -> None:
        nonlocal errors
        conn = Connection(port)
        for i in next_index:
            t = time.perf_counter()
            try:
                status = await conn.request(requests[i])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                errors += 1
                status = 0
            latencies[i] = time.perf_counter() - t
            statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return Result(latencies, time.perf_counter() - started, errors, statuses)


async def open_loop(port: int, requests: list[bytes], rate: float, max_connections: int = 64) -> Result:
    """Send request i at ``i / rate`` seconds; latency counts from that scheduled time."""
    latencies = np.empty(len(requests))
    statuses: dict[int, int] = {}
    pool: list[Connection] = [Connection(port) for _ in range(max_connections)]
    idle = asyncio.Queue()
    for conn in pool:
        idle.put_nowait(conn)
    errors = 0

    async def send(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await idle.get()
        try:
            status = await conn.request(requests[i])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            errors += 1
            status = 0
        latencies[i] = time.perf_counter() - scheduled
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait(conn)

    tasks = []
    started = time.perf_counter()
    for i in range(len(requests)):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in pool:
        conn.close()
    return Result(latencies, elapsed, errors, statuses)


async def hold_stalled(port: int, n: int, stop: asyncio.Event, body: bytes, api_key: str) -> int:
    """Keep ``n`` connections open, each stalled half-way through its body, until ``stop``.

    A connection the server answers (408 after its body timeout) or closes is replaced at
    once. Returns how many 408 answers were seen.
    """
    timeouts = 0
    head = (
        f"POST /v1/decisions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        nonlocal timeouts
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(head + body[: len(body) // 2])
            waiter = asyncio.ensure_future(reader.read(65536))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done and waiter.result().startswith(b"HTTP/1.1 408"):
                timeouts += 1
            waiter.cancel()
            stopper.cancel()
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)))
    return timeouts


async def open_loop_stalled(
    port: int, requests: list[bytes], rate: float, stalled: int, body: bytes, api_key: str
) -> Result:
    """``open_loop`` while ``stalled`` other clients hold connections open mid-body."""
    stop = asyncio.Event()
    holder = asyncio.ensure_future(hold_stalled(port, stalled, stop, body, api_key))
    await asyncio.sleep(0.5)  # all of them connected and stalled before measuring
    result = await open_loop(port, requests, rate)
    stop.set()
    result.statuses["408 (stalled clients)"] = await holder
    return result


@dataclass
class Target:
    """One server under test and the requests it gets (each request is sent once)."""

    name: str
    server: Server
    requests: list[bytes]
    closed_n: int
    stalled: int = 0
    cursor: int = 0

    def take(self, n: int) -> list[bytes]:
        chunk = self.requests[self.cursor : self.cursor + n]
        if len(chunk) < n:
            raise RuntimeError(f"{self.name}: ran out of prepared requests")
        self.cursor += n
        return chunk


def measure(target: Target, args, stall_body: bytes, api_key: str) -> dict:
    """One round for one target: the closed loop, then the open loops."""
    gc.collect()
    gc.disable()  # the load generator's own collections (tens of ms) must not count as latency
    try:
        port, n_open = target.server.port, int(args.rate * args.rate_seconds)
        closed = asyncio.run(closed_loop(port, target.take(target.closed_n), args.concurrency))
        stalled = None
        opened = asyncio.run(open_loop(port, target.take(n_open), args.rate))
        if target.stalled:  # at --rate, or at half the closed-loop throughput when it cannot sustain that
            rate = min(args.rate, closed.throughput / 2)
            stalled = asyncio.run(
                open_loop_stalled(
                    port,
                    target.take(int(rate * args.rate_seconds)),
                    rate,
                    target.stalled,
                    stall_body,
                    api_key,
                )
            )
            stalled.statuses["rate/s"] = round(rate)
    finally:
        gc.enable()
    return {"closed": closed, "open": opened, "stalled": stalled}
