"""Cloud agent: any OpenAI-compatible chat-completions endpoint (Qwen-Max's compatible mode, vLLM, Ollama,
llama.cpp's server).

- Base URL, model and the NAME of the environment variable holding the key come from config/CLI; the key itself is
  read from the environment at call time and is never stored on the object, in `describe()`, manifests or logs.
- The key goes only to the configured host: redirects are never followed (a 3xx is an error naming the other host),
  server text is redacted before it reaches an error message, and a key typed into a flag or the URL is refused.
- A deadline per request (connect to last byte: a server dripping one byte a second cannot hold it longer) and a
  deadline per call over all retries; retries with exponential backoff (honouring Retry-After) on 429, 5xx and
  connection errors.
- A malformed reply (not JSON, no choices, wrong types) is counted and becomes an empty reply, which the agent
  records as a step with parse_ok=False; it is not retried (it may have been billed).
- A hard budget: a request is sent only if, counting it, neither the call cap nor the token cap can be exceeded.
  The token check uses an upper bound on the prompt (UTF-8 bytes + per-message overhead: a byte-level BPE token
  is at least one byte) plus the reply cap, so even the worst case stays inside the budget.
- Token and cost accounting from the server's `usage`.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import re
import shlex
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from hera_jax.agents.base import AgentStep, CloudBudgetExhausted  # noqa: F401  (raised here; re-exported)
from hera_jax.agents.llm import AgentUnavailableError, Generation, ParseStats, timed_act
from hera_jax.agents.prompting import PromptConfig
from hera_jax.errors import HeraError
from hera_jax.limits import KEY_PATTERN, REDACTED, redact_secrets, redact_url, secret_problem
from hera_jax.state import AgentState

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
TEMPLATE_OVERHEAD_TOKENS = 16  # per message: role markers and separators of chat templates
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CloudRequestError(HeraError, RuntimeError):
    """The endpoint kept failing (or failed with a non-retryable status); the message has status and body."""


@dataclasses.dataclass(frozen=True)
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable with the key; may be unset (local)
    timeout_s: float = 60.0  # deadline of one request, from connecting to the last byte of the reply
    max_call_s: float = 120.0  # deadline of one call over all its retries and backoff sleeps
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    max_calls: int = 1000  # hard cap on requests sent (retries count: a failed request may still be billed)
    max_total_tokens: int = 2_000_000  # hard cap on prompt + completion tokens
    max_reply_tokens: int = 48
    temperature: float = 0.0
    price_in_per_mtok: float = 0.0  # USD per million prompt tokens, for cost accounting
    price_out_per_mtok: float = 0.0


@dataclasses.dataclass
class Usage:
    calls: int = 0  # requests sent, including failed ones
    failed_calls: int = 0
    malformed_replies: int = 0  # replies that were not a chat completion (recorded as unparseable steps)
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    reserved_unbilled: int = 0  # worst-case tokens of failed requests (no usage reported): counted against budget
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out + self.reserved_unbilled


def prompt_token_bound(messages: list[dict]) -> int:
    """An upper bound on the prompt tokens of `messages` for byte-level BPE tokenizers."""
    return sum(len(m["content"].encode("utf-8")) + TEMPLATE_OVERHEAD_TOKENS for m in messages) + 8


def url_problem(url: str) -> str | None:
    """Why `url` is not a usable endpoint (without echoing it: it may hold a key); or None."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return ("must not hold user:password@ credentials; put the key in the environment variable named by "
                "the --*-api-key-env flag (nothing was written)")
    if parts.query or parts.fragment:
        return ("must not have a query string or fragment (keys never go in the URL; use the environment "
                "variable named by the --*-api-key-env flag; nothing was written)")
    return secret_problem(url)


def env_name_problem(name: str) -> str | None:
    if ENV_NAME.fullmatch(name) and secret_problem(name) is None:
        return None
    return ("must be the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), not the key "
            "itself (nothing was written)")


