"""hera-serve and the Router API, loopback only: stub upstreams behind an httpx mock transport (the proxy's real
client code runs; only the socket is replaced), a router whose p_cloud is a known function of the state text, and
once a real checkpoint trained here. Routing, headers, streaming, failover and the circuit breaker, bad client input,
the online cloud-share controller, the decision log and its episodes as stage-2 visits."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from hera_jax.rollout.records import read_steps
from hera_jax.serve.app import ServeConfig, _environment_proxy, create_app
from hera_jax.serve.budget import CircuitBreaker, OnlineThreshold, share_threshold
from hera_jax.serve.messages import RequestError, episode_id, step_from_messages
from hera_jax.serve.router_api import Router, StepInput
from tests.test_agents_openai import llama_server  # noqa: F401 (fixture: llama.cpp's server on loopback)

KEY = "sk-test-secret-key-0123456789"


class TextScorer:
    """p_cloud = the number after 'difficulty ' in the observation (the state text's last line), else 0.1."""

    def __init__(self):
        self.calls = 0
        self.scored: dict[tuple[str, int], float] = {}

    def score(self, texts, steps):
        self.calls += 1
        out = []
        for text in texts:
            now = text.rsplit("Now: ", 1)[-1]
            out.append(float(now.split("difficulty ", 1)[1].split()[0]) if "difficulty " in now else 0.1)
        self.scored.update(zip(zip(texts, map(int, steps)), out))
        return np.asarray(out, np.float32)

    def memoized(self, text, step):
        return self.scored.get((text, int(step)))


def chat(observation: str, history: tuple = (), task: str = "Task: tidy the room.", **extra) -> dict:
    messages = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": f"{task}\n{observation}"
                if not history else task}]
    for action, after in history:
        messages += [{"role": "assistant", "content": f"Thought: hm\nAction: {action}"},
                     {"role": "user", "content": after}]
    if history:
        messages[-1]["content"] = observation
    return {"model": "hera", "messages": messages, **extra}


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": text}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 11, "completion_tokens": 3}}


