"""The one episode engine: collection, RL rollouts and evaluation all run their episodes here.

`run_jobs(jobs, out_path, ...)` runs every job (an `EpisodeSpec` + the name of the policy that decides who acts)
whose episode id is not yet complete in `out_path`, and appends each finished episode whole, in job order (an
episode that finishes early waits for the ones planned before it), so an interrupted run resumes without loss or
duplicates and its file equals an uninterrupted run's.

Batching: a worker runs `batch_size` episodes at once, each on its own simulator. The slots whose simulator step has
come back are decided together: every router policy scores their new states in one call (one encoder batch for the
states not cached, one jitted forward), then each episode's chooser decides (a router's chooser finds its p_cloud
memoised), the agents answer those states through `act_batch`, and the simulators take their steps in parallel (one
thread each; their JVMs work in parallel). Slots are not held by the slowest simulator: a decision waits for the
other slots' steps at most `gather_s` after the first came back. A slot whose episode ended resets for its next
job while the other slots go on stepping, and takes its jobs variation by variation (all methods' or rollouts'
episodes of one variation in a row, so a simulator that makes gold paths makes each once). None of this changes the
records: each simulator's calls stay in order, and an episode does not depend on what its simulator ran before.

Workers run in-process, or as Ray actors (`workers > 1`), each built by the same picklable `make_setup`, so both
give the same records. A simulator is reused between episodes where the env declares `reuse_safe = True` (its
episodes do not depend on what it ran before): ScienceWorld and TextWorldExpress do, since their JVMs start with
constant identity hashes (`envs/jvm.py`; with default hashes their object-set order, and with it gold paths and
random draws, followed the JVM's history). Other envs get a fresh simulator per episode, started in the
background; `fresh_env_per_episode` forces either.

Simulator failures: every environment call runs under a watchdog (`env_call_timeout_s`); a crash (e.g. the
ScienceWorld JVM died) or a hang kills that simulator, builds a fresh one and reruns that episode from the start, at
most `max_episode_retries` times. Errors a user must fix (`HeraError`: bad task, budget, endpoint down) are not
retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hera_jax.agents.base import Agent, AgentStep, CloudBudgetExhausted, act_batch
from hera_jax.envs.base import Env, LazyActions, Observation, SimulatorProcesses, StepResult
from hera_jax.errors import HeraError
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, validate
from hera_jax.rollout.episode import Choice, Chooser, EpisodeProgress, EpisodeSettings, EpisodeSpec
from hera_jax.rollout.records import StepRecord, append_episode, completed_episode_ids, read_steps


class SimulatorCrash(RuntimeError):
    """An environment call raised something other than a user-fixable `HeraError` (e.g. the JVM died)."""


class SimulatorHang(SimulatorCrash):
    """An environment call did not return within the watchdog timeout."""


class EpisodeFailed(HeraError, RuntimeError):
    """An episode kept crashing the simulator after every allowed restart."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """Who acts. `scorer` (a `router.scorer.RouterScorer`) is the router `choose` consults: the engine scores all of
    the states decided together with it in one call first, so `choose` finds each p_cloud memoised."""

    choose: Chooser
    scorer: Any = None


@dataclasses.dataclass(frozen=True)
class Job:
    spec: EpisodeSpec
    policy: str  # key into the worker's `WorkerSetup.policies`


@dataclasses.dataclass
class WorkerSetup:
    """What one worker runs episodes with; built by the caller's `make_setup()` in every worker."""

    make_env: Callable[[], Env]  # one simulator per batch slot
    cloud: Agent
    device: Agent
    policies: Mapping[str, Policy]
    settings: EpisodeSettings
    focus: Callable[[Env], None] | None = None  # told which episode's env a chooser is about to look at
    close: Callable[[], None] | None = None  # e.g. write embedding caches


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How episodes run: batches of slots, Ray workers, the simulator watchdog (`--engine.*` in collect.py,
    rl_iter.py and evaluate.py). None of it changes the records."""

    batch_size: int | None = None
    """Episodes each worker runs at once (one simulator each; one routing call for the slots ready together). None:
    the environment's default in rl_iter.py and evaluate.py (hera_jax.envs.profiles: ScienceWorld 2, TextWorldExpress
    8), else 1."""
    workers: int | None = None
    """>1: Ray workers, each with its own simulators and agents (cloud budgets are then per worker). None: the
    environment's default (hera_jax.envs.profiles: ALFWorld 2, since its simulator is Python and lockstep threads
    share one core; else 1)."""
    ray_address: str = ""
    """Ray cluster address ("auto", "ray://host:10001"); empty starts a local Ray."""
    env_call_timeout_s: float = 120.0
    """A simulator call taking longer is a hang: the simulator is killed and the episode redone."""
    max_episode_retries: int = 2
    """Restarts of a crashed/hung simulator per episode before giving up."""
    gather_s: float = 0.5
    """Slots whose simulator step came back wait at most this long for the other slots' steps before they are
    routed and answered together: steps of similar speed stay batched, a slow one (or a hang until the watchdog
    fires) does not hold the rest for longer (0: never wait)."""
    fresh_env_per_episode: bool | None = None
    """A new simulator for every episode; None: only for envs that do not declare `reuse_safe = True` (see this
    module's docstring). True costs a simulator start per episode (a JVM for ScienceWorld); False forces reuse."""

    LIMITS: ClassVar[dict] = {"batch_size": COUNT, "workers": COUNT, "env_call_timeout_s": POSITIVE,
                              "max_episode_retries": NON_NEGATIVE, "gather_s": NON_NEGATIVE}

    def with_defaults(self, batch_size: int = 1, workers: int = 1) -> EngineConfig:
        """This config, with `batch_size` and `workers` where they were left to the default (None)."""
        return dataclasses.replace(self, batch_size=self.batch_size if self.batch_size is not None else batch_size,
                                   workers=self.workers if self.workers is not None else workers)


def kill_env(env: Env) -> None:
    """Best effort: kill a simulator that may be hung (`kill` where the adapter has it), else close it."""
    target = getattr(env, "kill", None) or env.close
    closer = threading.Thread(target=_quietly, args=(target,), daemon=True)
    closer.start()
    closer.join(timeout=15)


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the simulator is being discarded; its errors no longer matter
        pass


class GuardedEnv:
    """Runs each `reset`/`step` of an env in a daemon thread and gives up after `timeout_s` (the env is killed)."""

    def __init__(self, env: Env, timeout_s: float):
        self.env = env
        self.timeout_s = timeout_s
        self.name = env.name

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = e

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            kill_env(self.env)
            raise SimulatorHang(f"{self.env.name}: {fn.__name__}{args!r} did not return within {self.timeout_s}s")
        error = box.get("error")
        if isinstance(error, HeraError) or (error is not None and not isinstance(error, Exception)):
            raise error  # a user-fixable error, or an interrupt/exit: no restart
        if error is not None:
            raise SimulatorCrash(f"{self.env.name}: {fn.__name__} failed: {error.__class__.__name__}: {error}") from error
        return box["value"]

    def reset(self, task: str, variation: int) -> Observation:
        return self._guard_actions(self._call(self.env.reset, task, variation))

    def step(self, action: str) -> StepResult:
        return self._guard_actions(self._call(self.env.step, action))

    def _guard_actions(self, result: Any) -> Any:
        """Valid actions fetched on demand (`LazyActions`) are fetched under this watchdog too; a crash or hang
        there raises `SimulatorCrash` with `.guard` naming this env, so the engine knows whose episode to redo."""
        if isinstance(result.valid_actions, LazyActions):
            result.valid_actions.guard(self._fetch_actions)
        return result

    def _fetch_actions(self, fetch: Callable[[], Sequence[str]]) -> Sequence[str]:
        try:
            return self._call(fetch)
        except SimulatorCrash as e:
            e.guard = self
            raise


@dataclasses.dataclass(frozen=True)
class _Decided:
    """What was decided for an episode's current state while its simulator takes the step."""

    text: str
    choice: Choice
    asked: dict[str, AgentStep]


@dataclasses.dataclass
class _Running:
    index: int  # position in the caller's job list
    job: Job
    episode: EpisodeProgress
    errors: list[str]


class LockstepWorker:
    """Owns `batch_size` simulator slots and one pair of agents; runs jobs B at a time (see `run`)."""

    def __init__(self, setup: WorkerSetup, config: EngineConfig):
        config = config.with_defaults()
        self.setup = setup
        self.config = config
        self._envs: list[GuardedEnv | None] = [None] * config.batch_size
        # With a fresh simulator per episode, the next one starts in the background while episodes run (a
        # ScienceWorld JVM is slow to start); a spare has run nothing, so it is as fresh as one made on demand.
        self._spares: deque[Future] = deque()
        self.processes = SimulatorProcesses()  # of the simulators this worker's threads start
        self._starter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="simulator-start",
                                           initializer=self.processes.adopt)
        # The simulators of the slots decided together step at the same time, and a slot whose episode ended
        # resets (a ScienceWorld reset is many steps' worth of Java) while the other slots go on stepping: the JVMs
        # work in parallel with this thread. Each slot's calls stay in order, so the records do not change.
        self._slot_pool = ThreadPoolExecutor(max_workers=config.batch_size, thread_name_prefix="simulator-step",
                                             initializer=self.processes.adopt)
        self._start_pool = ThreadPoolExecutor(max_workers=config.batch_size, thread_name_prefix="simulator-reset",
                                              initializer=self.processes.adopt)
        self.restarts = 0

    def _env(self, slot: int) -> GuardedEnv:
        if self._envs[slot] is None:
            try:  # slots start in parallel threads: take a spare atomically
                spare = self._spares.popleft()
            except IndexError:
                spare = None
            env = spare.result() if spare is not None else self.setup.make_env()
            self._envs[slot] = GuardedEnv(env, self.config.env_call_timeout_s)
        return self._envs[slot]

    def _discard(self, slot: int, kill: bool = False) -> None:
        env = self._envs[slot]
        self._envs[slot] = None
        if env is not None:
            kill_env(env.env) if kill else _quietly(env.env.close)

    def _start(self, slot: int, index: int, job: Job, errors: list[str]) -> _Running:
        """Reset the slot's simulator for the job; a crash restarts it (bounded), then `EpisodeFailed`."""
        env = self._envs[slot]
        fresh = self.config.fresh_env_per_episode
        if env is not None and (fresh or (fresh is None and not getattr(env.env, "reuse_safe", False))):
            self._discard(slot)
            if not self._spares:
                self._spares.append(self._starter.submit(self.setup.make_env))
        while True:
            try:
                first = self._env(slot).reset(job.spec.task, job.spec.variation)
                return _Running(index, job, EpisodeProgress(job.spec, first, self.setup.settings), errors)
            except SimulatorCrash as e:
                self._crashed(slot, job, errors, e)

    def _crashed(self, slot: int, job: Job, errors: list[str], error: SimulatorCrash) -> None:
        errors.append(f"attempt {len(errors) + 1}: {error.__class__.__name__}: {str(error)[:200]}")
        self._discard(slot, kill=True)
        self.restarts += 1
        if len(errors) > self.config.max_episode_retries:
            raise EpisodeFailed(f"episode {job.spec.episode_id} failed after {len(errors)} attempts: "
                                + " | ".join(errors)) from error

    def run(self, jobs: Sequence[tuple[int, Job]]) -> Iterator[tuple[int, list[StepRecord]]]:
        """Yields (job index, records) as episodes finish.

        Slots are not held in lockstep by the slowest simulator: the slots whose step (or reset) has come back are
        decided together, as soon as every in-flight step is back or `gather_s` has passed since the first one
        came back, and their next steps go out while slower simulators are still working."""
        queue = _VariationQueue(jobs)
        ready: dict[int, _Running] = {}  # slot -> an episode whose next decision can be made now
        stepping: dict[int, tuple[Future, _Running, _Decided]] = {}  # slot -> its simulator step in flight
        starting: dict[int, Future] = {}  # slot -> its next episode's reset, running while the others step
        # start the simulators of the first batch two at a time instead of one after another
        wanted = min(self.config.batch_size, len(queue)) - sum(e is not None for e in self._envs) - len(self._spares)
        self._spares.extend(self._starter.submit(self.setup.make_env) for _ in range(max(wanted, 0)))
        while queue or ready or starting or stepping:
            for slot in range(self.config.batch_size):
                if slot not in ready and slot not in starting and slot not in stepping and queue:
                    index, job = queue.next_for(slot)
                    starting[slot] = self._start_pool.submit(self._start, slot, index, job, [])
            if not ready:  # nothing to decide: wait for a step or a reset, then briefly for the other steps
                self._gather([f for f, _, _ in stepping.values()], list(starting.values()))
            for slot, future in list(starting.items()):
                if future.done():
                    del starting[slot]
                    ready[slot] = future.result()
            for slot, (future, running, decided) in list(stepping.items()):
                if not future.done():
                    continue
                del stepping[slot]
                result, error = future.result()
                if isinstance(error, SimulatorCrash):  # rebuild the simulator and redo this episode from its start
                    self._crashed(slot, running.job, running.errors, error)
                    starting[slot] = self._start_pool.submit(self._start, slot, running.index, running.job,
                                                             running.errors)
                    continue
                if error is not None:
                    raise error
                running.episode.record(decided.text, decided.choice, decided.asked, result)
                ready[slot] = running
            for slot, running in list(ready.items()):
                if running.episode.finished:  # also e.g. max_steps 0
                    del ready[slot]
                    yield running.index, running.episode.records()
            if ready:
                stepping.update(self._decide(ready))

    def _gather(self, steps: list[Future], resets: list[Future]) -> None:
        """Wait until a step or a reset is done, then up to `gather_s` more for the other steps (so that simulators
        of similar speed are still decided together, in one routing and one agent batch; resets are not waited for,
        they join the next decision)."""
        if not steps and not resets:
            return
        wait(steps + resets, return_when=FIRST_COMPLETED)
        pending = [f for f in steps if not f.done()]
        if pending and self.config.gather_s > 0:
            wait(pending, timeout=self.config.gather_s)

    def _decide(self, ready: dict[int, _Running]) -> dict[int, tuple[Future, _Running, _Decided]]:
        """Route and ask the agents for every ready slot in one batch, then send their simulator steps out; the
        slots leave `ready`. A simulator that crashes while an agent reads its valid actions has its episode redone
        (the other slots then decide again: stand-ins answer the same; an LLM is asked twice)."""
        setup = self.setup
        slots = sorted(ready)
        states = {slot: ready[slot].episode.state() for slot in slots}
        by_scorer: dict[int, tuple[Any, list[int]]] = {}
        for slot in slots:
            scorer = setup.policies[ready[slot].job.policy].scorer
            if scorer is not None:
                by_scorer.setdefault(id(scorer), (scorer, []))[1].append(slot)
        for scorer, members in by_scorer.values():
            scorer.prefetch([states[s][1] for s in members], np.asarray([states[s][0].step for s in members]))
        choices: dict[int, Choice] = {}
        for slot in slots:
            if setup.focus is not None:
                setup.focus(self._envs[slot].env)
            state, text = states[slot]
            choices[slot] = setup.policies[ready[slot].job.policy].choose(state, text, ready[slot].episode.cloud_calls)
        try:
            asked = self._ask(states, choices)
        except SimulatorCrash as e:  # a simulator failed while an agent read its valid actions
            slot = next((s for s in slots if self._envs[s] is getattr(e, "guard", None)), None)
            if slot is None:
                raise
            running = ready[slot]
            self._crashed(slot, running.job, running.errors, e)
            ready[slot] = self._start(slot, running.index, running.job, running.errors)
            return {}
        out = {}
        for slot in slots:
            running = ready.pop(slot)
            action = asked[slot][choices[slot].actor].action
            future = self._slot_pool.submit(_outcome, functools.partial(self._envs[slot].step, action))
            out[slot] = (future, running, _Decided(states[slot][1], choices[slot], asked[slot]))
        return out

    def _in_parallel(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Each call's result, in order; calls run on the slot threads when there are several. An error is raised
        after every call has ended."""
        if len(calls) <= 1:
            outcomes = [_outcome(call) for call in calls]
        else:
            outcomes = [f.result() for f in [self._slot_pool.submit(_outcome, call) for call in calls]]
        out = []
        for value, error in outcomes:
            if error is not None:
                raise error
            out.append(value)
        return out

    def _ask(self, states: dict[int, tuple], choices: dict[int, Choice]) -> dict[int, dict[str, AgentStep]]:
        """Each chosen actor's answer (cloud first: a spent cloud budget turns routed steps into device steps),
        then the replayed agent's."""

        agents = {"cloud": self.setup.cloud, "device": self.setup.device}
        asked: dict[int, dict[str, AgentStep]] = {slot: {} for slot in states}
        cloud_slots = [s for s in states if choices[s].actor == "cloud"]
        for slot, answer in zip(cloud_slots, _answers(agents["cloud"], [states[s][0] for s in cloud_slots])):
            if isinstance(answer, CloudBudgetExhausted):
                if choices[slot].reason == "cloud-only":
                    raise answer  # there is no one else to act
                choices[slot] = Choice("device", "cloud-budget-exhausted", choices[slot].p_cloud)
            else:
                asked[slot]["cloud"] = answer
        device_slots = [s for s in states if choices[s].actor == "device"]
        for slot, answer in zip(device_slots, self._act(agents["device"], [states[s][0] for s in device_slots])):
            asked[slot]["device"] = answer
        replay = self.setup.settings.replay
        if replay in agents:
            wanted = [s for s in states if replay not in asked[s]]
            for slot, answer in zip(wanted, _answers(agents[replay], [states[s][0] for s in wanted])):
                if not isinstance(answer, Exception):
                    asked[slot][replay] = answer
                elif replay != "cloud":
                    raise answer
        return asked

    def _act(self, agent: Agent, states: list) -> list[AgentStep]:
        """`act_batch`; an agent whose `act` is a function of the state alone (`stateless`, e.g. the stand-ins)
        acts on the slot threads instead, so that its reads of the valid actions (a ScienceWorld listing is
        most of a step's Java time) run in parallel across the slots' simulators."""
        if getattr(agent, "stateless", False) and len(states) > 1:
            return self._in_parallel([functools.partial(agent.act, state) for state in states])
        return act_batch(agent, states)

    def accounting(self) -> dict[str, Any]:
        embedders = {id(p.scorer.embedder): p.scorer.embedder for p in self.setup.policies.values()
                     if p.scorer is not None}
        return {role: getattr(agent, "accounting", dict)() for role, agent in
                (("cloud", self.setup.cloud), ("device", self.setup.device))} | {
            "simulator_restarts": self.restarts,
            "states_embedded": sum(e.num_encoded for e in embedders.values()),
        }

    def release_envs(self) -> None:
        """Close every simulator this worker started (the setup stays usable)."""
        for slot in range(len(self._envs)):
            self._discard(slot)
        while self._spares:
            spare = self._spares.popleft()
            if spare.exception() is None:
                _quietly(spare.result().close)

    def release(self) -> None:
        """Close the simulators and stop this worker's threads; the setup (agents, caches) stays the caller's."""
        self.release_envs()
        for pool in (self._starter, self._slot_pool, self._start_pool):
            pool.shutdown(wait=True)

    def close(self) -> None:
        self.release()
        if self.setup.close is not None:
            self.setup.close()

    def abandon(self, close_setup: bool) -> None:
        """After a Ctrl-C: kill the simulators, those still starting included, and wait for none of them (a
        ScienceWorld JVM takes seconds to start or to close). Finished episodes are already on disk."""
        self.processes.kill()
        for pool in (self._starter, self._slot_pool, self._start_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        for slot in range(len(self._envs)):
            self._discard(slot, kill=True)
        while self._spares:
            spare = self._spares.popleft()
            if spare.done() and spare.exception() is None:
                kill_env(spare.result())
        if close_setup and self.setup.close is not None:
            self.setup.close()


class _VariationQueue:
    """Jobs grouped by episode (task, variation), in order; a slot takes its jobs from one group until the group is
    done, then the next untaken group, then helps the slot with the most left. The jobs of one variation (one per
    evaluated method, or the rollouts of an RL task) then mostly run on one simulator, which makes that variation's
    gold path once (a ScienceWorld gold path costs as much Java as many steps). Records do not depend on the order."""

    def __init__(self, jobs: Sequence[tuple[int, Job]]):
        groups: dict[tuple, deque] = {}
        for index, job in jobs:
            groups.setdefault((job.spec.env, job.spec.task, job.spec.variation), deque()).append((index, job))
        self._untaken = deque(groups.values())
        self._taken: dict[int, deque] = {}
        self._left = len(jobs)

    def __len__(self) -> int:
        return self._left

    def next_for(self, slot: int) -> tuple[int, Job]:
        group = self._taken.get(slot)
        if not group:
            group = self._untaken.popleft() if self._untaken else max(self._taken.values(), key=len)
            self._taken[slot] = group
        self._left -= 1
        return group.popleft()


def _outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except BaseException as e:  # noqa: BLE001 - handed back to the engine's thread
        return None, e


def _answers(agent: Agent, states: list) -> list[AgentStep | Exception]:
    """`act_batch`, except that a spent cloud budget becomes the answer of the states it hit instead of an error."""

    try:
        return act_batch(agent, states)
    except CloudBudgetExhausted:
        out: list[AgentStep | Exception] = []
        for state in states:
            try:
                out.append(agent.act(state))
            except CloudBudgetExhausted as e:
                out.append(e)
        return out


class _RayLockstepWorker:
    """A `LockstepWorker` as a Ray actor; each engine call builds its worker in the actor from the caller's
    picklable `make_setup`, so one actor (its process and imports) can serve every call of a run."""

    def __init__(self) -> None:
        self.worker: LockstepWorker | None = None

    def start(self, make_setup: Callable[[], WorkerSetup], config: EngineConfig) -> None:
        self.worker = LockstepWorker(make_setup(), config)

    def run(self, jobs: list[tuple[int, Job]]) -> list[tuple[int, list[StepRecord]]]:
        return list(self.worker.run(jobs))

    def accounting(self) -> dict[str, Any]:
        return {**self.worker.accounting(), "process": os.getpid()}

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise HeraError("Ray is not installed: pip install 'hera_jax[rollouts]'") from e
    return ray


def _init_ray(ray, config: EngineConfig) -> None:
    if config.ray_address:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=config.workers, include_dashboard=False, log_to_driver=False)


@dataclasses.dataclass
class EngineSession:
    """Ray worker actors kept for several engine calls (`engine_session`); pass it to `run_jobs` as `session`."""

    ray: Any
    actors: list
    workers: int


@contextlib.contextmanager
def engine_session(config: EngineConfig) -> Iterator[EngineSession | None]:
    """Ray and `workers` worker actors for every engine call that is given the yielded session (None in-process): a
    stage-2 run calls the engine 3 + 2 x iterations times, and starting Ray and its actors costs seconds each time.
    Records do not change: each call builds its workers anew inside the kept actors. The actors belong to this
    driver (Ray ends them with it) and are ended with the block."""
    config = config.with_defaults()
    if config.workers <= 1:
        yield None
        return
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(ray, config)
    session = EngineSession(ray, _new_actors(ray, config.workers), config.workers)
    try:
        yield session
    finally:
        _end(ray, session.actors)
        if started_here:
            ray.shutdown()


def _new_actors(ray, workers: int) -> list:
    actor_class = ray.remote(num_cpus=1)(_RayLockstepWorker)
    return [actor_class.remote() for _ in range(workers)]


def _end(ray, actors: list) -> None:
    for actor in actors:
        _quietly(lambda a=actor: ray.kill(a))


def _ray_results(make_setup: Callable[[], WorkerSetup], config: EngineConfig, todo: list[tuple[int, Job]],
                 accounting: dict[str, Any], session: EngineSession | None
                 ) -> Iterator[tuple[int, list[StepRecord]]]:
    """Jobs in chunks of `batch_size` over `workers` Ray actors; yields episodes as chunks return. With a session
    the actors are the session's and serve the next call too; otherwise Ray and the actors live for this call."""
    if session is not None and session.workers != config.workers:
        raise ValueError(f"the engine session has {session.workers} workers, this call asks for {config.workers}")
    ray = session.ray if session is not None else _import_ray()
    started_here = session is None and not ray.is_initialized()
    if started_here:
        _init_ray(ray, config)
    actors = session.actors if session is not None else _new_actors(ray, config.workers)
    chunks = deque(todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size))
    running: dict[Any, Any] = {}
    finished = False
    try:
        ray.get([actor.start.remote(make_setup, config) for actor in actors])
        for actor in actors:
            if chunks:
                running[actor.run.remote(chunks.popleft())] = actor
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(ready)
            if chunks:
                running[actor.run.remote(chunks.popleft())] = actor
            yield from ray.get(ready)
        accounting["workers"] = ray.get([a.accounting.remote() for a in actors])
        finished = True
    finally:
        if finished:
            for actor in actors:
                _quietly(lambda a=actor: ray.get(a.close.remote()))
        if session is None or not finished:
            _end(ray, actors)
            if session is not None:  # a call cut short leaves work queued in them: the next call gets new ones
                session.actors = _new_actors(ray, session.workers)
        if started_here:
            ray.shutdown()


