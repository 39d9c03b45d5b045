"""CPU per notification POST: HTTP clients from the field against the same loopback receiver.

`python bench/notify_client.py [--posts 2000] [--batch 20]`: no services needed. The receiver
(`bench.common.Receiver`) runs in its own process, so `time.process_time` here is the client's
CPU only. Every candidate POSTs the same notification body (the one `rules.payload` builds) with
an `Idempotency-Key` header over keep-alive connections, in batches of `--batch` like the sink's
`write_batch`. `sink_*` rows run the notification sink itself (`NotifyPartition.write_batch`:
payload, policy, metrics, client), the others a bare client loop. One JSON line per candidate:
CPU and wall time per post, with the ratio to the first row (httpx.AsyncClient as the sink used it).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Receiver, emit

ROUNDS = 3  # the median of 3 rounds per candidate: the machine is shared


def serve(port_q: Any, stop: Any) -> None:
    r = Receiver()
    port_q.put(r.server_address[1])
    stop.wait()


def event(n: int) -> Any:
    from tests.support.events import alert_event, instance_labels

    return alert_event(
        fingerprint=f"fp{n:06d}",
        labels=instance_labels(f"db-{n}"),
        annotations=(("summary", f"High CPU on db-{n}"),),
        message_id=f"msg-{n:06d}",
    )


Batch = Callable[[list[Any]], None]


def httpx_async(url: str) -> tuple[Batch, Callable[[], None]]:
    """httpx.AsyncClient driven as the sink drove it: one loop, gather per batch, json=."""
    import httpx

    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(
        timeout=5.0, limits=httpx.Limits(max_connections=8, max_keepalive_connections=8)
    )
    sem = asyncio.Semaphore(8)

    async def one(p: dict[str, Any]) -> None:
        async with sem:
            r = await client.post(url + "/alerts", json=p, headers={"Idempotency-Key": p["message_id"]})
            assert r.status_code < 300

    async def batch(ps: list[Any]) -> None:
        await asyncio.gather(*(one(p) for p in ps))

    return (lambda ps: loop.run_until_complete(batch(ps))), lambda: loop.run_until_complete(client.aclose())


def httpx_sync(url: str) -> tuple[Batch, Callable[[], None]]:
    """httpx.Client (what receivers/http.py used), one post after the other."""
    import httpx

    client = httpx.Client(timeout=5.0, follow_redirects=False)

    def batch(ps: list[Any]) -> None:
        for p in ps:
            assert (
                client.post(url + "/alerts", json=p, headers={"Idempotency-Key": p["message_id"]}).status_code
                < 300
            )

    return batch, client.close


def http_client(url: str) -> tuple[Batch, Callable[[], None]]:
    """The standard library's keep-alive http.client connection, orjson body."""
    import orjson

    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5.0)

    def batch(ps: list[Any]) -> None:
        for p in ps:
            conn.request(
                "POST", "/alerts", orjson.dumps(p),
                {"Content-Type": "application/json", "Idempotency-Key": p["message_id"]},
            )  # fmt: skip
            r = conn.getresponse()
            r.read()
            assert r.status < 300

    return batch, conn.close


def urllib3_pool(url: str) -> tuple[Batch, Callable[[], None]]:
    """urllib3.HTTPConnectionPool (keep-alive, no retries, no redirects), orjson body."""
    import orjson
    import urllib3

    pool = urllib3.connection_from_url(url, maxsize=8, timeout=urllib3.Timeout(5.0), retries=False)

    def batch(ps: list[Any]) -> None:
        for p in ps:
            r = pool.urlopen(
                "POST", "/alerts", body=orjson.dumps(p),
                headers={"Content-Type": "application/json", "Idempotency-Key": p["message_id"]},
                redirect=False, retries=False,
            )  # fmt: skip
            assert r.status < 300

    return batch, pool.close


def aiohttp_session(url: str) -> tuple[Batch, Callable[[], None]] | None:
    """aiohttp.ClientSession on one loop, gather per batch (only when importable)."""
    try:
        import aiohttp
    except ImportError:
        return None
    import orjson

    loop = asyncio.new_event_loop()

    async def make() -> Any:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=5.0)
        )

    session = loop.run_until_complete(make())
    sem = asyncio.Semaphore(8)

    async def one(p: dict[str, Any]) -> None:
        async with sem:
            headers = {"Content-Type": "application/json", "Idempotency-Key": p["message_id"]}
            async with session.post(url + "/alerts", data=orjson.dumps(p), headers=headers,
                                    allow_redirects=False) as r:  # fmt: skip
                await r.read()
                assert r.status < 300

    async def batch(ps: list[Any]) -> None:
        await asyncio.gather(*(one(p) for p in ps))

    return (lambda ps: loop.run_until_complete(batch(ps))), lambda: loop.run_until_complete(session.close())


