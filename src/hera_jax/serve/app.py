"""`hera-serve`: an OpenAI-compatible proxy that routes each step of an agent's episode to a device or a cloud model.

    POST /v1/chat/completions   (stream or not) -> the routed upstream's reply, with headers x-hera-route,
                                x-hera-p-cloud, x-hera-threshold, x-hera-reason, x-hera-episode, x-hera-decision-ms
                                (request received to route chosen), x-hera-upstream-ms (time in upstream calls)
    GET  /v1/models             hera (the checkpoint at its threshold) and hera-<threshold>
    GET  /health                liveness, the upstreams' circuit breakers
    GET  /metrics               Prometheus: decisions, p_cloud, upstream latency and errors, served cloud share
    POST /v1/hera/episodes/{id}/outcome   {"success": bool, "score": float?}: the episode's steps become records

The model string picks the threshold RouteLLM-style: `hera` uses the served one (`--threshold`, or the online
`--cloud-share` controller), `hera-0.42` routes at 0.42. When the picked upstream fails (connection, timeout, 5xx or
a reply that is not a chat completion) the other answers (reason `failover`), and an upstream that keeps failing is
skipped for a while (circuit breaker). Keys come only from the environment variables named by the flags, are sent
only as the Authorization header and never logged; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from fastapi import Request  # at module level: the handlers' annotations are resolved from here

from hera_jax.agents.openai_cloud import env_name_problem, url_problem
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, Check, redact_url
from hera_jax.rollout.routing import routes_to_cloud
from hera_jax.serve.budget import CircuitBreaker, OnlineThreshold
from hera_jax.serve.log import DecisionLog, ServedStep
from hera_jax.serve.messages import RequestError, action_of, episode_id, step_from_messages
from hera_jax.serve.router_api import Router, StepInput

ROUTES = ("device", "cloud")
# what an httpx client would send by itself (some gateways refuse a request without a User-Agent)
UPSTREAM_HEADERS = {"user-agent": "hera-serve", "accept": "application/json, text/event-stream",
                    "accept-encoding": "gzip, deflate"}


def _optional_env_name(value: str) -> str | None:
    return None if value == "" else env_name_problem(value)


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Serve a trained router as an OpenAI-compatible step-routing proxy between an agent and two models."""

    checkpoint: Path
    """The router checkpoint (experiments/il.py or rl_iter.py writes it)."""
    device_base_url: str = "http://127.0.0.1:8081/v1"
    """The device model's OpenAI-compatible endpoint (llama.cpp server, Ollama, vLLM)."""
    device_model: str = "device"
    device_api_key_env: str = ""
    """NAME of the environment variable with the device endpoint's key ('' = no key)."""
    cloud_base_url: str = "http://127.0.0.1:8082/v1"
    cloud_model: str = "cloud"
    cloud_api_key_env: str = "OPENAI_API_KEY"
    """NAME of the environment variable with the cloud endpoint's key (an unset variable sends no key)."""
    threshold: float | None = None
    """Route to the cloud when p_cloud >= this (default: the checkpoint's)."""
    cloud_share: float | None = None
    """Keep the served cloud-step share near this by an online quantile of recent p_cloud values (overrides
    --threshold once --share-warmup steps were served); None: a fixed threshold."""
    share_window: int = 200
    """Recent steps the online quantile looks at."""
    share_warmup: int = 20
    """Steps routed at --threshold before the online quantile takes over."""
    episode_cloud_cap: int | None = None
    """At most this many cloud steps per episode; later steps go to the device (reason episode-cap)."""
    timeout_s: float = 60.0
    """Deadline of one upstream request."""
    breaker_failures: int = 3
    """Consecutive failures after which an upstream is skipped ..."""
    breaker_cooldown_s: float = 30.0
    """... for this long."""
    max_body_bytes: int = 1_000_000
    """Larger requests get 413."""
    batch_wait_ms: float = 0.0
    """Extra wait before scoring a request that finds the scorer idle, so near-simultaneous requests share its
    batch (requests that arrive while a batch is scored always share the next one; 0 = no wait)."""
    log_dir: Path = Path("runs/serve")
    """Decision log (decisions.jsonl) and the served episodes as a dataset (steps.jsonl, manifest.json)."""
    features_cache: Path | None = None
    """Where new state embeddings are kept (default: <log-dir>/features)."""
    host: str = "127.0.0.1"
    port: int = 8000

    LIMITS: ClassVar[dict] = {
        "threshold": PROBABILITY, "cloud_share": PROBABILITY, "share_window": COUNT, "share_warmup": COUNT,
        "episode_cloud_cap": COUNT, "timeout_s": POSITIVE, "breaker_failures": COUNT,
        "breaker_cooldown_s": POSITIVE, "max_body_bytes": COUNT, "batch_wait_ms": NON_NEGATIVE,
        "device_base_url": Check(url_problem, echo=False), "cloud_base_url": Check(url_problem, echo=False),
        "cloud_api_key_env": Check(_optional_env_name, echo=False),
        "device_api_key_env": Check(_optional_env_name, echo=False),
    }


