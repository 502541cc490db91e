"""The proxy's decision log: every served step at once in `decisions.jsonl`, and each finished episode as step
records of the project's schema in `steps.jsonl` (a dataset folder `rl_iter.py`'s stage-2 grouping reads).

A step is appended to `decisions.jsonl` (locked, flushed) before its reply leaves the proxy, so a crash loses
nothing served. When the client reports an episode's outcome (`POST /v1/hera/episodes/{id}/outcome`) its steps
become `StepRecord`s (who acted, the reply's action, p_cloud, the routing reason, tokens, latency, the success the
client reported) appended as one episode. No key or header is ever logged: only the routing facts and the reply.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

from hera_jax.rollout.records import MANIFEST_FILE, STEPS_FILE, StepRecord, append_episode, now_iso, write_json_atomic
from hera_jax.state import state_key

DECISIONS_FILE = "decisions.jsonl"
SERVED_ENV = "served"  # the environment name of a proxy's dataset: the client's own agent and tasks


@dataclasses.dataclass
class ServedStep:
    episode_id: str
    step: int
    state_text: str
    route: str  # who answered: device or cloud
    routed: str  # who the router picked (differs after a failover)
    action: str
    p_cloud: float
    threshold: float
    reason: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float
    status: int
    cloud_calls_so_far: int
    task: str


class DecisionLog:
    def __init__(self, folder: str | Path, agents: dict[str, Any], settings: dict[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: dict[str, list[ServedStep]] = {}
        self._finished: set[str] = set()
        manifest = self.folder / MANIFEST_FILE
        if not manifest.exists():
            write_json_atomic(manifest, {"env": {"name": SERVED_ENV}, "agents": agents, "settings": settings,
                                         "mode": "served traffic (hera-serve decision log)", "created": now_iso(),
                                         "format_version": 1})
        self._restore()

    def _restore(self) -> None:
        """Steps of episodes whose outcome has not come yet survive a restart: re-read them from the log."""
        path = self.folder / DECISIONS_FILE
        if not path.exists():
            return
        for raw in path.read_bytes().splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a torn last line
            if entry.get("kind") == "outcome":
                self._pending.pop(entry["episode_id"], None)
                self._finished.add(entry["episode_id"])
            elif entry.get("kind") == "step":
                fields = {f.name: entry[f.name] for f in dataclasses.fields(ServedStep)}
                self._pending.setdefault(entry["episode_id"], []).append(ServedStep(**fields))

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.folder / DECISIONS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()

    def cloud_calls(self, episode_id: str) -> int:
        with self._lock:
            return sum(s.route == "cloud" for s in self._pending.get(episode_id, ()))

    def record(self, step: ServedStep) -> None:
        with self._lock:
            self._append({"kind": "step", **dataclasses.asdict(step)})
            self._pending.setdefault(step.episode_id, []).append(step)

    def finish(self, episode_id: str, success: bool, score: float | None = None) -> int:
        """Write the episode's records; returns how many steps it had. KeyError when the id has no steps."""
        with self._lock:
            steps = self._pending.get(episode_id)
            if not steps:
                raise KeyError(episode_id)
            steps = sorted(steps, key=lambda s: s.step)
            final = 1.0 if success else 0.0
            records = [StepRecord(
                episode_id=episode_id, env=SERVED_ENV, task=s.task or "served", variation=0, split="train", step=i,
                episode_steps=len(steps), state_text=s.state_text, state_key=state_key(s.state_text), actor=s.route,
                action=s.action, device_action=s.action if s.route == "device" else None,
                cloud_action=s.action if s.route == "cloud" else None,
                reward=(final if score is None else float(score)) if i == len(steps) - 1 else 0.0,
                score=float(score) if score is not None else final, done=i == len(steps) - 1, success=success,
                cloud_calls_so_far=s.cloud_calls_so_far, p_cloud=s.p_cloud, route_reason=s.reason,
                **{f"{s.route}_tokens_in": s.tokens_in, f"{s.route}_tokens_out": s.tokens_out,
                   f"{s.route}_latency_s": s.latency_s})
                for i, s in enumerate(steps)]
            append_episode(self.folder / STEPS_FILE, records)
            self._append({"kind": "outcome", "episode_id": episode_id, "success": success, "score": score})
            del self._pending[episode_id]
            self._finished.add(episode_id)
            return len(records)