class Upstreams:
    """Two stub OpenAI endpoints behind one mock transport; `mode[route]` says how each answers."""

    def __init__(self):
        self.mode = {"device": "ok", "cloud": "ok"}
        self.requests: list[tuple[str, dict, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route = "device" if request.url.port == 8081 else "cloud"
        body = json.loads(request.content)
        self.requests.append((route, body, dict(request.headers)))
        mode = self.mode[route]
        if mode == "dead":
            raise httpx.ConnectError("connection refused", request=request)
        if mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if mode == "500":
            return httpx.Response(500, json={"error": "boom"})
        if mode == "garbage":
            return httpx.Response(200, content=b"<html>not json</html>")
        if mode == "cut" and body.get("stream"):  # the first piece, then the connection is lost mid-event
            first = json.dumps({"choices": [{"delta": {"content": "Action: "}}]})

            async def broken():
                yield f"data: {first}\n".encode()  # cut before the blank line that ends the event
                raise httpx.ReadError("connection lost", request=request)

            return httpx.Response(200, content=broken(), headers={"content-type": "text/event-stream"})
        if body.get("stream"):
            chunks = [json.dumps({"choices": [{"delta": {"content": piece}}]}) for piece in ("Action: ", f"{route} move")]
            sse = "".join(f"data: {c}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=completion(f"Thought: ok\nAction: {route} move"))


@pytest.fixture
def upstreams():
    return Upstreams()


def make_client(tmp_path, upstreams, monkeypatch, **overrides):
    monkeypatch.setenv("CLOUD_KEY", KEY)
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", cloud_api_key_env="CLOUD_KEY",
                         log_dir=tmp_path / "log", **{"threshold": 0.5, **overrides})
    router = Router(TextScorer(), config.threshold, history_k=3, max_obs_chars=400, source="text-scorer")
    return TestClient(create_app(config, router, transport=httpx.MockTransport(upstreams)))


# ---- the chat -> state mapping -----------------------------------------------------------------------------------


def test_messages_map_onto_task_history_and_observation():
    body = chat("You see a sock. difficulty 0.7", history=(("open drawer", "The drawer is open."),
                                                           ("take sock", "You take the sock.")))
    step = step_from_messages(body)
    assert step.task == "tidy the room."
    assert step.history == (("open drawer", "The drawer is open."), ("take sock", "You see a sock. difficulty 0.7"))
    assert step.observation == "You see a sock. difficulty 0.7" and step.step == 2
    first = step_from_messages(chat("You are in a bedroom."))
    assert (first.task, first.history, first.observation, first.step) == ("tidy the room.", (), "You are in a bedroom.", 0)
    explicit = step_from_messages({"messages": [], "hera_state": {"task": "t", "history": [["a", "o"]],
                                                                  "observation": "now", "step": 5}})
    assert explicit == StepInput("t", (("a", "o"),), "now", 5)
    later = chat("later", history=(("a", "b"),) * 3)  # the same chat, turns later: the same episode
    assert episode_id(body, None) == episode_id(later, None) != episode_id(chat("x", task="Task: b"), None)
    assert episode_id(body, "ep-1") == "ep-1"
    for bad, message in (({}, "messages must be a non-empty list"), ({"messages": "hi"}, "non-empty list"),
                         ({"messages": [{"role": "user", "content": 3}]}, "content must be a string"),
                         ({"messages": [{"role": "system", "content": "x"}]}, "no user message"),
                         ({"messages": [], "hera_state": {"task": 1}}, "hera_state")):
        with pytest.raises(RequestError, match=message):
            step_from_messages(bad)


# ---- budget and breaker --------------------------------------------------------------------------------------------


def test_share_threshold_selects_the_target_share():
    p = np.random.default_rng(0).random(1000)
    for target in (0.1, 0.3, 0.5, 0.9):
        assert abs((p >= share_threshold(p, target)).mean() - target) <= 0.002
    assert (p >= share_threshold(p, 0.0)).mean() == 0.0 and share_threshold(p, 1.0) == 0.0


def test_online_threshold_holds_the_share_on_shifted_traffic():
    """200 requests after each shift of the traffic mix (mostly easy -> mostly hard -> uniform), over 10 seeds."""
    shares = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        controller = OnlineThreshold(0.3, window=200, warmup=20)
        routed = []
        for i in range(1100):
            p = rng.beta(2, 8) if i < 300 else rng.beta(8, 2) if i < 700 else rng.random()
            routed.append(p >= controller.observe(p))
        shares += [np.mean(routed[500:700]), np.mean(routed[900:1100])]
    assert abs(np.mean(shares) - 0.3) <= 0.03 and max(abs(np.asarray(shares) - 0.3)) <= 0.08
    # a fixed threshold calibrated on the first mix would not hold: the hard mix sends nearly everything
    fixed = share_threshold(np.random.default_rng(0).beta(2, 8, 1000), 0.3)
    assert (np.random.default_rng(1).beta(8, 2, 1000) >= fixed).mean() > 0.9


def test_online_threshold_holds_the_share_on_traffic_that_keeps_drifting():
    """p_cloud rising through the whole run (new kinds of states keep arriving): a quantile of the past alone lags
    behind and over-sends (about 0.57 here); the integral correction holds the long-run share, over 10 seeds."""
    shares, uncorrected = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        traffic = np.r_[rng.beta(2, 8, 300), np.clip(rng.beta(8, 2, 1200) * 0.5 + np.linspace(0, 0.5, 1200), 0, 1)]
        for feedback, out in ((2.0, shares), (0.0, uncorrected)):
            controller = OnlineThreshold(0.3, window=200, warmup=20, feedback=feedback)
            routed = [p >= controller.observe(p) for p in traffic]
            out.append(np.mean(routed[700:]))
    assert abs(np.mean(shares) - 0.3) <= 0.02 and max(abs(np.asarray(shares) - 0.3)) <= 0.05
    assert np.mean(uncorrected) > 0.45  # what the correction fixes


def test_circuit_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record(False)
    breaker.record(True)
    assert breaker.available()  # a success resets the count
    for _ in range(3):
        breaker.record(False)
    assert not breaker.available() and breaker.is_open
    now[0] = 10.0
    assert breaker.available()  # one trial request
    breaker.record(False)
    assert not breaker.available()  # failed again: open at once


# ---- the proxy -----------------------------------------------------------------------------------------------------


def test_routes_by_p_cloud_with_headers_and_forwards_clean_requests(tmp_path, upstreams, monkeypatch):
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        easy = client.post("/v1/chat/completions", json=chat("difficulty 0.2", hera_task="tidy"))
        hard = client.post("/v1/chat/completions", json=chat("difficulty 0.9"), headers={"x-hera-episode": "e7"})
        forced = client.post("/v1/chat/completions", json={**chat("difficulty 0.2"), "model": "hera-0.15"})
    assert easy.status_code == hard.status_code == forced.status_code == 200
    assert easy.headers["x-hera-route"] == "device" and float(easy.headers["x-hera-p-cloud"]) == pytest.approx(0.2)
    assert hard.headers["x-hera-route"] == "cloud" and hard.headers["x-hera-episode"] == "e7"
    assert forced.headers["x-hera-route"] == "cloud" and forced.headers["x-hera-threshold"] == "0.15"
    assert easy.json()["choices"][0]["message"]["content"].endswith("device move")
    (r1, b1, h1), (r2, b2, h2), _ = upstreams.requests
    assert (r1, b1["model"], r2, b2["model"]) == ("device", "device", "cloud", "cloud")
    assert not any(k.startswith("hera_") for k in b1) and "authorization" not in h1
    assert h2["authorization"] == f"Bearer {KEY}"
    assert h1["user-agent"] == h2["user-agent"] == "hera-serve"  # gateways may refuse a request without one
    log = (tmp_path / "log" / "decisions.jsonl").read_text()
    assert KEY not in log and log.count('"kind": "step"') == 3


def test_upstreams_go_through_the_proxy_the_environment_names(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _environment_proxy("https://api.example.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.internal")
    assert _environment_proxy("https://api.example.com/v1") == "http://proxy.corp:3128"
    assert _environment_proxy("http://api.example.com/v1") is None  # no HTTP_PROXY
    assert _environment_proxy("http://127.0.0.1:8081/v1") is None
    assert _environment_proxy("https://model.internal/v1") is None


def test_streaming_is_relayed_and_logged(tmp_path, upstreams, monkeypatch):
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("difficulty 0.9", stream=True)) as reply:
            body = b"".join(reply.iter_bytes())
            assert reply.headers["x-hera-route"] == "cloud"
    assert body.count(b"data: ") == 3 and body.endswith(b"data: [DONE]\n\n")
    entry = json.loads((tmp_path / "log" / "decisions.jsonl").read_text().splitlines()[-1])
    assert entry["action"] == "cloud move" and entry["route"] == "cloud"


def test_an_upstream_that_breaks_off_mid_stream_ends_the_stream_with_an_error_event(tmp_path, upstreams, monkeypatch):
    upstreams.mode["cloud"] = "cut"
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("difficulty 0.9", stream=True)) as reply:
            body = b"".join(reply.iter_bytes())
        # parsed as an SSE client does: events are separated by a blank line, an event's data lines joined
        events = [json.loads("\n".join(line[6:] for line in block.splitlines() if line.startswith("data: ")))
                  for block in body.decode().split("\n\n") if block.strip()]
        assert events[0]["choices"][0]["delta"]["content"] == "Action: "  # what arrived was passed on
        assert events[-1]["error"]["code"] == "stream_cut" and "mid-stream" in events[-1]["error"]["message"]
        metrics = client.get("/metrics").text
        assert 'hera_upstream_errors_total{kind="stream_cut",upstream="cloud"} 1.0' in metrics
        after = client.post("/v1/chat/completions", json=chat("difficulty 0.1"))  # the proxy keeps serving
        assert after.status_code == 200
    entries = [json.loads(line) for line in (tmp_path / "log" / "decisions.jsonl").read_text().splitlines()]
    cut = [e for e in entries if e.get("kind") == "step" and e["route"] == "cloud"]
    assert cut[0]["status"] == 502


@pytest.mark.parametrize("failure", ["dead", "timeout", "500", "garbage"])
def test_a_failing_upstream_fails_over_to_the_other(tmp_path, upstreams, monkeypatch, failure):
    upstreams.mode["device"] = failure
    with make_client(tmp_path, upstreams, monkeypatch, breaker_failures=2) as client:
        replies = [client.post("/v1/chat/completions", json=chat(f"difficulty 0.{i}")) for i in range(1, 5)]
        metrics = client.get("/metrics").text
        health = client.get("/health").json()
    assert all(r.status_code == 200 and r.headers["x-hera-route"] == "cloud" for r in replies)
    assert all(r.headers["x-hera-reason"] == "failover" for r in replies)
    # after 2 failures the breaker skips the device: requests 3 and 4 went straight to the cloud
    assert [route for route, _, _ in upstreams.requests] == ["device", "cloud", "device", "cloud", "cloud", "cloud"]
    assert health["upstreams"]["device"]["circuit_open"] is True
    assert 'hera_upstream_errors_total{kind=' in metrics and 'hera_decisions_total{reason="failover",route="cloud"} 4.0' in metrics


def test_both_upstreams_down_is_one_line_502_and_the_proxy_keeps_serving(tmp_path, upstreams, monkeypatch):
    upstreams.mode.update(device="dead", cloud="500")
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        down = client.post("/v1/chat/completions", json=chat("difficulty 0.9"))
        upstreams.mode.update(device="ok", cloud="ok")
        up = client.post("/v1/chat/completions", json=chat("difficulty 0.9"))
    assert down.status_code == 502 and "\n" not in down.json()["error"]["message"]
    assert "cloud upstream answered 500" in down.json()["error"]["message"] and up.status_code == 200


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (json.dumps({"model": "hera"}).encode(), 400, "messages must be a non-empty list"),
    (json.dumps({"model": "hera", "messages": [{"role": 5, "content": "x"}]}).encode(), 400, "role must be a string"),
    (json.dumps({**chat("x"), "model": "gpt-4"}).encode(), 400, "model must be 'hera'"),
    (json.dumps({**chat("x"), "model": "hera-2"}).encode(), 400, "model must be 'hera'"),
    (b"{" + b" " * 2_000_000 + b"}", 413, "over --max-body-bytes"),
])
def test_bad_client_input_gets_a_one_line_4xx_and_the_proxy_keeps_serving(tmp_path, upstreams, monkeypatch, body,
                                                                          status, message):
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        bad = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        good = client.post("/v1/chat/completions", json=chat("difficulty 0.2"))
    assert bad.status_code == status and message in bad.json()["error"]["message"]
    assert "\n" not in bad.json()["error"]["message"] and good.status_code == 200
    assert len(upstreams.requests) == 1  # the bad request never reached an upstream


