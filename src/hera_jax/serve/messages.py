"""From an OpenAI chat request to the router's step (task, history, observation), and the episode it belongs to.

The mapping, for an agent that runs one chat per episode (ReAct loops, most agent frameworks):
- task: the request's `hera_task` field, else the first user message's line that starts with "Task:" (without the
  prefix), else that whole first user message;
- history: each assistant message is an action (its last "Action: ..." line, else its whole text) followed by the
  user message after it (the observation that action led to);
- observation: the last user message (for the first turn, the first user message without its task line);
- step: the number of assistant messages so far.
An explicit `hera_state` object (`{"task", "history": [[action, observation], ...], "observation", "step"}`) in the
request body overrides all of it. The episode id is the `x-hera-episode` header, else the body's `hera_episode`,
else a hash of the system and first user messages (a new chat = a new episode).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hera_jax.serve.router_api import StepInput

_ACTION_LINE = re.compile(r"^\s*action\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_TASK_LINE = re.compile(r"^\s*task\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


class RequestError(ValueError):
    """A client request this proxy cannot route; the message is one line for the 4xx reply."""


def _content(message: Any, index: int) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise RequestError(f"messages[{index}] is not an object")
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str):
        raise RequestError(f"messages[{index}].role must be a string")
    if isinstance(content, list):  # content parts: keep the text ones
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise RequestError(f"messages[{index}].content must be a string or a list of content parts")
    return role, content


def action_of(reply: str) -> str:
    """The action an assistant message took: its last "Action:" line, else its text."""
    found = _ACTION_LINE.findall(reply)
    return (found[-1] if found else reply).strip()


def step_from_messages(body: dict[str, Any]) -> StepInput:
    explicit = body.get("hera_state")
    if explicit is not None:
        if not isinstance(explicit, dict) or not isinstance(explicit.get("task"), str):
            raise RequestError("hera_state must be an object with a string 'task'")
        history = explicit.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 for h in history):
            raise RequestError("hera_state.history must be a list of [action, observation] pairs")
        step = explicit.get("step")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
            raise RequestError("hera_state.step must be a non-negative integer")
        return StepInput(explicit["task"], tuple((str(a), str(o)) for a, o in history),
                         str(explicit.get("observation", "")), step)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    turns = [_content(m, i) for i, m in enumerate(messages)]
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    if not users:
        raise RequestError("messages hold no user message")
    first = turns[users[0]][1]
    task_line = _TASK_LINE.search(first)
    task = body.get("hera_task") if isinstance(body.get("hera_task"), str) else (
        task_line.group(1).strip() if task_line else first.strip())
    history = []
    for i, (role, text) in enumerate(turns):
        if role == "assistant":
            following = next((t for r, t in turns[i + 1:] if r == "user"), None)
            if following is not None:
                history.append((action_of(text), following))
    last = turns[users[-1]][1]
    if users[-1] == users[0] and task_line:
        last = (first[:task_line.start()] + first[task_line.end():]).strip()
    # like the engine's states: the last pair's observation is also the observation now
    return StepInput(task, tuple(history), last, sum(role == "assistant" for role, _ in turns))


def episode_id(body: dict[str, Any], header: str | None) -> str:
    if header:
        return header
    if isinstance(body.get("hera_episode"), str) and body["hera_episode"]:
        return body["hera_episode"]
    messages = body.get("messages") or []
    head = [m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "user")][:2]
    return "chat-" + hashlib.sha256(repr([(m.get("role"), m.get("content")) for m in head]).encode()).hexdigest()[:16]