class MicroBatcher:
    """Shares `score_batch` calls (run off the event loop) between concurrent requests, without a fixed wait: a request
    that finds the scorer idle is scored after `wait_s` (0: at once); requests that arrive while a batch is being
    scored wait for it and then go together in the next. So one client pays no batching delay, and under load the
    batches grow by themselves."""

    def __init__(self, score_batch, wait_s: float = 0.0):
        self.score_batch, self.wait_s = score_batch, wait_s
        self._waiting: list[tuple[StepInput, asyncio.Future]] = []
        self._draining = False  # one scorer call at a time: its memo and caches are not thread-safe
        self.batches = 0

    async def score(self, step: StepInput) -> float:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((step, future))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    scores = await asyncio.to_thread(self.score_batch, [s for s, _ in batch])
                    self.batches += 1
                    for (_, future), p in zip(batch, scores):
                        if not future.done():
                            future.set_result(float(p))
                except Exception as e:  # every request of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
        finally:
            self._draining = False


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter("hera_decisions", "Routed steps", ["route", "reason"], registry=self.registry)
        self.p_cloud = Histogram("hera_p_cloud", "Router p_cloud of served steps",
                                 buckets=[i / 10 for i in range(1, 11)], registry=self.registry)
        self.upstream_latency = Histogram("hera_upstream_latency_seconds", "Upstream request latency", ["upstream"],
                                          registry=self.registry)
        self.errors = Counter("hera_upstream_errors", "Failed upstream requests", ["upstream", "kind"],
                              registry=self.registry)
        self.client_errors = Counter("hera_client_errors", "Refused client requests", ["status"],
                                     registry=self.registry)
        self.cloud_share = Gauge("hera_cloud_share", "Cloud share of the served steps so far", registry=self.registry)
        self.served = {route: 0 for route in ROUTES}

    def served_by(self, route: str) -> None:
        self.served[route] += 1
        self.cloud_share.set(self.served["cloud"] / max(1, sum(self.served.values())))


class UpstreamFailure(Exception):
    """One upstream attempt failed in a way the other upstream may fix (not the client's fault)."""


def _threshold_of(model: Any) -> float | None:
    if model in (None, "", "hera"):
        return None
    if isinstance(model, str) and model.startswith("hera-"):
        try:
            value = float(model.removeprefix("hera-"))
        except ValueError:
            value = -1.0
        if 0.0 <= value <= 1.0:
            return value
    raise RequestError(f"model must be 'hera' or 'hera-<threshold in [0, 1]>', got {str(model)[:60]!r}")


def _error(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "hera_proxy_error"}}, status_code=status,
                        headers=headers)