def test_episode_cap_and_outcomes_become_stage_2_visits(tmp_path, upstreams, monkeypatch):
    from hera_jax.rl.visits import grouped_visits

    with make_client(tmp_path, upstreams, monkeypatch, episode_cloud_cap=1) as client:
        for episode, success in (("a", True), ("b", False)):
            history = ()
            for i, difficulty in enumerate((0.9, 0.8, 0.2)):
                reply = client.post("/v1/chat/completions", json=chat(f"room {i} difficulty {difficulty}", history),
                                    headers={"x-hera-episode": episode})
                assert reply.headers["x-hera-route"] == ("cloud" if i == 0 else "device")
                assert reply.headers["x-hera-reason"] == ("episode-cap" if i == 1 else "router")
                history += ((reply.json()["choices"][0]["message"]["content"].split("Action: ")[1],
                             f"room {i + 1}"),)
            assert client.post(f"/v1/hera/episodes/{episode}/outcome", json={"success": success}).json() == {
                "episode": episode, "steps_recorded": 3}
        assert client.post("/v1/hera/episodes/zzz/outcome", json={"success": True}).status_code == 404
        assert client.post("/v1/hera/episodes/a/outcome", json={"success": "yes"}).status_code == 400
    rows, report = read_steps(tmp_path / "log" / "steps.jsonl")
    assert not report.problems and len(rows) == 6
    assert [r["actor"] for r in rows[:3]] == ["cloud", "device", "device"] and rows[0]["cloud_action"] == "cloud move"
    assert rows[2]["success"] is True and rows[5]["success"] is False and rows[0]["state_key"] == rows[3]["state_key"]
    visits = grouped_visits(rows, "success", "monte_carlo")
    assert visits is not None  # the served episodes group into stage-2 visits (the same first state in both)


