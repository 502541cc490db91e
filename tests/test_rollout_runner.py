"""The rollout engine on real ScienceWorld: Ray == in-process == lockstep batches for the same seeds, simulator
crash/hang restarts, wall-clock limit, routed exploration, and the routed fallback when the cloud budget is spent."""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import signal
import threading

import pytest

from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
from hera_jax.agents.openai_cloud import CloudBudgetExhausted, OpenAIChatAgent, OpenAIConfig
from hera_jax.envs import make_env
from hera_jax.rollout.engine import (
    EngineConfig,
    EpisodeFailed,
    Job,
    LockstepWorker,
    Policy,
    WorkerSetup,
    engine_session,
    run_episode,
    run_jobs,
)
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec, always
from hera_jax.rollout.records import read_steps
from hera_jax.rollout.routing import routed

pytestmark = pytest.mark.slow

SHORT_EPISODES = [  # short gold paths, so the whole module stays fast
    ("find-animal", 3, "train"),
    ("chemistry-mix-paint-secondary-color", 1, "train"),
    ("power-component", 5, "train"),
    ("lifespan-longest-lived", 2, "train"),
]
SPECS = [EpisodeSpec("scienceworld", t, v, s, f"scienceworld/{t}/{v}/test/seed0") for t, v, s in SHORT_EPISODES]
MAKE_ENV = functools.partial(make_env, "scienceworld", simplification="easy", step_limit=40)
TIMING_FIELDS = ("device_latency_s", "cloud_latency_s")


@pytest.fixture(autouse=True)
def collect_dead_simulators():
    """Finalise discarded simulators inside the test: their `__del__` talks to a dead JVM, and run later (during
    pytest's own imports) it has crashed CPython 3.11.7's AST compiler ("recursion depth mismatch")."""
    yield
    gc.collect()


def p_cloud_by_step(state, text, cloud_calls):
    """A deterministic stand-in router: the deeper into the episode, the likelier the cloud."""
    return min(1.0, 0.2 + 0.15 * state.step)


def make_setup(make_env=MAKE_ENV) -> WorkerSetup:
    return WorkerSetup(
        make_env=make_env,
        cloud=GoldPathOracle(),
        device=PerturbedGoldDevice(seed=1),
        policies={"routed": Policy(routed(p_cloud_by_step, threshold=0.5, epsilon=0.3, seed=7))},
        settings=EpisodeSettings(replay="device", max_steps=20),
    )


JOBS = [Job(spec, "routed") for spec in SPECS]


def run_worker(config: EngineConfig, setup: WorkerSetup | None = None) -> tuple[dict, LockstepWorker]:
    worker = LockstepWorker(setup or make_setup(), config)
    try:
        return {JOBS[i].spec.episode_id: records for i, records in worker.run(list(enumerate(JOBS)))}, worker
    finally:
        worker.close()


def comparable(records) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in TIMING_FIELDS} for r in records]


@pytest.fixture(scope="module")
def in_process_records():
    return run_worker(EngineConfig(env_call_timeout_s=60))[0]


def test_routed_chooser_records_who_acted_and_why(in_process_records):
    steps = [r for records in in_process_records.values() for r in records]
    reasons = {r.route_reason for r in steps}
    assert {"router", "explore"} <= reasons
    assert {r.actor for r in steps} == {"device", "cloud"}
    for r in steps:
        assert r.p_cloud == pytest.approx(min(1.0, 0.2 + 0.15 * r.step))
        expected = "cloud" if r.p_cloud >= 0.5 else "device"
        assert r.actor == (expected if r.route_reason == "router" else {"cloud": "device", "device": "cloud"}[expected])
        assert r.device_action is not None  # device replayed at every step


def test_lockstep_batches_give_the_same_records_as_one_episode_at_a_time(in_process_records):
    batched, _ = run_worker(EngineConfig(batch_size=3, env_call_timeout_s=60))
    assert set(batched) == set(in_process_records)
    for episode_id, records in in_process_records.items():
        assert comparable(batched[episode_id]) == comparable(records)


def lines_without_timings(path) -> list[dict]:
    rows, _ = read_steps(path)
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def test_ray_workers_write_the_same_file_as_in_process(in_process_records, tmp_path):
    config = EngineConfig(batch_size=2, workers=2)
    with engine_session(config) as session:  # the second call runs on the first call's actors, records unchanged
        report = run_jobs(JOBS, tmp_path / "ray.jsonl", make_setup, config, show_progress=False, session=session)
        again = run_jobs(JOBS[:2], tmp_path / "again.jsonl", make_setup, config, show_progress=False,
                         session=session)
        with pytest.raises(ValueError, match="the engine session has 2 workers, this call asks for 3"):
            run_jobs(JOBS[:1], tmp_path / "three.jsonl", make_setup, EngineConfig(batch_size=2, workers=3),
                     show_progress=False, session=session)
    processes = sorted(w["process"] for w in report.accounting["workers"])
    assert report.episodes_run == len(JOBS) and len(set(processes)) == 2
    assert sorted(w["process"] for w in again.accounting["workers"]) == processes
    first_two = {job.spec.episode_id for job in JOBS[:2]}
    assert lines_without_timings(tmp_path / "again.jsonl") == [
        r for r in lines_without_timings(tmp_path / "ray.jsonl") if r["episode_id"] in first_two]
    run_jobs(JOBS, tmp_path / "local.jsonl", make_setup, EngineConfig(), show_progress=False)
    assert lines_without_timings(tmp_path / "ray.jsonl") == lines_without_timings(tmp_path / "local.jsonl")
    by_id = {}
    for row in lines_without_timings(tmp_path / "local.jsonl"):
        by_id.setdefault(row["episode_id"], []).append(row)
    assert {e: rows for e, rows in by_id.items()} == {e: comparable(r) for e, r in in_process_records.items()}