def create_app(config: ServeConfig, router: Router, transport=None):
    """The FastAPI app; `transport` (an httpx transport) replaces the network for tests."""
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    upstreams = {
        "device": (config.device_base_url.rstrip("/"), config.device_model, config.device_api_key_env),
        "cloud": (config.cloud_base_url.rstrip("/"), config.cloud_model, config.cloud_api_key_env),
    }
    # Requests go straight to a transport (a connection pool): a client's cookie jar, auth and redirect layers
    # would only cost CPU here, as the proxy keeps no cookies and follows no redirects.
    transports: dict[str, httpx.AsyncBaseTransport] = {}
    timeout = httpx.Timeout(config.timeout_s).as_dict()
    breakers = {r: CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s) for r in ROUTES}
    online = (OnlineThreshold(config.cloud_share, config.share_window, config.share_warmup, router.threshold)
              if config.cloud_share is not None else None)
    batcher = MicroBatcher(router.p_cloud_batch, config.batch_wait_ms / 1000)
    memoized = getattr(router.scorer, "memoized", None)  # a scorer without a memo is always asked through the batcher
    metrics = Metrics()
    log = DecisionLog(config.log_dir, agents={
        role: {"name": f"served:{model}", "kind": "llm", "base_url": redact_url(url)}
        for role, model, url in (("device", config.device_model, config.device_base_url),
                                 ("cloud", config.cloud_model, config.cloud_base_url))},
        settings={"history_k": router.history_k, "max_obs_chars": router.max_obs_chars,
                  "router": router.source})

    # outcomes write (and fsync) whole episodes: a thread of their own, so a burst of them cannot take the default
    # executor's threads from the scoring batches and streamed steps' log lines
    outcome_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hera-outcomes")

    async def lifespan(app):
        for route, (base, _, _) in upstreams.items():
            # the proxy the environment names for this upstream (HTTP(S)_PROXY, NO_PROXY), as an httpx client would
            transports[route] = transport or httpx.AsyncHTTPTransport(proxy=_environment_proxy(base))
        try:
            yield
        finally:
            for each in transports.values():
                await each.aclose()
            outcome_writer.shutdown(wait=True)
            log.close()

    app = FastAPI(title="hera-serve", lifespan=lifespan)
    app.state.batcher, app.state.log, app.state.metrics, app.state.breakers = batcher, log, metrics, breakers

    completions_url = {route: httpx.URL(f"{base}/chat/completions") for route, (base, _, _) in upstreams.items()}

    def headers_for(route: str) -> dict[str, str]:
        variable = upstreams[route][2]
        key = os.environ.get(variable, "") if variable else ""
        return {**UPSTREAM_HEADERS, "authorization": f"Bearer {key}"} if key else dict(UPSTREAM_HEADERS)

    def fail(route: str, kind: str) -> None:
        breakers[route].record(False)
        metrics.errors.labels(route, kind).inc()

    async def send(route: str, payload: dict, stream: bool):
        """The upstream's reply (headers read; the body too unless `stream`), or UpstreamFailure."""
        started = time.perf_counter()
        try:
            request = httpx.Request("POST", completions_url[route], json=payload, headers=headers_for(route),
                                    extensions={"timeout": timeout})
            reply = await transports[route].handle_async_request(request)
            if not stream:
                try:
                    await reply.aread()
                finally:
                    await reply.aclose()
        except httpx.TimeoutException as e:
            fail(route, "timeout")
            raise UpstreamFailure(f"{route} upstream timed out") from e
        except httpx.HTTPError as e:
            fail(route, "connection")
            raise UpstreamFailure(f"{route} upstream unreachable ({type(e).__name__})") from e
        metrics.upstream_latency.labels(route).observe(time.perf_counter() - started)
        return reply

    async def complete(route: str, payload: dict) -> dict:
        reply = await send(route, payload, stream=False)
        if reply.status_code >= 500 or 300 <= reply.status_code < 400:
            fail(route, f"http_{reply.status_code}")
            raise UpstreamFailure(f"{route} upstream answered {reply.status_code}")
        try:
            data = reply.json()
        except ValueError:
            data = None
        if reply.status_code >= 400:  # the request itself was refused: the other upstream would refuse it too
            breakers[route].record(True)
            return {"_status": reply.status_code, "_body": data if isinstance(data, dict) else {"error": {
                "message": f"{route} upstream refused the request ({reply.status_code})"}}}
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            fail(route, "malformed")
            raise UpstreamFailure(f"{route} upstream sent a reply that is not a chat completion")
        breakers[route].record(True)
        return data

    async def open_stream(route: str, payload: dict):
        reply = await send(route, payload, stream=True)
        if reply.status_code >= 300:
            await reply.aclose()
            fail(route, f"http_{reply.status_code}")
            raise UpstreamFailure(f"{route} upstream answered {reply.status_code}")
        if not reply.headers.get("content-type", "").strip().lower().startswith("text/event-stream"):
            await reply.aclose()  # e.g. an HTML error page with status 200: not a stream the client could parse
            fail(route, "malformed")
            raise UpstreamFailure(f"{route} upstream sent a reply that is not an event stream")
        breakers[route].record(True)
        return reply

    @app.get("/health")
    async def health():
        return {"status": "ok", "router": router.source,
                "upstreams": {r: {"circuit_open": breakers[r].is_open} for r in ROUTES}}

    @app.get("/v1/models")
    async def models():
        listed = ["hera", f"hera-{router.threshold:g}"]
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "hera_jax"} for m in listed]}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/hera/episodes/{episode}/outcome")
    async def outcome(episode: str, request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            return _error(400, 'the body must be a JSON object with a boolean "success" (and an optional "score")')
        score = body.get("score")
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
            return _error(400, '"score" must be a number')
        try:
            steps = await asyncio.get_running_loop().run_in_executor(outcome_writer, log.finish, episode,
                                                                     body["success"], score)
        except KeyError:
            return _error(404, f"episode {episode[:80]!r} has no served steps waiting for an outcome")
        return {"episode": episode, "steps_recorded": steps}

    async def chat(request: Request):
        received = time.perf_counter()
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            metrics.client_errors.labels("413").inc()
            return _error(413, f"request body of {len(raw)} bytes is over --max-body-bytes {config.max_body_bytes}")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            metrics.client_errors.labels("400").inc()
            return _error(400, "the request body is not valid JSON")
        try:
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            forced = _threshold_of(body.get("model"))
            step = step_from_messages(body)
        except RequestError as e:
            metrics.client_errors.labels("400").inc()
            return _error(400, str(e))
        episode = episode_id(body, request.headers.get("x-hera-episode"))
        text, index = router.text(step)
        # A repeated state is answered here; only new ones go to the scoring thread (each hop to a thread waits for
        # the GIL, which under load is what a request's tail latency is made of).
        p_cloud = memoized(text, index) if memoized is not None else None
        if p_cloud is None:
            p_cloud = await batcher.score(step)
        if forced is not None:
            threshold = forced
            if online is not None:
                online.observe(p_cloud)
        else:
            threshold = online.observe(p_cloud) if online is not None else router.threshold
        routed = "cloud" if routes_to_cloud(p_cloud, threshold) else "device"
        reason = "router"
        cloud_calls = log.cloud_calls(episode)
        if routed == "cloud" and config.episode_cloud_cap is not None and cloud_calls >= config.episode_cloud_cap:
            routed, reason = "device", "episode-cap"
        order = [routed, "cloud" if routed == "device" else "device"]
        if not breakers[routed].available() and breakers[order[1]].available():
            order.reverse()
        decision_ms = (time.perf_counter() - received) * 1000
        payload = {k: v for k, v in body.items() if not k.startswith("hera_")}
        stream = bool(body.get("stream"))
        problems = []
        upstream_started = time.perf_counter()
        for attempt, route in enumerate(order):
            payload["model"] = upstreams[route][1]
            why = reason if attempt == 0 and route == routed else "failover"
            headers = {"x-hera-route": route, "x-hera-p-cloud": f"{p_cloud:.6f}", "x-hera-threshold": f"{threshold:g}",
                       "x-hera-reason": why, "x-hera-episode": episode, "x-hera-decision-ms": f"{decision_ms:.3f}"}
            served = dict(episode_id=episode, step=index, state_text=text, route=route, routed=routed,
                          p_cloud=p_cloud, threshold=threshold, reason=why, cloud_calls_so_far=cloud_calls,
                          task=step.task[:200])
            try:
                if stream:
                    reply = await open_stream(route, payload)
                else:
                    data = await complete(route, payload)
            except UpstreamFailure as e:
                problems.append(str(e))
                continue
            # the upstream attempts' time (for a stream: until its headers), so a client can tell the proxy's own
            # share of its latency
            headers["x-hera-upstream-ms"] = f"{(time.perf_counter() - upstream_started) * 1000:.3f}"
            metrics.decisions.labels(route, why).inc()
            metrics.p_cloud.observe(p_cloud)
            metrics.served_by(route)
            if stream:
                return StreamingResponse(_relay(reply, log, served, received, lambda kind, r=route: fail(r, kind)),
                                         status_code=reply.status_code, media_type="text/event-stream",
                                         headers=headers)
            if "_status" in data:  # the upstream refused the request: pass its answer on, log nothing
                return JSONResponse(data["_body"], status_code=data["_status"], headers=headers)
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            message = data["choices"][0].get("message") if isinstance(data["choices"][0], dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            # on the loop: one appended, flushed line costs less than a hop to a thread
            log.record(ServedStep(
                action=action_of(content) if isinstance(content, str) else "", tokens_in=_count(usage.get(
                    "prompt_tokens")), tokens_out=_count(usage.get("completion_tokens")),
                latency_s=time.perf_counter() - received, status=200, **served))
            return JSONResponse(data, headers=headers)
        return _error(502, "; ".join(problems) or "no upstream available")

    # a plain Starlette route: FastAPI's per-request parameter handling has nothing to do for it (it reads the raw
    # body itself and always returns a Response)
    app.router.add_route("/v1/chat/completions", chat, methods=["POST"])

    def openapi() -> dict:
        """FastAPI's schema lists only its own routes: add the chat route, so /docs and client generators see it."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"]["/v1/chat/completions"] = {"post": CHAT_OPENAPI}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


CHAT_OPENAPI = {
    "summary": "Chat completion, routed to the device or the cloud upstream",
    "description": "An OpenAI chat completion request (stream or not). The model `hera` routes at the served "
                   "threshold, `hera-<t>` at t. The reply is the routed upstream's, with headers x-hera-route, "
                   "x-hera-p-cloud, x-hera-threshold, x-hera-reason, x-hera-episode, x-hera-decision-ms and "
                   "x-hera-upstream-ms. An optional `hera_state` object (task, history, observation, step) replaces "
                   "the state read from the messages; the x-hera-episode request header (or `hera_episode` in the body) names "
                   "the episode.",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["messages"],
        "properties": {"model": {"type": "string", "example": "hera"}, "messages": {"type": "array"},
                       "stream": {"type": "boolean"}, "hera_state": {"type": "object"},
                       "hera_episode": {"type": "string"}}}}}},
    "responses": {"200": {"description": "the upstream's chat completion (or its event stream)"},
                  "400": {"description": "a request the proxy cannot route (the error names the field)"},
                  "502": {"description": "no upstream answered"}},
}


def _environment_proxy(url: str) -> str | None:
    """The proxy URL that HTTP_PROXY / HTTPS_PROXY / ALL_PROXY name for `url`, unless NO_PROXY exempts its host."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not parts.hostname or urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


async def _relay(reply, log: DecisionLog, served: dict, received: float, fail=None):
    """Pass the upstream's event stream through unchanged; log the step (with the streamed text) once it ends.

    An upstream that breaks off mid-stream (connection lost, read timeout) cannot be failed over (the client has
    part of a reply): the client gets one final `data: {"error": ...}` event, which OpenAI clients raise as an API
    error, the step is logged with status 502 and the upstream's failure counts for its circuit breaker."""
    import httpx

    text, buffer, status = [], b"", 200
    try:
        try:
            async for chunk in reply.aiter_bytes():  # decoded: the client gets our headers, not the upstream encoding
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                        try:
                            delta = json.loads(line[5:])["choices"][0].get("delta", {}).get("content")
                        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                            delta = None
                        if isinstance(delta, str):
                            text.append(delta)
                yield chunk
        except httpx.HTTPError as e:
            status = 502
            kind = "stream_timeout" if isinstance(e, httpx.TimeoutException) else "stream_cut"
            if fail is not None:
                fail(kind)
            error = {"error": {"message": f"{served['route']} upstream broke off mid-stream ({type(e).__name__})",
                               "type": "upstream_error", "code": kind}}
            # a blank line first ends whatever event was cut off, so the error is an event of its own
            yield b"\n\ndata: " + json.dumps(error).encode() + b"\n\n"
    finally:
        await reply.aclose()
        await asyncio.to_thread(log.record, ServedStep(
            action=action_of("".join(text)), tokens_in=None, tokens_out=None,
            latency_s=time.perf_counter() - received, status=status, **served))


def serve(config: ServeConfig) -> None:
    """Load the router and run the proxy with uvicorn until interrupted."""
    import uvicorn

    router = Router.load(config.checkpoint, config.threshold,
                         features_cache=config.features_cache or config.log_dir / "features")
    app = create_app(config, router)
    print(f"hera-serve: router {config.checkpoint} at threshold {router.threshold:g}"
          f"{f', cloud share target {config.cloud_share:g}' if config.cloud_share is not None else ''}; "
          f"device {redact_url(config.device_base_url)} ({config.device_model}), cloud "
          f"{redact_url(config.cloud_base_url)} "
          f"({config.cloud_model}); log {config.log_dir}; http://{config.host}:{config.port}/v1")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


def main() -> None:
    """The `hera-serve` console script."""
    from hera_jax.cli import run_cli

    run_cli(serve, ServeConfig)