def test_concurrent_requests_are_micro_batched_and_none_is_lost(tmp_path, upstreams, monkeypatch):
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", log_dir=tmp_path / "log", threshold=0.5,
                         batch_wait_ms=20, cloud_share=0.3, share_warmup=10**6)
    scorer = TextScorer()
    app = create_app(config, Router(scorer, 0.5, 3, 400), transport=httpx.MockTransport(upstreams))

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
                limit = asyncio.Semaphore(16)

                async def one(i):
                    async with limit:
                        return await client.post("/v1/chat/completions", json=chat(f"n{i} difficulty 0.{i % 10}"),
                                                 headers={"x-hera-episode": f"e{i}"})

                return await asyncio.gather(*(one(i) for i in range(64)))

    replies = asyncio.run(run())
    assert all(r.status_code == 200 for r in replies)
    assert sorted(r.headers["x-hera-episode"] for r in replies) == sorted(f"e{i}" for i in range(64))
    log = [json.loads(line) for line in (tmp_path / "log" / "decisions.jsonl").read_text().splitlines()]
    assert sorted(e["episode_id"] for e in log) == sorted(f"e{i}" for i in range(64))  # none lost or duplicated
    assert scorer.calls < 64  # concurrent requests shared embedding batches


def post_concurrently(app, bodies: list[dict], clients: int) -> list[tuple[int, httpx.Response]]:
    """POST each body to the app's chat endpoint as episode e<i>, `clients` at a time, inside the app's lifespan;
    returns (i, reply) in body order."""

    async def run():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy",
                                         timeout=120) as client:
                limit = asyncio.Semaphore(clients)

                async def one(i, body):
                    async with limit:
                        return i, await client.post("/v1/chat/completions", json=body,
                                                    headers={"x-hera-episode": f"e{i}"})

                return await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))

    return asyncio.run(run())