@dataclasses.dataclass(frozen=True)
class EngineReport:
    episodes_run: int
    episodes_resumed: int  # already complete on disk, skipped
    steps_run: int
    accounting: dict[str, Any]
    episodes_recovered: int = 0  # finished by an earlier run that stopped, kept in the waiting file, not run again


def run_jobs(
    jobs: Sequence[Job],
    out_path: Path,
    make_setup: Callable[[], WorkerSetup],
    config: EngineConfig = EngineConfig(),
    label: str = "episodes",
    show_progress: bool = True,
    setup: WorkerSetup | None = None,
    on_episode: Callable[[list[StepRecord]], None] | None = None,
    session: EngineSession | None = None,
) -> EngineReport:
    """Run the jobs not yet complete in `out_path`, appending each finished episode (in job order).

    An episode that finished while an earlier one was still running waits in memory for its turn; a run that stops
    (Ctrl-C, an error) keeps those in `<out_path>.waiting`, and the next run takes them from there instead of
    running them again.

    In-process (`config.workers == 1`) the worker uses `setup` when given (the caller keeps ownership of it and
    closes it), else builds one with `make_setup()`; Ray workers always call `make_setup()` themselves, in the
    actors of `session` when given (`engine_session`), else in actors started for this call.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    validate(config, "--engine.")  # the CLIs check it at parse time; library callers are checked here
    config = config.with_defaults()
    ids = [job.spec.episode_id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{label}: episode ids are not unique")
    done = completed_episode_ids(out_path)
    todo = [(i, job) for i, job in enumerate(jobs) if job.spec.episode_id not in done]
    # episodes an interrupted run had finished but not yet written (they waited for an earlier one) are taken as
    # finished, not run again
    waiting_path = waiting_file(out_path)
    kept = read_waiting(waiting_path)
    finished: dict[int, list[StepRecord]] = {i: kept[job.spec.episode_id] for i, job in todo
                                             if job.spec.episode_id in kept}
    order = deque(i for i, _ in todo)
    to_run = [(i, job) for i, job in todo if i not in finished]
    accounting: dict[str, Any] = {}
    worker = None
    if config.workers > 1:
        results = _ray_results(make_setup, config, to_run, accounting, session)
    else:
        worker = LockstepWorker(setup if setup is not None else make_setup(), config)
        results = worker.run(to_run)
    successes = sum(bool(r and r[-1].success) for r in finished.values())
    cloud_steps = sum(r.actor == "cloud" for records in finished.values() for r in records)
    steps = 0

    recovered, recovered_steps = len(finished), sum(len(records) for records in finished.values())

    def write_in_order() -> None:
        while order and order[0] in finished:  # append in job order
            episode = finished[order[0]]
            append_episode(out_path, episode)
            finished.pop(order.popleft())  # only once written: a failed write leaves it waiting
            if on_episode is not None:
                on_episode(episode)
    console = Console(stderr=True)
    # a log file gets a plain line every PLAIN_PROGRESS_S instead of a bar it cannot show
    plain = bool(show_progress and todo and not console.is_terminal)
    started = last_line = time.monotonic()
    interrupted = False
    try:
        with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                      disable=not show_progress or not todo or plain, console=console, transient=True) as progress:
            bar = progress.add_task(label, total=len(jobs), completed=len(jobs) - len(to_run), stats="", eta="…")
            write_in_order()
            for index, records in results:
                finished[index] = records
                # the counts and the bar follow every finished episode; the file takes them in job order, so an
                # episode can wait behind a slower one before it is written
                successes += bool(records and records[-1].success)
                cloud_steps += sum(r.actor == "cloud" for r in records)
                steps += len(records)
                write_in_order()
                done_now = len(todo) - len(order) + len(finished)
                shown_steps = steps + recovered_steps
                stats = (f"success {successes / done_now:.0%}  cloud-steps {cloud_steps / max(shown_steps, 1):.0%}  "
                         f"steps {shown_steps}")
                now = time.monotonic()
                eta = eta_text(now - started, done_now - recovered, len(to_run), config.batch_size * config.workers)
                progress.update(bar, advance=1, stats=stats, eta=eta)
                if plain and (now - last_line >= PLAIN_PROGRESS_S or done_now == len(todo)):
                    last_line = now
                    waiting = f" ({len(finished)} waiting to be written in order)" if finished else ""
                    print(f"{label}: {done_now}/{len(todo)} episodes{waiting}, {stats}, elapsed "
                          f"{_clock(now - started)}, ETA {eta}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # kept for the next run: what is finished and unwritten, and what an earlier run kept for other jobs
        ids = {job.spec.episode_id for job in jobs}
        try:
            keep_waiting(waiting_path, [finished[i] for i in order if i in finished]
                         + [episode for episode_id, episode in kept.items() if episode_id not in ids])
        except OSError:  # a full disk: the run's own error is the one to see; these episodes will be run again
            pass
        if worker is not None:
            accounting.update(worker.accounting())
            if interrupted:
                worker.abandon(close_setup=setup is None)
            elif setup is None:
                worker.close()
            else:
                worker.release()
    return EngineReport(len(to_run), len(jobs) - len(todo), steps, accounting, recovered)


def waiting_file(out_path: Path) -> Path:
    """Where an interrupted run keeps the episodes it finished that were still waiting to be written in order."""
    return Path(out_path).with_name(Path(out_path).name + ".waiting")


def read_waiting(path: Path) -> dict[str, list[StepRecord]]:
    """The complete episodes of a waiting file by id (none when there is no file; a cut one loses its cut episode)."""
    if not path.exists():
        return {}
    by_id: dict[str, list[StepRecord]] = {}
    for row in read_steps(path)[0]:
        by_id.setdefault(row["episode_id"], []).append(StepRecord(**row))
    return by_id


def keep_waiting(path: Path, episodes: list[list[StepRecord]]) -> None:
    """Replace the waiting file by `episodes` (written whole, then renamed into place; no episodes: no file)."""
    if not episodes:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(path.name + ".tmp")
    partial.unlink(missing_ok=True)
    for episode in episodes:
        append_episode(partial, episode)
    os.replace(partial, path)


PLAIN_PROGRESS_S = 30.0


def eta_text(elapsed_s: float, finished: int, total: int, parallel: int) -> str:
    """Time left at the run's average rate so far. Shown once as many episodes have finished as run at once ("…"
    before): the first ones finish alone, and a rate from them alone would put the end `parallel` times too far."""
    if finished >= total:
        return _clock(0)
    if finished < max(parallel, 1):
        return "…"
    return _clock(elapsed_s / finished * (total - finished))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def run_episode(env: Env, spec: EpisodeSpec, cloud: Agent, device: Agent, choose: Chooser,
                **settings: Any) -> list[StepRecord]:
    """One episode on the caller's env (not closed), without watchdog restarts: the engine with one slot."""
    setup = WorkerSetup(make_env=single_env(env), cloud=cloud, device=device, policies={"p": Policy(choose)},
                        settings=EpisodeSettings(**settings))
    worker = LockstepWorker(setup, EngineConfig(max_episode_retries=0, env_call_timeout_s=1e9))
    [(_, records)] = list(worker.run([(0, Job(spec, "p"))]))
    return records


def states_embedded(accounting: dict[str, Any]) -> int:
    """States newly embedded by a run's workers (in-process, or summed over Ray workers)."""
    return sum(w.get("states_embedded", 0) for w in accounting.get("workers", [accounting]))


def single_env(env: Env) -> Callable[[], Env]:
    """A factory lending the caller's env to one in-process slot: the engine never closes it, and after a crash it
    cannot be rebuilt (the episode then fails)."""
    state = {"broken": False}

    class Lent:
        name = env.name

        def reset(self, task: str, variation: int) -> Observation:
            return env.reset(task, variation)

        def step(self, action: str) -> StepResult:
            return env.step(action)

        def close(self) -> None:
            pass  # the caller's

        def kill(self) -> None:
            state["broken"] = True

    def make() -> Env:
        if state["broken"]:
            raise EpisodeFailed(f"{env.name} crashed and no factory was given to rebuild it")
        return Lent()

    return make