def redact(text: str, key: str) -> str:
    """`text` with the key (and anything key-like) replaced, before it goes into an error or a record. Redact
    whole texts, then cut them: a key cut in two no longer looks like one."""
    if key:
        text = text.replace(key, REDACTED)
    return redact_secrets(text)


ERROR_BODY_BYTES = 1 << 20  # an error body read for its message; anything beyond is not shown anyway
ERROR_EXCERPT_CHARS = 300


def error_excerpt(status: int, payload: bytes, key: str) -> str:
    """The start of an error reply, redacted as a whole and then cut. Where the body itself had to be cut, its last
    run of key characters is dropped: a key cut in two would no longer look like one to the redaction."""
    text = payload[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    if len(payload) > ERROR_BODY_BYTES:
        text = re.sub(r"[A-Za-z0-9_\-]+$", "", text)
    return redact(f"HTTP {status}: {text}", key)[:ERROR_EXCERPT_CHARS]


def redact_command(argv: list[str]) -> str:
    """A command line as it may be stored (a manifest's `command`): each argument redacted like outside text (so an
    unknown provider's key is hidden too), except file paths (arguments with a `/` and no `://`), where only key
    shapes are (a known provider's, or random letters of both cases with digits), so dataset paths such as
    `data/textworld_express_twc_gemma270m` stay readable. A
    `Bearer` split from its token hides the token. Every part is shell-quoted: the command still parses."""
    parts = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1].strip().lower() == "bearer":
            hidden = REDACTED
        elif "/" in arg and "://" not in arg:
            hidden = KEY_PATTERN.sub(REDACTED, arg)
        else:
            hidden = redact(arg, "")
        parts.append(shlex.quote(hidden))
    return " ".join(parts)


