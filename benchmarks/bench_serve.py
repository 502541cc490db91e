"""hera-serve on this CPU, loopback only: proxy overhead (p50/p99; per request, the client's latency minus the time
the proxy spent in upstream calls, its `x-hera-upstream-ms` header), with the state embedding (every request a new
state) and without it (repeated states: the router's memo), at 1 and 16 concurrent
clients; throughput; the router forward alone; the served cloud share against --cloud-share on a shifted mix.

The upstreams are two stub OpenAI endpoints (uvicorn, answering at once), so the numbers are the proxy's own cost.
The proxy and the stubs run in processes of their own, as in a deployment (in one process their threads would share
the client's GIL);
with `--device-upstream llama-server` the device is a real local model instead (llama.cpp's OpenAI-compatible server
with the shipped Gemma-3-270M, started here on loopback), which shows the proxy's cost next to a real model's.

    python benchmarks/bench_serve.py --checkpoint runs/il/<run>/checkpoint --requests 500
    python benchmarks/bench_serve.py --checkpoint runs/il/<run>/checkpoint --device-upstream llama-server \
        --requests 40 --concurrency 1 4 --out benchmarks/results/cpu/serve_llama.json
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli


@dataclasses.dataclass(frozen=True)
class BenchServeConfig:
    """Time the step-routing proxy against stub upstreams on loopback."""

    checkpoint: Path
    """A router checkpoint (its encoder must be available offline)."""
    requests: int = 500
    concurrency: tuple[int, ...] = (1, 16)
    cloud_share: float = 0.3
    device_upstream: Literal["stub", "llama-server"] = "stub"
    """stub: answers at once (the proxy's own cost); llama-server: Gemma-3-270M through llama_cpp.server."""
    stub_delay_ms: float = 0.0
    """Mean time a stub upstream takes to answer, each reply drawn uniformly from 0.5x-1.5x of it (seeded), as a real
    model's reply times vary (e.g. Gemma-3-270M through llama.cpp, see RESULTS.md). 0 = at once: 16 clients with no
    think time then saturate the CPU and latency measures the queue; a fixed delay would keep 16 clients arriving
    together."""
    max_tokens: int = 8
    """Reply tokens asked of the upstreams (what a real model's reply time depends on)."""
    llama_threads: int = 1
    """llama.cpp threads of the llama-server upstream."""
    shifted_requests: int = 1200
    """Requests of the shifted (hard) mix in the cloud-share check, after 300 of the easy one; the share is read over
    those after the first 200 (once the controller's window holds only the new mix), and per 200."""
    proxy_cpus: tuple[int, ...] = ()
    """CPU cores the proxy process runs on (os.sched_setaffinity); the client and the upstreams then run on the
    other cores, so the proxy is measured on cores of its own, as on a serving machine. Empty: no pinning, everything
    shares the machine's cores (on the 2-core box the client and stubs compete with the proxy)."""
    client_processes: bool = False
    """Each client of the load part a process of its own sending its requests one after another (independent agents),
    instead of one asyncio client holding `concurrency` requests: at 16 clients that one client's event loop adds a
    queue of its own to the measured tail."""
    parts: tuple[Literal["load", "share"], ...] = ("load", "share")
    """load: latency and throughput at each concurrency; share: the served cloud share on a shifted mix."""
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "serve.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stub_app(name: str, delay_s: float = 0.0):
    from fastapi import FastAPI

    app = FastAPI()
    draws = np.random.default_rng(len(name))

    @app.post("/v1/chat/completions")
    async def complete(body: dict):
        from fastapi.responses import JSONResponse

        wait_s = delay_s * draws.uniform(0.5, 1.5) if delay_s else 0.0
        if wait_s:
            await asyncio.sleep(wait_s)
        # the reply says how long the stub slept, so a direct call's latency minus it is what the bench itself
        # (client, loopback, the stub's HTTP stack) costs: the floor under the proxy's overhead
        return JSONResponse({"id": name, "object": "chat.completion", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": f"Action: {name} move"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}, headers={"x-stub-sleep-ms": f"{wait_s * 1e3:.3f}"})

    return app


def _serve_stub(name: str, port: int, delay_s: float = 0.0) -> None:
    import uvicorn

    uvicorn.run(_stub_app(name, delay_s), host="127.0.0.1", port=port, log_level="error")


def _serve_proxy(port: int, serve_kwargs: dict, cpus: tuple[int, ...] = ()) -> None:
    if cpus:  # before torch and jax start their thread pools, which size themselves to the allowed cores
        os.sched_setaffinity(0, cpus)
    from hera_jax.serve.app import ServeConfig, serve

    serve(ServeConfig(port=port, **serve_kwargs))  # what `hera-serve` runs


def _start(target, port: int, *args, timeout_s: float = 300.0):
    """Run `target(*args)` (a uvicorn server on `port`) in a fresh process; return it once the port answers."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    process.start()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if not process.is_alive() or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{target.__name__} on port {port} did not start") from None
            time.sleep(0.1)


def _cpu_seconds(process) -> float:
    """User + system CPU time of a child process so far."""
    import psutil

    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def _request(i: int, unique: bool, hard: bool, max_tokens: int = 8) -> dict:
    room = f"room {i}" if unique else "room 0"
    obs = f"You are in {room}. " + ("A locked chest, a missing key, a dark corridor." if hard else "A table.")
    return {"model": "hera", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Task: tidy the house.\n{obs}"}]}


def _measured(reply, t0: float, first: bool) -> tuple[float, str | None, float, float, bool]:
    """(latency s, route, upstream s, decision s, first) of one reply. Upstream: through the proxy, its upstream
    calls (`x-hera-upstream-ms`); direct to a stub, the stub's sleep. `first`: a client's first request, sent at the
    same instant as every other client's (the start burst)."""
    reply.raise_for_status()
    latency = time.perf_counter() - t0
    upstream = float(reply.headers.get("x-hera-upstream-ms", reply.headers.get("x-stub-sleep-ms", "nan"))) / 1000
    return latency, reply.headers.get("x-hera-route"), upstream, float(reply.headers.get("x-hera-decision-ms",
                                                                                         "nan")) / 1000, first


def _p99_ms(seconds: np.ndarray) -> float:
    """p99 in ms; NaN when nothing is left (e.g. --requests no more than the clients: every request a first one)."""
    return float(np.percentile(seconds, 99) * 1e3) if seconds.size else float("nan")


def _collect(measured: list, wall: float):
    latencies, routes, upstream, decision, first = zip(*measured) if measured else ((), (), (), (), ())
    return (np.asarray(latencies), list(routes), wall, np.asarray(upstream), np.asarray(decision),
            np.asarray(first, bool))


async def _run(url: str, count: int, concurrency: int, unique: bool, offset: int, hard_after: int | None = None,
               max_tokens: int = 8, model: str = "hera"):
    import httpx

    limit = asyncio.Semaphore(concurrency)
    measured = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def one(i):
            async with limit:
                t0 = time.perf_counter()
                body = _request(offset + i, unique, hard_after is not None and i >= hard_after, max_tokens)
                reply = await client.post("/chat/completions", json={**body, "model": model},
                                          headers={"x-hera-episode": f"bench-{offset + i}"})
                measured.append(_measured(reply, t0, i < concurrency))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - started
    return _collect(measured, wall)


def _client_process(url: str, indices: list[int], unique: bool, offset: int, max_tokens: int, model: str,
                    start_at: float) -> tuple[list, float]:
    """One client of `_run_processes`: its requests one after another with a blocking client; (measured, CPU s)."""
    import httpx

    measured = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/models")  # connect before the clock starts, as the async client's pool is warm by then
        time.sleep(max(start_at - time.time(), 0.0))
        cpu = time.process_time()
        for position, i in enumerate(indices):
            t0 = time.perf_counter()
            reply = client.post("/chat/completions", json={**_request(offset + i, unique, False, max_tokens),
                                                           "model": model}, headers={"x-hera-episode": f"bench-{offset + i}"})
            measured.append(_measured(reply, t0, position == 0))
        return measured, time.process_time() - cpu


def _run_processes(pool, url: str, count: int, concurrency: int, unique: bool, offset: int, max_tokens: int,
                   model: str):
    """`_run` with each client a process of its own (`--client-processes`)."""
    start_at = time.time() + 1.0  # every client has connected and is waiting by then
    jobs = [pool.apply_async(_client_process, (url, list(range(k, count, concurrency)), unique, offset, max_tokens,
                                               model, start_at)) for k in range(concurrency)]
    results = [job.get() for job in jobs]
    wall = max(time.time() - start_at, 1e-9)
    measured = [m for part, _ in results for m in part]
    return _collect(measured, wall), sum(cpu for _, cpu in results)


def main(cfg: BenchServeConfig) -> dict:
    from hera_jax.agents.models import start_llama_server
    from hera_jax.serve.router_api import Router

    ports = {name: _free_port() for name in ("device", "cloud", "proxy", "proxy_share")}
    if cfg.proxy_cpus:  # the client, and the upstreams started from here, keep off the proxy's cores
        others = set(os.sched_getaffinity(0)) - set(cfg.proxy_cpus)
        if not others or not set(cfg.proxy_cpus) <= set(os.sched_getaffinity(0)):
            raise SystemExit(f"--proxy-cpus {cfg.proxy_cpus}: must be a proper subset of this process's cores "
                             f"{sorted(os.sched_getaffinity(0))}")
        os.sched_setaffinity(0, others)
    real_device = cfg.device_upstream == "llama-server"
    llama = start_llama_server(ports["device"], cfg.llama_threads) if real_device else None
    servers = [_start(_serve_stub, ports[name], name, ports[name], cfg.stub_delay_ms / 1000)
               for name in (("cloud",) if real_device else ("device", "cloud"))]
    base = dict(checkpoint=cfg.checkpoint, device_base_url=f"http://127.0.0.1:{ports['device']}/v1",
                cloud_base_url=f"http://127.0.0.1:{ports['cloud']}/v1", cloud_api_key_env="")
    proxy = _start(_serve_proxy, ports["proxy"], ports["proxy"], dict(base, log_dir=Path(tempfile.mkdtemp())),
                   cfg.proxy_cpus)
    servers.append(proxy)
    # one request first, not counted: it loads the encoder (seconds), which no steady-state request pays
    asyncio.run(_run(f"http://127.0.0.1:{ports['proxy']}/v1", 1, 1, True, -1, max_tokens=cfg.max_tokens,
                     model="hera-1.0"))
    pool = (multiprocessing.get_context("spawn").Pool(max(cfg.concurrency))
            if cfg.client_processes and "load" in cfg.parts else None)

    def load_run(url: str, concurrency: int, unique: bool, offset: int, model: str):
        """(measured, client CPU s) of `cfg.requests` requests from `concurrency` clients."""
        if pool is not None:
            return _run_processes(pool, url, cfg.requests, concurrency, unique, offset, cfg.max_tokens, model)
        cpu = time.process_time()
        measured = asyncio.run(_run(url, cfg.requests, concurrency, unique, offset, max_tokens=cfg.max_tokens,
                                    model=model))
        return measured, time.process_time() - cpu

    results = []
    offset = 0
    for concurrency in cfg.concurrency if "load" in cfg.parts else ():
        (direct, _, _, direct_sleep, _, direct_first), _ = load_run(f"http://127.0.0.1:{ports['device']}/v1", concurrency, True,
                                                      offset, "device")
        for unique, what in ((True, "with embedding (new states)"), (False, "without (repeated state)")):
            # the proxy's device route only (the direct calls above show what the same stub costs without it)
            proxy_cpu = _cpu_seconds(proxy)
            (lat, routes, wall, upstream, decision, first), client_cpu = load_run(
                f"http://127.0.0.1:{ports['proxy']}/v1", concurrency, unique, offset, "hera-1.0")
            proxy_cpu = _cpu_seconds(proxy) - proxy_cpu
            assert set(routes) == {"device"}, set(routes)
            offset += cfg.requests
            results.append({"concurrency": concurrency, "case": what, "requests": cfg.requests,
                            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
                            "overhead_p50_ms": float(np.percentile(lat - upstream, 50) * 1e3),
                            "overhead_p99_ms": float(np.percentile(lat - upstream, 99) * 1e3),
                            # request received -> route chosen, inside the proxy (embedding, if any, and forward)
                            "decision_p50_ms": float(np.percentile(decision, 50) * 1e3),
                            "decision_p99_ms": float(np.percentile(decision, 99) * 1e3),
                            "requests_per_s": cfg.requests / wall,
                            "proxy_cpu_ms_per_request": proxy_cpu / cfg.requests * 1e3,
                            "client_cpu_ms_per_request": client_cpu / cfg.requests * 1e3,
                            "direct_p50_ms": float(np.percentile(direct, 50) * 1e3),
                            "direct_p99_ms": float(np.percentile(direct, 99) * 1e3),
                            # the same client straight to the stub, minus the stub's sleep: the bench's own floor
                            "direct_overhead_p50_ms": float(np.percentile(direct - direct_sleep, 50) * 1e3),
                            "direct_overhead_p99_ms": float(np.percentile(direct - direct_sleep, 99) * 1e3),
                            # without each client's first request: all clients send it at the same instant, a
                            # burst of `concurrency` requests that steady traffic does not have
                            "steady_overhead_p99_ms": _p99_ms((lat - upstream)[~first]),
                            "steady_direct_overhead_p99_ms": _p99_ms((direct - direct_sleep)[~direct_first]),
                            "first_request_overhead_max_ms": float(np.max((lat - upstream)[first]) * 1e3)})
    # the router forward alone, on one cached feature row (here, with the client idle)
    router = Router.load(cfg.checkpoint, features_cache=Path(tempfile.mkdtemp()))
    features = router.scorer.features(["Task: x\nNow: y"], np.zeros(1))
    router.scorer.p_cloud(features)
    t0 = time.perf_counter()
    for _ in range(200):
        router.scorer.p_cloud(features)
    forward_ms = (time.perf_counter() - t0) / 200 * 1e3
    served_share = {}
    if "share" in cfg.parts:  # the online cloud share on a shifted mix: easy states, then hard ones
        servers.append(_start(_serve_proxy, ports["proxy_share"], ports["proxy_share"],
                              dict(base, log_dir=Path(tempfile.mkdtemp()), cloud_share=cfg.cloud_share),
                              cfg.proxy_cpus))
        total = 300 + cfg.shifted_requests
        _, routes, *_ = asyncio.run(_run(f"http://127.0.0.1:{ports['proxy_share']}/v1", total, 1, True, 10**6,
                                           hard_after=300))
        cloud = np.asarray([r == "cloud" for r in routes], float)
        after = cloud[500:]  # once the window (200) holds only the shifted mix
        served_share = {"first_mix_last_200": float(cloud[100:300].mean()),
                        "shifted_mix_first_200": float(cloud[300:500].mean()),
                        "shifted_mix_after_200": float(after.mean()),
                        "shifted_mix_after_200_requests": int(after.size),
                        "shifted_mix_after_200_binomial_sd": float(np.sqrt(cfg.cloud_share * (1 - cfg.cloud_share)
                                                                           / max(after.size, 1))),
                        "shifted_mix_per_200": [float(w.mean())
                                                for w in np.array_split(after, max(after.size // 200, 1))]}
    if pool is not None:
        pool.terminate()
    for server in servers:
        server.terminate()
        server.join(timeout=30)
    if llama is not None:
        llama.terminate()
        llama.wait(timeout=30)
    upstreams = ("device = Gemma-3-270M via llama_cpp.server, cloud = stub" if real_device
                 else f"stub upstreams answering in {cfg.stub_delay_ms:g} ms")
    if cfg.proxy_cpus:
        upstreams += f"; proxy on cores {list(cfg.proxy_cpus)}, client and upstreams on the other {len(others)}"
    if cfg.client_processes:
        upstreams += "; each client a process of its own"
    print_table(f"hera-serve proxy on loopback, {upstreams} (CPU)",
                ["clients", "case", "p50 ms", "p99 ms", "overhead p50 ms", "overhead p99 ms",
                 "overhead p99 ms, first requests left out: proxy / direct", "req/s",
                 "decision p50 / p99 ms", "direct p50 / p99 ms", "direct overhead p50 / p99 ms",
                 "CPU ms a request: proxy / client"],
                [[r["concurrency"], r["case"], r["p50_ms"], r["p99_ms"], r["overhead_p50_ms"], r["overhead_p99_ms"],
                  f"{r['steady_overhead_p99_ms']:.2f} / {r['steady_direct_overhead_p99_ms']:.2f}",
                  r["requests_per_s"], f"{r['decision_p50_ms']:.1f} / {r['decision_p99_ms']:.1f}",
                  f"{r['direct_p50_ms']:.1f} / {r['direct_p99_ms']:.1f}",
                  f"{r['direct_overhead_p50_ms']:.2f} / {r['direct_overhead_p99_ms']:.2f}",
                  f"{r['proxy_cpu_ms_per_request']:.2f} / {r['client_cpu_ms_per_request']:.2f}"] for r in results])
    print(f"router forward alone: {forward_ms:.3f} ms; served cloud share (target {cfg.cloud_share:g}): "
          f"{served_share}")
    payload = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()},
               "results": results, "forward_ms": forward_ms, "served_cloud_share": served_share,
               "environment": environment()}
    write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    run_cli(main, BenchServeConfig)