class FlakyUpstreams(Upstreams):
    """Each request fails at random (seeded): dead, timeout, 500, garbage, or cut mid-stream; else answers."""

    def __init__(self, seed: int, failure_rate: float):
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.failure_rate = failure_rate

    def __call__(self, request):
        route = "device" if request.url.port == 8081 else "cloud"
        failures = ["dead", "timeout", "500", "garbage"] + (["cut"] if json.loads(request.content).get("stream") else [])
        self.mode[route] = (str(self.rng.choice(failures)) if self.rng.random() < self.failure_rate else "ok")
        return super().__call__(request)


@pytest.mark.slow
def test_fault_soak_500_requests_16_clients_every_reply_well_formed_and_logged(tmp_path):
    """500 requests (a quarter streaming) from 16 concurrent clients while each upstream fails 30 % of its requests
    in one of five ways: every request gets a 200 (possibly after failover), a one-line 502, or a stream ending in
    an error event; the log has exactly one step per answered request and the proxy's counters add up."""
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", log_dir=tmp_path / "log", threshold=0.5,
                         breaker_failures=10**6)  # keep both upstreams in play: the breaker is tested on its own
    upstreams = FlakyUpstreams(seed=0, failure_rate=0.3)
    app = create_app(config, Router(TextScorer(), 0.5, 3, 400), transport=httpx.MockTransport(upstreams))

    bodies = [chat(f"n{i} difficulty 0.{i % 10}", stream=i % 4 == 0) for i in range(500)]
    replies = post_concurrently(app, bodies, clients=16)
    outcomes = {"ok": 0, "failover": 0, "502": 0, "cut": 0}
    for i, reply in replies:
        if reply.status_code == 502:
            assert "\n" not in reply.json()["error"]["message"]
            outcomes["502"] += 1
            continue
        assert reply.status_code == 200, reply.text
        if i % 4 == 0:
            events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
            if "error" in events[-1]:
                outcomes["cut"] += 1
                continue
            assert reply.text.endswith("data: [DONE]\n\n")
        else:
            assert reply.json()["choices"][0]["message"]["content"].startswith("Thought: ok")
        outcomes["failover" if reply.headers["x-hera-reason"] == "failover" else "ok"] += 1
    assert sum(outcomes.values()) == 500 and min(outcomes.values()) > 0  # every way out was taken
    steps = [json.loads(line) for line in (tmp_path / "log" / "decisions.jsonl").read_text().splitlines()]
    steps = [e for e in steps if e.get("kind") == "step"]
    # one logged step per answered request (a 502 reached no upstream: nothing to log), none twice
    assert len(steps) == 500 - outcomes["502"] and len({e["episode_id"] for e in steps}) == len(steps)
    assert sum(e["status"] == 502 for e in steps) == outcomes["cut"]