def _as_count(value: Any, default: int) -> int:
    """A token count from the server's usage, or `default` when it is missing or not a non-negative integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def reply_text(response: Any) -> str | None:
    """The text of a chat-completions reply, or None when the reply does not have that shape."""
    try:
        message = response["choices"][0]["message"]
        text = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    if text is None:  # a reply without text (e.g. only a refusal or tool call): an empty, unparseable reply
        return ""
    return text if isinstance(text, str) else None


def config_problem(config: OpenAIConfig) -> str | None:
    """What is wrong with the endpoint flags (never echoing a value: it may be the key), or None."""
    env_problem = env_name_problem(config.api_key_env)
    if env_problem is not None:
        return f"--agents.cloud-api-key-env {env_problem}"
    key = os.environ.get(config.api_key_env, "")
    for flag, value, problem in (("--agents.cloud-base-url", config.base_url, url_problem(config.base_url)),
                                 ("--agents.cloud-model", config.model, secret_problem(config.model))):
        if problem is None and len(key) >= 8 and key in value:
            problem = "holds the API key; it goes only in the environment variable (nothing was written)"
        if problem is not None:
            return f"{flag} {problem}"
    return None


def _shutdown(connection: http.client.HTTPConnection) -> None:
    """Unblock a request that passed its deadline (close() alone does not wake a blocked recv)."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class OpenAIChatAgent:
    is_stand_in = False

    def __init__(self, config: OpenAIConfig = OpenAIConfig(), prompt: PromptConfig = PromptConfig(),
                 match_cutoff: float = 0.75, sleep: Callable[[float], None] = time.sleep):
        problem = config_problem(config)
        if problem is not None:
            raise AgentUnavailableError(problem)
        self.config = config
        host = urllib.parse.urlsplit(config.base_url).hostname or ""
        if not os.environ.get(config.api_key_env) and host not in ("localhost", "127.0.0.1", "::1"):
            name = redact_secrets(config.api_key_env)
            hint = (" (that looks like a key: pass the NAME of the variable that holds it)"
                    if name != config.api_key_env else "")
            print(f"warning: ${name} is unset: requests to {host} go out without an API key{hint}", file=sys.stderr)
        self.prompt = prompt
        self.match_cutoff = match_cutoff
        self.usage = Usage()
        self.parse_stats = ParseStats()
        self.name = f"openai:{config.model}"
        self._sleep = sleep
        self._jitter = random.Random(0)  # jitter only spreads retries; it does not affect any record

    # -- budget ---------------------------------------------------------------------------------------------------
    def _check_budget(self, messages: list[dict]) -> int:
        """Reply-token cap for the next call, or raise if it could break the budget."""
        c, u = self.config, self.usage
        if u.calls + 1 > c.max_calls:
            raise CloudBudgetExhausted(f"cloud call budget reached: {u.calls}/{c.max_calls} calls sent")
        room = c.max_total_tokens - u.tokens - prompt_token_bound(messages)
        reply_cap = min(c.max_reply_tokens, room)
        if reply_cap < 1:
            raise CloudBudgetExhausted(
                f"cloud token budget reached: {u.tokens}/{c.max_total_tokens} tokens used, the next prompt may "
                f"need up to {prompt_token_bound(messages)}"
            )
        return reply_cap

    # -- transport ------------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict, deadline: float) -> tuple[int, http.client.HTTPMessage, bytes]:
        """(status, headers, body) of one POST that ends by `deadline` (time.monotonic) whatever the server does.
        The exchange runs in a helper thread: a server dripping its headers keeps a socket read alive past any
        socket timeout, so only waiting for the thread with a deadline bounds it; the abandoned thread stops at the
        server's next byte or at its socket timeout."""
        url = urllib.parse.urlsplit(self.config.base_url.rstrip("/") + "/chat/completions")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left for another request")
        connection_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = connection_type(url.hostname, url.port, timeout=remaining)
        outcome: dict[str, Any] = {}

        def exchange() -> None:
            try:
                connection.request("POST", url.path, body=json.dumps(body).encode("utf-8"), headers=self._headers())
                response = connection.getresponse()
                chunks = []
                while chunk := response.read1(65536):
                    if time.monotonic() > deadline:
                        raise TimeoutError("past the deadline")
                    chunks.append(chunk)
                outcome["reply"] = (response.status, response.headers, b"".join(chunks))
            except BaseException as e:  # handed to the caller's thread
                outcome["error"] = e

        worker = threading.Thread(target=exchange, daemon=True)
        worker.start()
        worker.join(remaining)
        if worker.is_alive() or isinstance(outcome.get("error"), TimeoutError) or time.monotonic() > deadline:
            _shutdown(connection)
            raise TimeoutError(f"no complete reply within the {self.config.timeout_s:g}s deadline")
        connection.close()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["reply"]

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.config.backoff_max_s)
            except ValueError:
                pass
        delay = self.config.backoff_base_s * 2**attempt
        return min(delay * (1 + 0.1 * self._jitter.random()), self.config.backoff_max_s)

    def chat(self, messages: list[dict]) -> dict:
        """One chat completion with retries, within `max_call_s`; every request sent counts against the budget.
        Returns the reply ({} when it was not JSON)."""
        c = self.config
        key = os.environ.get(c.api_key_env, "")
        started = time.monotonic()
        call_deadline = started + c.max_call_s
        last_error = ""
        attempts = 0
        for attempt in range(c.max_retries + 1):
            try:
                reply_cap = self._check_budget(messages)
            except CloudBudgetExhausted as e:
                if not last_error:
                    raise
                # the budget ran out on retries: the failure that used it up is what the user needs to see
                raise CloudBudgetExhausted(f"{e}, retrying a failed request ({redact_url(c.base_url)}: "
                                           f"{last_error})") from None
            body = {"model": c.model, "messages": messages, "max_tokens": reply_cap, "temperature": c.temperature}
            self.usage.calls += 1
            attempts += 1
            retry_after = None
            try:
                status, headers, payload = self._post(body, min(time.monotonic() + c.timeout_s, call_deadline))
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                last_error = redact(f"{e.__class__.__name__}: {e}", key)
            else:
                if 300 <= status < 400:
                    self._failed(messages, reply_cap)
                    target = urllib.parse.urlsplit(headers.get("Location", ""))
                    raise CloudRequestError(
                        f"{redact_url(c.base_url)}: HTTP {status} redirect to {target.scheme or '?'}://{target.hostname or '?'}; "
                        "redirects are not followed, so the key never leaves the configured host: set "
                        "--agents.cloud-base-url to the final endpoint"
                    )
                if status < 300:
                    response = self._decode(payload)
                    self._account(response, messages, reply_cap)
                    return response
                last_error = error_excerpt(status, payload, key)
                if status not in RETRY_STATUS:
                    self._failed(messages, reply_cap)
                    raise CloudRequestError(f"{redact_url(c.base_url)}: {last_error}")
                retry_after = headers.get("Retry-After")
            self._failed(messages, reply_cap)
            if attempt < c.max_retries:
                delay = self._backoff(attempt, retry_after)
                if time.monotonic() + delay >= call_deadline:
                    break
                self.usage.retries += 1
                self._sleep(delay)
        raise CloudRequestError(
            f"{redact_url(c.base_url)}: gave up after {attempts} attempts in {time.monotonic() - started:.0f}s "
            f"(--agents.cloud-timeout-s {c.timeout_s:g} per request, {c.max_call_s:g}s per call); last error {last_error}"
        )

    def _decode(self, payload: bytes) -> dict:
        try:
            response = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            response = None
        self._counted_malformed = not isinstance(response, dict)
        if self._counted_malformed:
            self.usage.malformed_replies += 1
            return {}
        return response

    def _failed(self, messages: list[dict], reply_cap: int) -> None:
        # A failed request reports no usage; count its worst case so the token budget holds even if it was billed.
        self.usage.failed_calls += 1
        self.usage.reserved_unbilled += prompt_token_bound(messages) + reply_cap

    def _account(self, response: dict, messages: list[dict], reply_cap: int) -> None:
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        # a missing or malformed count is charged at its worst case, so the budget holds
        tokens_in = _as_count(usage.get("prompt_tokens"), prompt_token_bound(messages))
        tokens_out = _as_count(usage.get("completion_tokens"), reply_cap)
        self.usage.tokens_in += tokens_in
        self.usage.tokens_out += tokens_out
        self.usage.cost_usd += (tokens_in * self.config.price_in_per_mtok
                                + tokens_out * self.config.price_out_per_mtok) / 1e6

    # -- agent ----------------------------------------------------------------------------------------------------
    def generate(self, system: str, user: str) -> Generation:
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": user + "\nWhat is your next action?"}]
        self._counted_malformed = False  # chat() sets it when the reply was not a JSON object
        response = self.chat(messages)
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        text = reply_text(response)
        if text is None and not self._counted_malformed:  # JSON but no completion in it ({} included)
            self.usage.malformed_replies += 1
        # a server that echoes the key must not get it into the step records
        text = redact(text or "", os.environ.get(self.config.api_key_env, ""))
        return Generation(text=text, tokens_in=_as_count(usage.get("prompt_tokens"), None),
                          tokens_out=_as_count(usage.get("completion_tokens"), None))

    def act(self, state: AgentState) -> AgentStep:
        return timed_act(self, state)

    def describe(self) -> dict:
        # What shapes the replies only: budgets, timeouts and prices may change when a collection is resumed.
        # The API key is never here (the config holds only the name of its environment variable).
        config = {k: getattr(self.config, k) for k in ("base_url", "model", "temperature", "max_reply_tokens")}
        config["base_url"] = redact_url(config["base_url"])  # a token in the URL's path stays off disk
        return {"name": self.name, "kind": "llm", "backend": "openai-compatible", "config": config,
                "prompt": dataclasses.asdict(self.prompt), "match_cutoff": self.match_cutoff}

    def accounting(self) -> dict:
        """Calls, tokens, cost and reply-parsing counts so far (kept out of `describe`, which must be stable)."""
        return {**dataclasses.asdict(self.usage), "tokens": self.usage.tokens,
                "parse": dataclasses.asdict(self.parse_stats)}
