"""ScienceWorld adapter (the offline default): 30 task types, gold paths, valid actions from the simulator."""

from __future__ import annotations

from importlib import metadata

from hera_jax.envs.base import EnvUnavailableError, LazyActions, Observation, StepResult, UnknownTaskError
from hera_jax.envs.jvm import constant_identity_hashes

_SPLIT_GETTERS = {"train": "get_variations_train", "dev": "get_variations_dev", "test": "get_variations_test"}
# Bumped whenever `canonical_observation` changes, so datasets collected with another format are not mixed.
OBSERVATION_FORMAT = "sorted-lists-v1"


def canonical_observation(text: str) -> str:
    """Sort each run of tab-indented list lines ("In it, you see: ...").

    ScienceWorld lists a room's objects in an order that changes each time a task is loaded; without this, the same
    state would get a different text (and `state_key`) in every rollout, and RL could not group identical states.
    """
    lines = text.split("\n")
    out: list[str] = []
    run: list[str] = []
    for line in lines + [""]:
        if line.startswith("\t"):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        out.append(line)
    return "\n".join(out[:-1])


class ScienceWorld:
    name = "scienceworld"
    reuse_safe = True  # a reused JVM gives the same records as a fresh one (envs/jvm.py)
    observation_format = OBSERVATION_FORMAT

    def __init__(self, simplification: str = "easy", step_limit: int = 100, jar_path: str = ""):
        try:
            import scienceworld.scienceworld as package
            from scienceworld import ScienceWorldEnv
        except ImportError as e:  # pragma: no cover - exercised only without the extra installed
            raise EnvUnavailableError(
                "ScienceWorld is not installed: pip install 'hera_jax[rollouts]' (needs Java 17 on PATH)"
            ) from e
        self.version = metadata.version("scienceworld")
        self.simplification = simplification
        constant_identity_hashes(package)  # makes the JVM reusable between episodes (envs/jvm.py)
        self._env = ScienceWorldEnv(jar_path, envStepLimit=step_limit)
        self._task_names = list(self._env.get_task_names())
        self._step_limit = step_limit
        # the Java classes a load and a listing call, looked up once (each py4j lookup is a round trip)
        jvm = self._env._gateway.jvm
        self._join = jvm.java.lang.String.join
        self._object_ids = jvm.util.UniqueIdentifier
        self._gold_routes = jvm.scienceworld.goldagent.PathFinder
        self._variations: dict[str, dict[str, list[int]]] = {}
        # (task, variation) -> gold path; a repeated episode of a variation then loads it without the gold path
        self._gold_paths: dict[tuple[str, int], tuple[str, ...]] = {}
        self._last_score = 0
        self._moves = 0  # calls to the simulator's step since the JVM started: which state valid actions belong to

    def task_names(self) -> list[str]:
        return list(self._task_names)

    def _check_task(self, task: str) -> None:
        if task not in self._task_names:
            raise UnknownTaskError(
                f"unknown ScienceWorld task {task!r}; known tasks: {', '.join(self._task_names)}"
            )

    def _load(self, task: str, variation: int, gold_path: bool = False) -> None:
        """Load a task from a clean slate: ScienceWorld keeps two things across loads in its JVM, an object-id
        counter that only its `reset` zeroes, and the gold-path finder's cache of routes between rooms, filled by
        whatever variation needed a route first. With either left over, a variation's gold path (which doors, which
        room to search) and object ids followed what the JVM ran before (seen on chemistry-mix-paint, melt, boil and
        test-conductivity variations): both are cleared before every load."""
        self._check_task(task)
        self._object_ids.reset()
        self._gold_routes.precomputedExhaustivePaths().clear()
        self._env.server.load(task, variation, self.simplification, gold_path)

    def variations(self, task: str, split: str) -> list[int]:
        if split not in _SPLIT_GETTERS:
            raise ValueError(f"split must be one of {sorted(_SPLIT_GETTERS)}, got {split!r}")
        if task not in self._variations:  # one load per task for all three splits
            self._load(task, 0)
            self._variations[task] = {name: list(getattr(self._env, getter)())
                                      for name, getter in _SPLIT_GETTERS.items()}
        return list(self._variations[task][split])

    def reset(self, task: str, variation: int) -> Observation:
        """A variation's gold path is made once (a load with the gold path costs several times one without) and
        kept; every episode starts from a load without it. `ScienceWorldEnv.reset` would make the gold path again
        each time. Each episode, and each gold path, is the same whatever ran before on this JVM (tested)."""
        key = (task, variation)
        if key not in self._gold_paths:
            self._load(task, variation, gold_path=True)
            self._gold_paths[key] = tuple(self._env.server.getGoldActionSequence())
        self._load(task, variation)
        self._last_score = 0
        result = self._advance("look around")  # what `ScienceWorldEnv.reset` returns
        return Observation(
            observation=result.observation,
            task_description=self._env.get_task_description(),
            valid_actions=result.valid_actions,
            gold_path=self._gold_paths[key],
        )

    def step(self, action: str) -> StepResult:
        return self._advance(action)

    def _advance(self, action: str) -> StepResult:
        """`ScienceWorldEnv.step` without what it computes for its info dict that we never read: the free look,
        inventory and task actions, and above all the valid actions (most of a step's Java time), which are fetched
        only when an agent reads them (`LazyActions`). Same observations, scores and ends (tested against it)."""
        server = self._env.server
        observation = server.step(action)
        self._moves += 1
        score = int(round(100 * server.getScore()))
        done = bool(server.getCompleted()) or server.getNumMoves() > self._step_limit or score < 0
        reward, self._last_score = score - self._last_score, score
        # ScienceWorld reports -100 when a task is failed (e.g. focusing on the wrong object) and 100 when done.
        moves = self._moves

        def valid_actions() -> list[str]:
            # joined in Java: one round trip instead of one per action (ScienceWorld lists 100-1,500)
            listed = self._join("\n", server.getValidActionObjectCombinations())
            return listed.split("\n") if listed else []

        return StepResult(
            observation=canonical_observation(observation),
            reward=float(reward),
            score=float(score),
            done=done,
            success=bool(done and score >= 100),
            valid_actions=LazyActions(valid_actions, lambda: self._moves == moves),
        )

    def close(self) -> None:
        self._env.close()

    def kill(self) -> None:
        """Kill the JVM at once (a hung simulator does not answer `close`); used by the rollout's restart logic."""
        process = getattr(getattr(self._env, "_gateway", None), "java_process", None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