@pytest.mark.slow
def test_fault_soak_against_the_real_llama_cpp_server(tmp_path, llama_server, monkeypatch):
    """llama.cpp's server (Gemma-3-270M on loopback) as both upstreams, each behind a real HTTP proxy that fails 30 %
    of its requests (HTTP 500, a 200 that is not JSON, a dropped connection): 60 requests
    from 4 clients, over real sockets. Every reply is the model's 200 (possibly after failover) or a one-line 502;
    one logged step per answered request, none twice; the cloud key reaches the cloud's host and no log; afterwards
    a clean request is still served."""
    from tests.test_agents_openai import FaultProxy

    rng = np.random.default_rng(0)
    faults = [500, "garbage", "drop"]  # (hangs past the timeout: the mock soak; a loaded CPU makes them flaky here)
    proxies = {route: FaultProxy(llama_server) for route in ("device", "cloud")}
    for proxy in proxies.values():
        proxy.plan = [faults[rng.integers(3)] if rng.random() < 0.3 else "pass" for _ in range(200)]
    monkeypatch.setenv("CLOUD_KEY", KEY)
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url=proxies["device"].url,
                         cloud_base_url=proxies["cloud"].url, device_model="gemma-270m", cloud_model="gemma-270m",
                         cloud_api_key_env="CLOUD_KEY", log_dir=tmp_path / "log", threshold=0.5, timeout_s=120.0,
                         breaker_failures=10**6)  # keep both upstreams in play: the breaker is tested on its own
    app = create_app(config, Router(TextScorer(), 0.5, 3, 400))

    def bodies(count: int) -> list[dict]:
        return [chat(f"n{i} difficulty 0.{i % 10}", max_tokens=8, temperature=0) for i in range(count)]

    try:
        replies = post_concurrently(app, bodies(60), clients=4)
        outcomes = {"ok": 0, "failover": 0, "502": 0}
        for _, reply in replies:
            if reply.status_code == 502:
                assert "\n" not in reply.json()["error"]["message"]
                outcomes["502"] += 1
                continue
            assert reply.status_code == 200, reply.text
            assert isinstance(reply.json()["choices"][0]["message"]["content"], str)
            outcomes["failover" if reply.headers["x-hera-reason"] == "failover" else "ok"] += 1
        assert outcomes["ok"] > 0 and outcomes["failover"] > 0, outcomes
        injected = {route: sum(1 for _ in proxy.requests) - proxy.forwarded for route, proxy in proxies.items()}
        assert min(injected.values()) > 0, injected
        log = tmp_path / "log" / "decisions.jsonl"
        steps = [e for e in map(json.loads, log.read_text().splitlines()) if e.get("kind") == "step"]
        assert len(steps) == 60 - outcomes["502"] and len({e["episode_id"] for e in steps}) == len(steps)
        sent = [{k.lower(): v for k, v in r["headers"].items()} for r in proxies["cloud"].requests]
        assert all(h.get("authorization") == f"Bearer {KEY}" for h in sent)
        assert not any(KEY in f.read_text(errors="replace") for f in (tmp_path / "log").rglob("*") if f.is_file())
        for proxy in proxies.values():
            proxy.plan = []
        [(_, after)] = post_concurrently(app, bodies(1), clients=1)
        assert after.status_code == 200, after.text
    finally:
        for proxy in proxies.values():
            proxy.close()


