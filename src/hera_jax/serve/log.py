"""The proxy's decision log: every served step at once in `decisions.jsonl`, and each finished episode as step
records of the project's schema in `steps.jsonl` (a dataset folder `rl_iter.py`'s stage-2 grouping reads).

A step is appended to `decisions.jsonl` (one unbuffered write of one line, under a lock) before its reply leaves the
proxy, so a crash loses nothing served. When the client reports an episode's outcome (`POST /v1/hera/episodes/{id}/outcome`) its steps
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
        # `_lock` guards the pending steps and the decision file and is held for microseconds, as the event loop
        # takes it for every request; `_finish_lock` keeps finished episodes' fsynced writes in order, off that lock
        self._lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._file = None
        self._pending: dict[str, list[ServedStep]] = {}
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
                # the steps the outcome finished are the episode's first `steps` pending ones; a step served while
                # the outcome was being written comes before its line in the file but still waits for an outcome
                waiting = self._pending.pop(entry["episode_id"], [])
                finished = entry.get("steps")
                if isinstance(finished, int) and waiting[finished:]:
                    self._pending[entry["episode_id"]] = waiting[finished:]
            elif entry.get("kind") == "step":
                fields = {f.name: entry[f.name] for f in dataclasses.fields(ServedStep)}
                self._pending.setdefault(entry["episode_id"], []).append(ServedStep(**fields))

    def _append(self, entry: dict[str, Any]) -> None:
        """One line, in one write to the kernel (caller holds `_lock`); the file stays open between lines."""
        line = memoryview((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
        if self._file is None:
            self._file = open(self.folder / DECISIONS_FILE, "ab", buffering=0)
        while line:
            line = line[self._file.write(line):]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def cloud_calls(self, episode_id: str) -> int:
        with self._lock:
            return sum(s.route == "cloud" for s in self._pending.get(episode_id, ()))

    def record(self, step: ServedStep) -> None:
        with self._lock:
            self._append({"kind": "step", **dataclasses.asdict(step)})
            self._pending.setdefault(step.episode_id, []).append(step)

    def finish(self, episode_id: str, success: bool, score: float | None = None) -> int:
        """Write the episode's records; returns how many steps it had. KeyError when the id has no steps.

        Runs in a worker thread: the records' write and fsync happen outside `_lock`, so the event loop's
        `record`/`cloud_calls` never wait for a disk. The outcome line comes after the records, as before: a crash
        between the two leaves the episode pending again, never finished without its records."""
        with self._finish_lock:
            with self._lock:
                steps = self._pending.pop(episode_id, None)
            if not steps:
                raise KeyError(episode_id)
            try:
                records = self._records(episode_id, sorted(steps, key=lambda s: s.step), success, score)
                append_episode(self.folder / STEPS_FILE, records)
            except BaseException:
                with self._lock:  # not written: its steps wait for the outcome again, ahead of any that came since
                    self._pending[episode_id] = steps + self._pending.get(episode_id, [])
                raise
            with self._lock:
                self._append({"kind": "outcome", "episode_id": episode_id, "success": success, "score": score,
                              "steps": len(records)})
            return len(records)

    @staticmethod
    def _records(episode_id: str, steps: list[ServedStep], success: bool, score: float | None) -> list[StepRecord]:
        final = 1.0 if success else 0.0
        return [StepRecord(
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
