"""The OpenAI-compatible cloud client against a REAL server on loopback: llama.cpp's server (`llama_cpp.server`)
running the shipped Gemma-3-270M GGUF, with a small real HTTP proxy in front of it that injects 429/5xx errors,
delays and bad requests for the first N requests and forwards the rest.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.agents.openai_cloud import (
    CloudBudgetExhausted,
    CloudRequestError,
    OpenAIChatAgent,
    OpenAIConfig,
    prompt_token_bound,
)
from hera_jax.agents.prompting import build_prompt
from hera_jax.state import AgentState

pytestmark = pytest.mark.slow

VALID = ("look around", "go to kitchen", "go to hallway", "pick up metal pot", "open door to kitchen")
STATE = AgentState(
    task_description="Your task is to boil water.",
    observation="This room is called the hallway. A door to the kitchen is open.",
    valid_actions=VALID,
    env="scienceworld",
    task="boil",
    variation=0,
)
SECRET = "sk-hera-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    """`python -m llama_cpp.server` with the shipped GGUF on a free loopback port (one thread: see
    `start_llama_server`); stopped after the module."""
    from hera_jax.agents.models import start_llama_server

    port = free_port()
    try:
        proc = start_llama_server(port, threads=1, alias="gemma-270m")
    except AgentUnavailableError as e:
        pytest.fail(str(e))
    base = f"http://127.0.0.1:{port}/v1"
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a loaded machine: do not fail the module's last test for its teardown
        proc.kill()
        proc.wait()


class FaultProxy:
    """A real HTTP reverse proxy on loopback. `plan` is consumed one entry per request: an int status (answered by
    the proxy with that status), "garbage" (a 200 that is not JSON), "drop" (close without an answer), ("hang",
    seconds) (sleep, then close without an answer), or "pass" (forward). Every request's headers are recorded; when
    the plan is empty requests are forwarded."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.plan: list = []
        self.requests: list[dict] = []
        self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.requests.append({"path": self.path, "headers": dict(self.headers), "time": time.monotonic()})
                action = proxy.plan.pop(0) if proxy.plan else "pass"
                if isinstance(action, int):
                    payload = json.dumps({"error": {"message": f"injected {action}"}}).encode()
                    self.send_response(action)
                    if action == 429:
                        self.send_header("Retry-After", "0.2")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "garbage":  # a 200 that is not JSON (a captive portal, a misrouted page)
                    payload = b"<html>not json</html>"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "drop":  # the connection closes without an answer
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "hang":  # never answers in time; not forwarded, so
                    time.sleep(action[1])                                # the server is not kept busy by it
                    return
                request = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                                 headers={"Content-Type": "application/json"}, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                proxy.forwarded += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(llama_server):
    p = FaultProxy(llama_server)
    yield p
    p.close()


def make_agent(url: str, sleeps: list | None = None, **overrides) -> OpenAIChatAgent:
    fields = dict(base_url=url, model="gemma-270m", api_key_env="HERA_TEST_KEY", timeout_s=60.0,
                  backoff_base_s=0.1, max_reply_tokens=16)
    config = OpenAIConfig(**{**fields, **overrides})

    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        time.sleep(seconds)

    return OpenAIChatAgent(config, sleep=sleep)