class CrashOnce:
    """Wraps the real env; kills the real JVM with SIGKILL at the given step on the first attempt only."""

    crashed = False

    def __init__(self, at_step: int):
        self.env = MAKE_ENV()
        self.at_step = at_step
        self.steps = 0
        self.name, self.version = self.env.name, self.env.version

    def reset(self, task, variation):
        self.steps = 0
        return self.env.reset(task, variation)

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step and not CrashOnce.crashed:
            CrashOnce.crashed = True
            os.kill(self.env._env._gateway.java_process.pid, signal.SIGKILL)
        return self.env.step(action)

    def kill(self):
        self.env.kill()

    def close(self):
        self.env.close()


class HangOnce(CrashOnce):
    """Blocks one step until released (a hung simulator), once; the test releases and joins it afterwards so no
    abandoned thread outlives the test."""

    hung = False
    release = threading.Event()
    hung_thread: threading.Thread | None = None

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step and not HangOnce.hung:
            HangOnce.hung = True
            HangOnce.hung_thread = threading.current_thread()
            HangOnce.release.wait(120)
            raise ConnectionError("released after the watchdog gave up")
        return self.env.step(action)


class CrashOnValidActions(CrashOnce):
    """Kills the real JVM the first time an agent reads a state's valid actions (ScienceWorld fetches them on
    demand, outside `step`), once."""

    crashed = False

    def _arm(self, result):
        fetch = result.valid_actions._fetch

        def kill_then_fetch():
            if not CrashOnValidActions.crashed:
                CrashOnValidActions.crashed = True
                os.kill(self.env._env._gateway.java_process.pid, signal.SIGKILL)
            return fetch()

        result.valid_actions._fetch = kill_then_fetch
        return result

    def reset(self, task, variation):
        return self._arm(self.env.reset(task, variation))

    def step(self, action):
        return self._arm(self.env.step(action))


@pytest.mark.parametrize("wrapper", [CrashOnce, HangOnce, CrashOnValidActions])
def test_a_crashed_or_hung_simulator_is_restarted_and_the_episode_redone(wrapper, in_process_records):
    spec = SPECS[0]
    # 30 s: a reset on the loaded 2-core CPU can take more than 5 s
    worker = LockstepWorker(make_setup(functools.partial(wrapper, 1)), EngineConfig(env_call_timeout_s=30))
    try:
        [(_, records)] = list(worker.run([(0, JOBS[0])]))
    finally:
        worker.close()
        HangOnce.release.set()
        if HangOnce.hung_thread is not None:
            HangOnce.hung_thread.join(10)
    assert worker.restarts == 1
    assert wrapper is not CrashOnValidActions or CrashOnValidActions.crashed  # the device did read them
    assert comparable(records) == comparable(in_process_records[spec.episode_id])


def test_restarts_are_bounded():
    def always_crashes():
        env = MAKE_ENV()
        env.step = lambda action: (_ for _ in ()).throw(ConnectionError("JVM gone"))
        return env

    worker = LockstepWorker(make_setup(always_crashes), EngineConfig(max_episode_retries=1, env_call_timeout_s=60))
    with pytest.raises(EpisodeFailed, match="failed after 2 attempts.*JVM gone"):
        list(worker.run([(0, JOBS[0])]))
    worker.close()
    assert worker.restarts == 2


@pytest.fixture(scope="module")
def env():
    e = MAKE_ENV()
    yield e
    e.close()


def test_wall_clock_and_step_limits_end_an_episode(env):
    spec = EpisodeSpec("scienceworld", "boil", 11, "train", "boil-limit")
    by_steps = run_episode(env, spec, GoldPathOracle(), PerturbedGoldDevice(), always("cloud"), max_steps=3)
    by_clock = run_episode(env, spec, GoldPathOracle(), PerturbedGoldDevice(), always("cloud"), max_steps=50,
                           max_seconds=0.0)
    assert len(by_steps) == 3 and not by_steps[-1].success
    assert len(by_clock) == 1 and not by_clock[-1].success


def test_routed_steps_fall_back_to_the_device_when_the_cloud_budget_is_spent(env):
    # max_calls=0: the budget check refuses before any request, so no server is needed here
    cloud = OpenAIChatAgent(OpenAIConfig(base_url="http://127.0.0.1:9/v1", max_calls=0))
    spec = SPECS[0]
    records = run_episode(env, spec, cloud, PerturbedGoldDevice(), routed(lambda s, t, c: 1.0), max_steps=4)
    assert {r.actor for r in records} == {"device"}
    assert {r.route_reason for r in records} == {"cloud-budget-exhausted"}
    assert cloud.usage.calls == 0
    with pytest.raises(CloudBudgetExhausted):
        run_episode(env, spec, cloud, PerturbedGoldDevice(), always("cloud"), max_steps=4)


def test_a_collect_manifest_keeps_the_workers_accounting_but_not_their_process_ids():
    from hera_jax.rollout.collect import without_process_ids

    accounting = {"states_embedded": 3, "workers": [{"process": 4242, "restarts": 1}, {"process": 4243, "restarts": 0}]}
    assert without_process_ids(accounting) == {"states_embedded": 3, "workers": [{"restarts": 1}, {"restarts": 0}]}
    assert accounting["workers"][0]["process"] == 4242  # the run's own report is left as it was
    assert without_process_ids({"steps": 1}) == {"steps": 1}
