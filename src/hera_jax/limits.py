"""Declared ranges of config fields, checked once at parse time (hera_jax.cli.run_cli) with the flag's own name.

Each config dataclass lists its numeric fields' ranges in a `LIMITS` class variable; `validate` walks a config and
its nested configs (flags `--train.max-epochs` etc.) and raises a `ConfigError` naming the first bad flag.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from hera_jax.errors import HeraError


# What API keys look like, by their providers' prefixes (OpenAI, DashScope/Qwen, Anthropic sk-; Groq gsk_; Hugging
# Face hf_; xAI; GitHub; Replicate; Perplexity; Google AIza; AWS AKIA), and bearer tokens in text.
PROVIDER_KEY_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-|gsk_|hf_|xai-|ghp_|gho_|github_pat_|r8_|pplx-|AIza|AKIA)[A-Za-z0-9_\-]{16,}"
    r"|Bearer\s+\S+")
# An unknown provider's key: 24+ random letters (both cases) and 3+ digits; model names and paths have separators.
UNKNOWN_KEY_PATTERN = re.compile(
    r"(?<![A-Za-z0-9_\-])(?=(?:[A-Za-z]*[0-9]){3})(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{24,}"
    r"(?![A-Za-z0-9_\-])")
KEY_PATTERN = re.compile(f"{PROVIDER_KEY_PATTERN.pattern}|{UNKNOWN_KEY_PATTERN.pattern}")
# What redaction also hides in text from outside (error bodies): any long run of key characters with a digit in it.
# A key of an unknown provider looks like this; so may a request id, which costs nothing to hide.
TOKEN_PATTERN = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{28,}")
# A JSON Web Token (three base64url parts, the first an encoded '{"'), whatever its parts' lengths.
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
# The value of a field named as a secret (api_key=..., "token": "...", password: ...), however short it is.
SECRET_FIELD_PATTERN = re.compile(
    r"""(?i)((?<![A-Za-z0-9])(?:[a-z]+[_\-])?(?:api[_\-]?key|token|secret|password|passwd|auth|authorization)"""
    r"""["']?\s*[:=]\s*["']?)(?!\[redacted\])([^"'\s,;&}\]]+)""")


REDACTED = "[redacted]"


def redact_secrets(text: str) -> str:
    """`text` with anything key-like hidden: a known provider's key, a bearer token, a JSON Web Token, a long token
    with a digit, and the value of a field named as a secret (`api_key=...`, `"token": "..."`)."""
    text = TOKEN_PATTERN.sub(REDACTED, KEY_PATTERN.sub(REDACTED, JWT_PATTERN.sub(REDACTED, text)))
    return SECRET_FIELD_PATTERN.sub(lambda m: m.group(1) + REDACTED, text)


def redact_url(url: str) -> str:
    """`url` with anything key-like in its path hidden; the scheme and host stay readable (a long host name is not a
    key: credentials in the host part are refused as flags, hera_jax.agents.openai_cloud.url_problem)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return redact_secrets(url)
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}{slash}{redact_secrets(path)}"


class ConfigError(HeraError):
    """A flag's value is out of its declared range (not a ValueError, so tyro passes it through unchanged)."""


@dataclasses.dataclass(frozen=True)
class Range:
    """low <= value <= high (strict where `*_open`); None = unbounded. Applies to each element of a tuple."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and math.isnan(value):
            return "is NaN"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return None


@dataclasses.dataclass(frozen=True)
class Check:
    """Any other rule: `rule(value)` returns what is wrong, or None. `echo=False` keeps the value out of the
    message (for values that may be secrets)."""

    rule: Callable[[Any], str | None]
    echo: bool = True

    def problem(self, value: Any) -> str | None:
        return self.rule(value)


def at_least(low: float) -> Range:
    return Range(low=low)


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
COUNT = Range(low=1)  # a number of things that must happen at least once
PROBABILITY = Range(0.0, 1.0)


def looks_like_a_key(text: str) -> bool:
    """Whether `text` holds something key-like. In a URL only a known provider's key counts: an endpoint's path may
    carry its own token, which is accepted and redacted wherever the URL is written (`redact_url`). A run without
    separators counts only if it also looks random (`_looks_random`): `Qwen2p5Max20250125Preview` is a model name."""
    if PROVIDER_KEY_PATTERN.search(text):
        return True
    return "://" not in text and any(_looks_random(m.group()) for m in UNKNOWN_KEY_PATTERN.finditer(text))


def _looks_random(word: str) -> bool:
    """Random key characters switch class (lower, upper, digit) at 1 - (26² + 26² + 10²) / 62² of neighbours; a name
    built of words and numbers (`Llama3p1Instruct70BTurbo2024`) keeps its runs and switches far less often."""
    classes = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in word]
    switches = sum(a != b for a, b in zip(classes, classes[1:]))
    return switches >= RANDOM_SWITCH_SHARE * (len(word) - 1)


# Below this share of class switches a separator-free run reads as a name: few random keys of 24 or more
# characters fall below it, and model names such as `GPT4oMini20240718Preview` stay well below it.
RANDOM_SWITCH_SHARE = 0.4


def secret_problem(text: str) -> str | None:
    """Why `text` (a flag's value) must not be used: it looks like an API key; or None."""
    if looks_like_a_key(text):
        return ("looks like an API key; keys go only in the environment variable named by the --*-api-key-env flag "
                "and are never passed as a flag (nothing was written)")
    return None


def flag_name(prefix: str, field: str) -> str:
    return f"{prefix}{field.replace('_', '-')}"


def validate(config: Any, prefix: str = "--") -> None:
    """Raise ConfigError for the first field of `config` (or of a nested config) outside its declared range, or
    holding something that looks like an API key (a key typed into the wrong flag must never reach a record)."""
    limits = getattr(type(config), "LIMITS", {})
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flag = flag_name(prefix, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, flag + ".")
            continue
        for item in _items(value):
            problem = secret_problem(str(item)) if isinstance(item, (str, os.PathLike)) else None
            if problem:
                raise ConfigError(f"{flag} {problem}")
        limit = limits.get(field.name)
        if limit is None or value is None:
            continue
        for item in _items(value):
            problem = limit.problem(item)
            if problem:
                raise ConfigError(f"{flag} {problem}" + (f", got {item!r}" if getattr(limit, "echo", True) else ""))


def _items(value: Any) -> Iterator[Any]:
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _items(item)
    else:
        yield value