# ---- a real checkpoint -------------------------------------------------------------------------------------------


def test_router_load_scores_like_the_engine(tmp_path):
    from hera_jax.dataset import load_il_table
    from hera_jax.router import il_app as il_cli
    from hera_jax.router.il import build_features
    from hera_jax.router.scorer import RouterScorer, StateEmbedder
    from hera_jax.state import AgentState, state_text
    from tests.test_bad_inputs import SMALL_TRAIN, SPEC, _collect
    from tests.test_rl_loop import bag_of_words

    dataset = tmp_path / "ds"
    _collect(dataset)
    build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)  # every state cached: no encoder load
    il_cli.train_il(il_cli.ILConfig(dataset=dataset, out=tmp_path / "il", features=SPEC, train=SMALL_TRAIN))
    router = Router.load(tmp_path / "il" / "checkpoint", encode=bag_of_words, features_cache=tmp_path / "cache")
    assert (router.history_k, router.max_obs_chars, router.threshold) == (2, 200, 0.5)
    history = (("go east", "You are in a hall."), ("take key", "You take the key."))
    decision = router.route("Open the door.", history, "You hold a key.")
    from hera_jax.router.checkpoint import load_router

    engine = RouterScorer(load_router(tmp_path / "il" / "checkpoint"),
                          StateEmbedder(SPEC, tmp_path / "cache2", encode=bag_of_words))
    state = AgentState("Open the door.", "You hold a key.", (), history, 2)
    assert decision.p_cloud == pytest.approx(float(engine.score([state_text(state, 2, 200)], [2])[0]), abs=1e-7)
    assert decision.route == ("cloud" if decision.p_cloud >= 0.5 else "device") and not math.isnan(decision.p_cloud)
    assert router.route("Open the door.", history, "You hold a key.", threshold=0.0).route == "cloud"
    # the proxy's fast path for a repeated state: the memo's value, and nothing for a state never scored
    assert router.scorer.memoized(state_text(state, 2, 200), 2) == decision.p_cloud
    assert router.scorer.memoized(state_text(state, 2, 200), 3) is None