def test_acts_against_a_real_server_with_token_and_cost_accounting(llama_server):
    agent = make_agent(llama_server, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    step = agent.act(STATE)
    assert step.tokens_in > 50 and 1 <= step.tokens_out <= 16
    assert step.latency_s > 0 and step.raw_text is not None and step.parse_ok in (True, False)
    assert step.parse_ok == (step.action in VALID)
    usage = agent.usage
    assert (usage.calls, usage.retries, usage.tokens_in, usage.tokens_out) == (1, 0, step.tokens_in, step.tokens_out)
    assert usage.cost_usd == pytest.approx((step.tokens_in * 1.0 + step.tokens_out * 2.0) / 1e6)
    system, user = build_prompt(STATE, agent.prompt)
    assert prompt_token_bound([{"content": system}, {"content": user}]) >= step.tokens_in  # the budget's bound holds
    assert sum(agent.accounting()["parse"].values()) == 1


def test_retries_with_backoff_on_429_5xx_and_timeouts_then_succeeds(proxy):
    sleeps: list[float] = []
    agent = make_agent(proxy.url, sleeps, max_retries=5, timeout_s=8.0)
    proxy.plan = [429, 503, ("hang", 12.0), 500]  # the hanging request outlives the client's timeout
    step = agent.act(STATE)
    assert step.tokens_out >= 1
    assert len(proxy.requests) == 5 and agent.usage.calls == 5
    assert (agent.usage.retries, agent.usage.failed_calls) == (4, 4)
    assert sleeps[0] == pytest.approx(0.2)  # Retry-After of the 429 is honoured
    assert sleeps[1:] == pytest.approx([0.2, 0.4, 0.8], rel=0.11)  # exponential backoff (10% jitter)
    gaps = [b["time"] - a["time"] for a, b in zip(proxy.requests, proxy.requests[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.2


def test_gives_up_after_max_retries_and_does_not_retry_client_errors(proxy):
    agent = make_agent(proxy.url, max_retries=2)
    proxy.plan = [503, 503, 503]
    with pytest.raises(CloudRequestError, match="gave up after 3 attempts.*503"):
        agent.act(STATE)
    assert len(proxy.requests) == 3
    proxy.plan = [400]
    with pytest.raises(CloudRequestError, match="HTTP 400"):
        agent.act(STATE)
    assert len(proxy.requests) == 4  # no retry on 400


def test_call_budget_is_never_exceeded_and_counts_retries(proxy):
    agent = make_agent(proxy.url, max_calls=3)
    proxy.plan = [503]
    agent.act(STATE)  # a failed request and a successful one: 2 calls
    agent.act(STATE)  # 3rd call
    with pytest.raises(CloudBudgetExhausted, match="3/3 calls"):
        agent.act(STATE)
    assert len(proxy.requests) == 3 and agent.usage.calls == 3


def test_a_budget_used_up_by_retries_says_what_failed(proxy):
    agent = make_agent(proxy.url, max_calls=2)
    proxy.plan = [503, 503]
    with pytest.raises(CloudBudgetExhausted, match=r"2/2 calls sent, retrying a failed request \(.*HTTP 503"):
        agent.act(STATE)
    assert len(proxy.requests) == 2


def test_token_budget_is_never_exceeded(proxy):
    system, user = build_prompt(STATE)
    worst_case = prompt_token_bound([{"content": system}, {"content": user + "\nWhat is your next action?"}]) + 16
    budget = worst_case + 100  # room for one call's worst case, not for a second one after real usage
    agent = make_agent(proxy.url, max_total_tokens=budget)
    agent.act(STATE)
    assert agent.usage.tokens > 100
    with pytest.raises(CloudBudgetExhausted, match="token budget"):
        agent.act(STATE)
    assert agent.usage.tokens <= budget
    assert len(proxy.requests) == 1  # the refused call was never sent


def test_api_key_is_sent_but_never_written(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("HERA_TEST_KEY", SECRET)
    agent = make_agent(proxy.url)
    step = agent.act(STATE)
    assert proxy.requests[-1]["headers"].get("Authorization") == f"Bearer {SECRET}"
    written = json.dumps([agent.describe(), agent.accounting(), repr(agent.config), repr(step)])
    assert SECRET not in written and "HERA_TEST_KEY" in json.dumps(agent.config.__dict__)
    assert not any(SECRET in str(v) for v in vars(agent).values())


def test_a_token_in_the_endpoint_path_reaches_no_record():
    import json as json_

    from hera_jax.rollout.collect_app import CollectConfig, manifest_settings
    from hera_jax.agents.config import AgentsConfig

    token = "Zq81xLp0Rk2mVb7TnW4cYs9dHf3Ja6Ge"  # no known provider prefix
    url = f"http://127.0.0.1:9/k/{token}/v1"
    described = json_.dumps(make_agent(url).describe())
    assert token not in described and "127.0.0.1:9/k/" in described
    settings = json_.dumps(manifest_settings(CollectConfig(agents=AgentsConfig(cloud="openai", cloud_base_url=url))))
    assert token not in settings and "127.0.0.1:9/k/" in settings


KEY_LIKE = "tok_4f8a9c2e7b1d6f3a0c5e8b2d7f4a1c9e0b3d5f7a"  # no known provider prefix


def test_an_error_body_is_redacted_whole_before_it_is_cut():
    from hera_jax.agents.openai_cloud import error_excerpt

    # a long token first: once it is redacted the key moves into the first 300 characters
    filler = "Zq81xLp0Rk2mVb7TnW4cYs9dHf3Ja6Ge" * 128
    excerpt = error_excerpt(401, f"{filler} {KEY_LIKE} tail".encode(), key="")
    assert excerpt.startswith("HTTP 401: [redacted] [redacted] tail")
    assert not any(KEY_LIKE[i:i + 12] in excerpt for i in range(len(KEY_LIKE) - 12))


def test_a_key_like_variable_name_is_not_echoed_in_the_unset_warning(capsys):
    make_agent("http://10.255.255.1:8000/v1", api_key_env=KEY_LIKE)
    err = capsys.readouterr().err
    assert "is unset" in err and "looks like a key" in err
    assert KEY_LIKE[4:20] not in err


def test_a_token_in_the_endpoint_path_stays_out_of_request_errors():
    agent = make_agent(f"http://127.0.0.1:9/k/{KEY_LIKE}/v1", max_retries=0, timeout_s=2.0)
    with pytest.raises(CloudRequestError) as error:
        agent.chat([{"role": "user", "content": "hi"}])
    assert "127.0.0.1:9/k/" in str(error.value) and KEY_LIKE[4:20] not in str(error.value)