def http1_poster(url: str) -> tuple[Batch, Callable[[], None]]:
    """The sink's own client (connectors/notify/http1.py) bare: one loop, gather per batch."""
    import orjson

    from connectors.notify.http1 import Http1Poster

    loop = asyncio.new_event_loop()
    poster = Http1Poster(5.0, 8)
    sem = asyncio.Semaphore(8)

    async def one(p: dict[str, Any]) -> None:
        async with sem:
            r = await poster.post(url + "/alerts", orjson.dumps(p), {"Idempotency-Key": p["message_id"]})
            assert r.status < 300

    async def batch(ps: list[Any]) -> None:
        await asyncio.gather(*(one(p) for p in ps))

    return (lambda ps: loop.run_until_complete(batch(ps))), lambda: loop.run_until_complete(poster.aclose())


class AiohttpPoster:
    """The sink's poster before connectors/notify/http1.py (aiohttp.ClientSession), kept here as
    the same-run 'before' of `sink_write_batch`."""

    def __init__(self) -> None:
        self._session: Any = None

    async def post(self, url: str, body: bytes, headers: Any) -> Any:
        import aiohttp

        from connectors.notify.sink import Reply

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8),
                timeout=aiohttp.ClientTimeout(total=5.0),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        headers = {"Content-Type": "application/json", **headers}
        async with self._session.post(url, data=body, allow_redirects=False, headers=headers) as r:
            await r.read()
            return Reply(r.status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def sink_aiohttp(url: str) -> tuple[Batch, Callable[[], None]] | None:
    """The sink on aiohttp (its client before connectors/notify/http1.py): the same-run 'before'."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    return sink(url, poster=AiohttpPoster)


def sink_httpx(url: str) -> tuple[Batch, Callable[[], None]]:
    """The sink on httpx.AsyncClient (its client before aiohttp): the same-run 'before'."""
    import httpx

    return sink(url, httpx.AsyncHTTPTransport())


def sink(url: str, transport: Any = None, poster: Any = None) -> tuple[Batch, Callable[[], None]]:
    """The notification sink as the flows build it (`NotifyPartition.write_batch` on events)."""
    from prometheus_client import CollectorRegistry

    from connectors.notify.policy import NotifyConfig
    from connectors.notify.sink import NotifyDeps, NotifyPartition
    from connectors.ops.metrics import Metrics

    lost: list[Any] = []
    part = NotifyPartition(
        NotifyConfig(url + "/alerts"),
        NotifyDeps(
            on_undeliverable=lambda e, p, err: lost.append(err),
            metrics=Metrics(CollectorRegistry()),
            transport=transport,
            poster=poster,
        ),
    )

    def batch(events: list[Any]) -> None:
        part.write_batch(events)
        if lost:
            raise SystemExit(f"sink lost notifications: {lost[:3]}")

    return batch, part.close


def run(make: Callable[[str], Any], url: str, items: list[Any], batch: int) -> tuple[float, float] | None:
    built = make(url)
    if built is None:
        return None
    send, close = built
    send(items[:batch])  # connect and warm up outside the measure
    cpu, wall = [], []
    try:
        for _ in range(ROUNDS):
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(0, len(items), batch):
                send(items[i : i + batch])
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    finally:
        close()
    return statistics.median(cpu) / len(items), statistics.median(wall) / len(items)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=20)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    port_q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(port_q, stop), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{port_q.get(timeout=30)}"
        from rules.payload import notification_payload

        events = [event(n) for n in range(a.posts)]
        payloads = [json.loads(json.dumps(notification_payload(e))) for e in events]
        candidates: list[tuple[str, Callable[[str], Any], list[Any]]] = [
            ("httpx_async_client", httpx_async, payloads),
            ("httpx_client", httpx_sync, payloads),
            ("http_client_keepalive", http_client, payloads),
            ("urllib3_pool", urllib3_pool, payloads),
            ("aiohttp_session", aiohttp_session, payloads),
            ("http1_poster", http1_poster, payloads),
            ("sink_write_batch_httpx", sink_httpx, events),
            ("sink_write_batch_aiohttp", sink_aiohttp, events),
            ("sink_write_batch", sink, events),
        ]
        base: float | None = None
        for name, make, items in candidates:
            got = run(make, url, items, a.batch)
            if got is None:
                emit({"bench": "notify_client_cpu", "client": name, "skipped": "not installed"})
                continue
            cpu, wall = got
            base = base or cpu
            emit(
                {
                    "bench": "notify_client_cpu",
                    "client": name,
                    "posts": a.posts,
                    "batch": a.batch,
                    "cpu_us_per_post": round(cpu * 1e6, 1),
                    "wall_us_per_post": round(wall * 1e6, 1),
                    "cpu_ratio_to_httpx_async": round(cpu / base, 3),
                }
            )
    finally:
        stop.set()
        server.join(10)


if __name__ == "__main__":
    main()
