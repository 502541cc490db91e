"""Issue 14, findings 5 and 8: the cloud client against a fake OpenAI-compatible server on loopback. The API key
goes to the configured host only, never into an error, a record or a file; a slow, dead or malformed endpoint
costs at most the configured deadlines and becomes a recorded step or a one-line error, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from hera_jax.agents.openai_cloud import CloudRequestError, OpenAIChatAgent, OpenAIConfig
from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.state import AgentState
from tests.conftest import ROOT
from tests.fake_openai import FakeOpenAI, completion

KEY = "sk-planted-5f1e0c9a7b3d42e8a1c6"
VALID = ("look around", "go to kitchen", "open door to kitchen")
STATE = AgentState(task_description="Your task is to boil water.", observation="You are in the hallway.",
                   valid_actions=VALID, env="scienceworld", task="boil", variation=0)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("HERA_PLANTED_KEY", KEY)
    return KEY


@pytest.fixture
def fake():
    servers: list[FakeOpenAI] = []

    def start(*args, **kwargs) -> FakeOpenAI:
        servers.append(FakeOpenAI(*args, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def agent_for(url: str, **overrides) -> OpenAIChatAgent:
    fields = dict(base_url=url, model="fake", api_key_env="HERA_PLANTED_KEY", timeout_s=5.0, max_call_s=10.0,
                  backoff_base_s=0.05, max_retries=2)
    return OpenAIChatAgent(OpenAIConfig(**{**fields, **overrides}), sleep=time.sleep)


# -- finding 5: secrets ---------------------------------------------------------------------------------------------

def test_key_is_not_forwarded_across_a_redirect(key, fake):
    elsewhere = fake()
    redirecting = fake("redirect", location=elsewhere.url.replace("127.0.0.1", "localhost") + "/chat/completions")
    agent = agent_for(redirecting.url)
    with pytest.raises(CloudRequestError, match=r"HTTP 302 redirect to http://localhost; redirects are not followed"):
        agent.act(STATE)
    assert redirecting.requests[0]["headers"]["Authorization"] == f"Bearer {key}"  # the configured host gets it
    assert elsewhere.requests == []  # nothing, let alone the key, reached the other host


def test_key_echoed_by_the_server_is_redacted_from_errors_and_replies(key, fake):
    agent = agent_for(fake("echo-error").url)
    with pytest.raises(CloudRequestError) as error:
        agent.act(STATE)
    assert "HTTP 400" in str(error.value) and "[redacted]" in str(error.value) and key not in str(error.value)
    step = agent_for(fake("echo-reply").url).act(STATE)
    assert key not in json.dumps(step.__dict__, default=str) and "[redacted]" in step.raw_text


def test_a_key_straddling_the_error_cut_is_redacted_whole():
    """Error bodies are redacted before they are cut: a key across the cut leaves no part of itself behind."""
    from hera_jax.agents.openai_cloud import redact

    unknown_provider_key = "zq" + "7Hk2LmP9xR4tV8wB3nC6yF1dJ5sG0aQe"
    body = "x" * 280 + unknown_provider_key + " rest of the body"
    text = redact(f"HTTP 400: {body}", "")[:300]
    assert not any(unknown_provider_key[i:i + 6] in text for i in range(len(unknown_provider_key) - 5))
    assert redact("state_key 3f9a0c1d2b4e5f60 and a/path/file.json stay", "") == (
        "state_key 3f9a0c1d2b4e5f60 and a/path/file.json stay")


def test_a_jwt_and_short_secrets_named_as_such_are_redacted_from_error_bodies():
    """Someone else's credentials in a server's error body: a JSON Web Token of any length, and short values of fields
    named as secrets. Counts and plain words stay readable."""
    from hera_jax.agents.openai_cloud import redact

    jwt = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJ1In0" + ".c2lnbmF0dXJl"
    body = (f'{{"error": "expired {jwt}", "api_key": "ab12cd", "detail": "token=x9y&page=2", '
            f'"password": "hunter2", "usage": {{"prompt_tokens": 5, "max_tokens": 100}}}}')
    text = redact(f"HTTP 401: {body}", "")
    for secret in ("eyJhbGciOiJIUzI1NiJ9", "c2lnbmF0dXJl", "ab12cd", "x9y", "hunter2"):
        assert secret not in text
    assert '"prompt_tokens": 5' in text and '"max_tokens": 100' in text and "page=2" in text
    assert redact("authentication failed: the auth header is missing", "") == (
        "authentication failed: the auth header is missing")


def test_a_stored_command_hides_keys_but_keeps_dataset_paths():
    from hera_jax.agents.openai_cloud import redact_command

    command = redact_command(["python", "experiments/collect.py", "--out", "data/textworld_express_twc_gemma270m",
                              "--agents.cloud-base-url", "https://api.example.com/k/" + "zq7Hk2LmP9xR4tV8wB3nC6yF1dJ5s" + "/v1",
                              "--note", "hf_" + "abcdefghijklmnop1234"])
    assert "data/textworld_express_twc_gemma270m" in command
    assert "zq7Hk2LmP9xR4tV8wB3nC6yF1dJ5s" not in command and "hf_abcdefghijklmnop1234" not in command
    assert command.count("[redacted]") == 2
    unknown = redact_command(["x", "--m", "3f9a0c1d2b4e5f6a7b8c9d0e1f2a3b4c5d6e7f80", "-H", "Bearer", "tok123"])
    assert "3f9a0c1d2b4e5f6a7b8c9d0e1f2a3b4c5d6e7f80" not in unknown and "tok123" not in unknown
    import shlex

    assert shlex.split(command)[3] == "data/textworld_express_twc_gemma270m"  # the stored command still parses


def test_an_unset_key_variable_is_warned_about_for_a_remote_endpoint(monkeypatch, capsys):
    monkeypatch.delenv("HERA_UNSET_KEY", raising=False)
    OpenAIChatAgent(OpenAIConfig(base_url="https://api.example.com/v1", api_key_env="HERA_UNSET_KEY"))
    assert capsys.readouterr().err == (
        "warning: $HERA_UNSET_KEY is unset: requests to api.example.com go out without an API key\n")
    OpenAIChatAgent(OpenAIConfig(base_url="http://127.0.0.1:8000/v1", api_key_env="HERA_UNSET_KEY"))
    assert capsys.readouterr().err == ""  # a local server needs none


@pytest.mark.parametrize("field, value, message", [
    ("model", KEY, "--agents.cloud-model looks like an API key"),
    ("base_url", f"http://user:{KEY}@127.0.0.1:9/v1", "--agents.cloud-base-url"),
    ("base_url", "http://127.0.0.1:9/v1?api_key=abc", "--agents.cloud-base-url must not have a query string"),
    ("base_url", "http://me:secret@127.0.0.1:9/v1", "--agents.cloud-base-url must not hold user:password@"),
    ("api_key_env", "not a name", "--agents.cloud-api-key-env must be the NAME of an environment variable"),
    # keys of other providers, which look like identifiers or path parts
    ("api_key_env", "gsk_" + "9f3kQ2xLm8Vb1Rt7Yw4Zp6Nc", "--agents.cloud-api-key-env must be the NAME"),
    ("base_url", "http://127.0.0.1:9/k/hf_" + "aBcD1234eFgH5678iJkL9012/v1", "--agents.cloud-base-url looks like"),
    ("model", "AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOp", "--agents.cloud-model looks like an API key"),
    # an unknown provider's key: random letters of both cases and digits, no separator
    ("model", "Zx9fK2mQ7vL4pR8s" + "T1wY6uN3bH5jC0dE", "--agents.cloud-model looks like an API key"),
])
def test_key_in_a_wrong_field_is_refused_without_echoing_it(key, field, value, message):
    with pytest.raises(AgentUnavailableError, match=message) as error:
        agent_for("http://127.0.0.1:9/v1", **{field: value})
    assert key not in str(error.value) and "secret" not in str(error.value)


def _collect(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "collect.py"), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)


def _everything_written(folder) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("flags", [
    ["--agents.cloud-model", KEY],
    ["--agents.cloud-base-url", f"http://127.0.0.1:9/v1?key={KEY}"],
    ["--agents.cloud-api-key-env", KEY],
    ["--tasks", KEY],
    ["--agents.cloud-model", "Zx9fK2mQ7vL4pR8s" + "T1wY6uN3bH5jC0dE"],  # an unknown provider's key shape
])
def test_collect_refuses_a_key_typed_into_a_flag_before_writing_anything(tmp_path, script_in_process, flags):
    out = tmp_path / "ds"
    code, stdout, stderr = script_in_process("collect.py", "--out", str(out), "--agents.cloud", "openai", *flags)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and flags[0] in stderr
    assert KEY not in stdout + stderr and flags[-1] not in stdout + stderr
    assert not out.exists()


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_a_real_collection_against_the_endpoint_writes_the_key_nowhere(tmp_path, fake):
    """A short real run (TextWorldExpress, cloud = the fake endpoint echoing the key in every reply): the key is
    in every request's header and in no file, no stdout and no stderr."""
    server = fake("echo-reply")
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HERA_PLANTED_KEY": KEY}
    proc = _collect("--out", str(out), "--env", "textworld_express:twc", "--mode", "cloud", "--agents.cloud", "openai",
                    "--agents.cloud-base-url", server.url, "--agents.cloud-api-key-env", "HERA_PLANTED_KEY",
                    "--agents.cloud-model", "fake-model", "--train-per-task", "1", "--dev-per-task", "0",
                    "--test-per-task", "0", "--max-steps", "2", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert server.requests and all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    written = _everything_written(out)
    assert "[redacted]" in written  # the echoed key was in the replies, recorded redacted
    assert KEY not in written and KEY not in proc.stdout + proc.stderr
    # the echoed replies name no valid action: said at the end, not only counted in the summary
    assert re.search(r"warning: (\d+) of \1 cloud replies could not be parsed into a valid action", proc.stderr)
    n = len(server.requests)
    assert re.search(r"cloud LLM, all (\d+) episodes of the dataset \(\1 collected by this run\)", proc.stdout)
    # resumed with nothing left to do: no call is made, and the totals shown are not claimed for this run
    again = _collect("--out", str(out), "--env", "textworld_express:twc", "--mode", "cloud", "--agents.cloud", "openai",
                     "--agents.cloud-base-url", server.url, "--agents.cloud-api-key-env", "HERA_PLANTED_KEY",
                     "--agents.cloud-model", "fake-model", "--train-per-task", "1", "--dev-per-task", "0",
                     "--test-per-task", "0", "--max-steps", "2", "--no-progress", env=env)
    assert again.returncode == 0 and len(server.requests) == n, again.stderr[-2000:]
    assert re.search(r"cloud LLM, all \d+ episodes of the dataset \(0 collected by this run\)", again.stdout)


# -- finding 8: deadlines and malformed replies ---------------------------------------------------------------------

def test_a_dripping_endpoint_cannot_hold_a_request_past_its_deadline(key, fake):
    agent = agent_for(fake("drip").url, timeout_s=1.5, max_call_s=4.0, max_retries=5)
    started = time.monotonic()
    with pytest.raises(CloudRequestError, match=r"gave up after \d attempts"):
        agent.act(STATE)
    assert time.monotonic() - started < 4.0 + 1.5  # the call deadline, plus at most one request's overshoot


def test_a_dead_endpoint_costs_at_most_the_call_deadline(key, fake):
    agent = agent_for(fake("hang").url, timeout_s=1.0, max_call_s=2.5, max_retries=10)
    started = time.monotonic()
    with pytest.raises(CloudRequestError, match="TimeoutError"):
        agent.act(STATE)
    assert time.monotonic() - started < 2.5 + 1.0
    assert agent.usage.calls <= 3


@pytest.mark.parametrize("status, payload", [
    (200, b"<html>not json</html>"),
    (200, b"[1, 2, 3]"),
    (200, b"{}"),
    (200, json.dumps({"choices": "none"}).encode()),
    (200, json.dumps({"choices": [{"message": {"content": 42}}]}).encode()),
    (200, completion("look around", usage={"prompt_tokens": "many", "completion_tokens": None})),
])
def test_a_malformed_reply_is_a_recorded_unparseable_step(key, fake, status, payload):
    agent = agent_for(fake(("raw", status, payload)).url)
    step = agent.act(STATE)
    well_formed_text = payload.startswith(b'{"choices": [{"message": {"role"')
    assert step.parse_ok is well_formed_text
    assert step.action in VALID  # the environment still gets an action; the record says the reply was unusable
    assert agent.usage.malformed_replies == (0 if well_formed_text else 1)
    assert agent.usage.calls == 1 and agent.usage.retries == 0  # a billed reply is not re-sent
    assert isinstance(step.tokens_in, (int, type(None))) and isinstance(step.tokens_out, (int, type(None)))