def test_a_scorer_without_a_memo_is_asked_for_every_request(tmp_path, upstreams):
    class NoMemo:  # a user's own scorer: `score` only
        def __init__(self):
            self.calls = 0

        def score(self, texts, steps):
            self.calls += 1
            return np.full(len(texts), 0.8, np.float32)

    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", log_dir=tmp_path / "log", threshold=0.5)
    scorer = NoMemo()
    with TestClient(create_app(config, Router(scorer, 0.5, 3, 400), transport=httpx.MockTransport(upstreams))) as client:
        replies = [client.post("/v1/chat/completions", json=chat("A box.")) for _ in range(2)]
    assert [r.headers["x-hera-route"] for r in replies] == ["cloud", "cloud"] and scorer.calls == 2


def test_a_repeated_state_is_answered_from_the_memo_without_scoring_again(tmp_path, upstreams, monkeypatch):
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", log_dir=tmp_path / "log", threshold=0.5)
    scorer = TextScorer()
    with TestClient(create_app(config, Router(scorer, 0.5, 3, 400), transport=httpx.MockTransport(upstreams))) as client:
        replies = [client.post("/v1/chat/completions", json=chat("A box. difficulty 0.8")) for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 3
    assert {r.headers["x-hera-p-cloud"] for r in replies} == {"0.800000"}
    assert {r.headers["x-hera-route"] for r in replies} == {"cloud"}
    assert scorer.calls == 1  # the second and third were answered from the memo
    steps = [json.loads(line) for line in (tmp_path / "log" / "decisions.jsonl").read_text().splitlines()]
    assert len([s for s in steps if s["kind"] == "step"]) == 3  # each served step is still logged


def test_micro_batcher_scores_an_idle_request_at_once_and_batches_those_that_arrive_meanwhile():
    import threading

    from hera_jax.serve.app import MicroBatcher

    release, sizes = threading.Event(), []

    def score_batch(steps):
        sizes.append(len(steps))
        if len(sizes) == 1:
            assert release.wait(10)  # the first batch is still being scored while the others arrive
        return [float(s.step) for s in steps]

    async def run():
        batcher = MicroBatcher(score_batch)  # no wait
        first = asyncio.ensure_future(batcher.score(StepInput("t", (), "o", 0)))
        while not sizes:  # the lone request went to the scorer without waiting for company
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(batcher.score(StepInput("t", (), "o", i))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert sizes == [1]  # they wait for the batch in flight ...
        release.set()
        return await first, await asyncio.gather(*later), batcher.batches

    first, later, batches = asyncio.run(run())
    assert sizes == [1, 5] and batches == 2  # ... and then go together
    assert first == 0.0 and later == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_replies_say_how_long_the_upstream_took(tmp_path, monkeypatch):
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.15)
        return httpx.Response(200, json=completion("Action: device move"))

    monkeypatch.setenv("CLOUD_KEY", KEY)
    config = ServeConfig(checkpoint=tmp_path / "unused", device_base_url="http://127.0.0.1:8081/v1",
                         cloud_base_url="http://127.0.0.1:8082/v1", log_dir=tmp_path / "log", threshold=0.5)
    app = create_app(config, Router(TextScorer(), 0.5, 3, 400), transport=httpx.MockTransport(slow))
    with TestClient(app) as client:
        reply = client.post("/v1/chat/completions", json=chat("A table. difficulty 0.2"))
    assert reply.status_code == 200 and reply.headers["x-hera-route"] == "device"
    upstream_ms, decision_ms = float(reply.headers["x-hera-upstream-ms"]), float(reply.headers["x-hera-decision-ms"])
    assert 150 <= upstream_ms < 5000 and 0 <= decision_ms < 150


def test_the_chat_route_is_in_the_openapi_schema(tmp_path, upstreams, monkeypatch):
    with make_client(tmp_path, upstreams, monkeypatch) as client:
        schema = client.get("/openapi.json").json()
    chat_route = schema["paths"]["/v1/chat/completions"]["post"]
    assert chat_route["requestBody"]["content"]["application/json"]["schema"]["required"] == ["messages"]
    assert {"/health", "/v1/models", "/metrics", "/v1/hera/episodes/{episode}/outcome"} <= set(schema["paths"])
