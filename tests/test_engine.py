"""The rollout engine on a tiny deterministic environment, and the one router scorer: lockstep batches make one
routing call per router and lockstep and give the same records as one episode at a time; fresh and cached embeddings
score identically; evaluation and RL resume after a kill into the same file as an uninterrupted run; Ray workers
write the same records (RL). ScienceWorld: records do not depend on job order or batch size, and a reused JVM gives
the same records as fresh ones (envs/jvm.py)."""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
from hera_jax.agents.base import AgentStep
from hera_jax.envs import make_env
from hera_jax.evaluate.runner import EvalEpisode, EvalPlan, MethodPoint, eval_jobs, run_online
from hera_jax.features import FeatureSpec
from hera_jax.rl import open_run, run_rl
from hera_jax.rollout.engine import EngineConfig, Job, LockstepWorker, Policy, WorkerSetup, run_jobs, waiting_file
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec, always, episode_step_limit
from hera_jax.rollout.records import read_steps
from hera_jax.rollout.routing import routed
from hera_jax.router.checkpoint import load_router, save_router
from hera_jax.router.model import RouterMLP
from hera_jax.router.scorer import RouterScorer, StateEmbedder
from hera_jax.router.train import TrainConfig
from tests.test_rl_loop import DIM, Killed, KeyRoomEnv, _config, bag_of_words, il_dataset  # noqa: F401 (fixture)

SPEC = FeatureSpec("toy-bag-of-words", DIM)
SETTINGS = EpisodeSettings(replay="device", history_k=2, max_obs_chars=200, max_steps=12)


def noisy_bag_of_words(texts):
    """bag_of_words plus a per-text offset that float16 cannot represent, so rounding matters."""
    x = bag_of_words(texts)
    offsets = np.asarray([len(t) % 7 + 1 for t in texts], np.float32)[:, None]
    return x + np.float32(1e-4) * np.sin(offsets * np.arange(1, x.shape[1] + 1, dtype=np.float32))


class CountingEncoder:
    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, texts):
        self.batches.append(len(texts))
        return noisy_bag_of_words(texts)


@pytest.fixture(scope="module")
def router_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("router") / "checkpoint"
    x = jnp.zeros((1, SPEC.input_dim))
    params = RouterMLP((16,)).init(jax.random.key(3), x)["params"]
    params = jax.tree.map(lambda p: p * 8.0, params)  # spread p_cloud over (0, 1)
    save_router(folder, 0, params, TrainConfig(hidden_sizes=(16,)), SPEC, {})
    return folder


def test_fresh_and_cached_embeddings_score_bit_identically(router_checkpoint, tmp_path):
    texts = [f"Task: open the door\nNow: room {i} has a {w}" for i, w in enumerate(["key", "card", "coin", "pin"])]
    steps = np.arange(4)
    bundle = load_router(router_checkpoint, 0)
    fresh = RouterScorer(bundle, StateEmbedder(SPEC, tmp_path, encode=noisy_bag_of_words))
    p_fresh = fresh.score(texts, steps)
    fresh.embedder.flush()
    never = CountingEncoder()
    cached = RouterScorer(bundle, StateEmbedder(SPEC, tmp_path, encode=never))
    p_cached = cached.score(texts, steps)
    assert never.batches == []  # everything came from the cache file
    np.testing.assert_array_equal(p_fresh, p_cached)
    # and the rounding is what makes them equal: unrounded features would score differently
    unrounded = np.concatenate([noisy_bag_of_words(texts), cached.features(texts, steps)[:, DIM:]], axis=1)
    p_unrounded = np.asarray(jax.nn.sigmoid(RouterMLP((16,)).apply({"params": bundle.params}, unrounded)))
    assert not np.array_equal(p_unrounded, p_cached)


def keyroom_setup(policies) -> WorkerSetup:
    return WorkerSetup(make_env=KeyRoomEnv, cloud=GoldPathOracle(),
                       device=PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8),
                       policies=policies, settings=SETTINGS)


def keyroom_jobs(policies: list[str]) -> list[Job]:
    return [Job(EpisodeSpec("keyroom", "t1", v, "train", f"{name}/{v}"), name)
            for v in (0, 1, 2, 5, 6) for name in policies]


def test_lockstep_makes_one_routing_call_per_router_and_step(router_checkpoint, tmp_path):
    def run(batch_size: int):
        encoder = CountingEncoder()
        scorer = RouterScorer(load_router(router_checkpoint, 0), StateEmbedder(SPEC, tmp_path / "none", encode=encoder))
        calls = []  # states of each router forward
        forward = scorer.p_cloud
        scorer.p_cloud = lambda x: calls.append(len(x)) or forward(x)
        policies = {"low": Policy(routed(scorer, 0.3, epsilon=0.2, seed=1), scorer),
                    "high": Policy(routed(scorer, 0.7), scorer), "device": Policy(always("device"))}
        jobs = keyroom_jobs(list(policies))
        worker = LockstepWorker(keyroom_setup(policies), EngineConfig(batch_size=batch_size))
        records = {jobs[i].spec.episode_id: r for i, r in worker.run(list(enumerate(jobs)))}
        worker.close()
        return records, calls, encoder.batches

    one_at_a_time, calls_1, _ = run(1)
    batched, calls_8, encoded_8 = run(8)
    assert batched == one_at_a_time
    routed_steps = sum(len(r) for e, r in batched.items() if not e.startswith("device"))
    assert sum(calls_8) == sum(calls_1) <= routed_steps  # each (state, step) scored once, memoised after
    assert len(calls_8) < len(calls_1) / 2  # one forward per lockstep instead of one per state
    assert max(calls_8) > 2  # states of both threshold policies' episodes scored together
    assert len(encoded_8) <= len(calls_8)  # at most one encoder batch per routing call


class SlowVariationEnv(KeyRoomEnv):
    """KeyRoom whose variation 0 takes `delay` seconds a step; every step is logged (variation, which slow episode
    it belongs to (0 for the fast ones), time)."""

    log: list[tuple[int, int, float]] = []
    slow_episodes = itertools.count(1)
    delay = 0.25

    def reset(self, task, variation):
        self.slow_episode = next(SlowVariationEnv.slow_episodes) if variation == 0 else 0  # count(): thread-safe
        return super().reset(task, variation)

    def step(self, action):
        if self.variation == 0:
            time.sleep(self.delay)
        SlowVariationEnv.log.append((self.variation, self.slow_episode, time.perf_counter()))
        return super().step(action)


def test_a_slow_simulator_does_not_hold_the_other_slots_and_records_do_not_change():
    def run(gather_s: float):
        SlowVariationEnv.log, SlowVariationEnv.slow_episodes = [], itertools.count(1)
        policies = {"cloud": Policy(always("cloud")), "device": Policy(always("device"))}
        jobs = [Job(EpisodeSpec("keyroom", "t1", v, "train", f"{name}/{v}"), name)
                for v in (0, 1, 2, 3, 4, 5, 6) for name in policies]
        setup = WorkerSetup(make_env=SlowVariationEnv, cloud=GoldPathOracle(),
                            device=PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8),
                            policies=policies, settings=SETTINGS)
        worker = LockstepWorker(setup, EngineConfig(batch_size=2, gather_s=gather_s))
        records = {jobs[i].spec.episode_id: r for i, r in worker.run(list(enumerate(jobs)))}
        worker.close()
        # fast steps taken while a slow episode was stepping: between its first and last step, so that the time the
        # slow slot spends resetting for its next episode (longer on a loaded machine) counts for neither mode
        slow_steps, fast_meanwhile = 0, 0
        for episode in sorted({n for v, n, _ in SlowVariationEnv.log if v == 0}):
            times = [t for v, n, t in SlowVariationEnv.log if v == 0 and n == episode]
            slow_steps += len(times)
            fast_meanwhile += sum(1 for v, _, t in SlowVariationEnv.log if v != 0 and times[0] <= t <= times[-1])
        return records, slow_steps, fast_meanwhile

    records, slow_steps, fast_meanwhile = run(gather_s=0.02)
    held, _, fast_when_held = run(gather_s=60.0)  # waits for every step: the old lockstep
    assert records == held  # who waits for whom never changes an episode
    assert fast_when_held <= slow_steps  # held: at most one fast step per slow step
    # not held: the other slot runs on while the slow one steps
    assert fast_meanwhile > 2 * fast_when_held, (fast_meanwhile, fast_when_held, slow_steps)


EVAL_EPISODES = [EvalEpisode(split, split, "t1", v) for split, vs in (("dev", (3, 4)), ("test", (5, 6))) for v in vs]
EVAL_POINTS = (MethodPoint("device_only", None, "reference", ("test",)),
               MethodPoint("cloud_only", None, "reference", ("test",)),
               *(MethodPoint("r", t, "router", ("dev", "test")) for t in (0.3, 0.7)),
               MethodPoint("random", 0.5, "random", ("dev", "test")),
               MethodPoint("swiftsage", 2.0, "swiftsage", ("dev", "test")),
               MethodPoint("oracle", None, "oracle", ("test",)))


def eval_plan(make_env, checkpoint, cache) -> EvalPlan:
    return EvalPlan(make_env=make_env, make_cloud=GoldPathOracle,
                    make_device=functools.partial(PerturbedGoldDevice, seed=0, error_medium=0.5, error_hard=0.8),
                    settings=SETTINGS, routers={"r": (checkpoint, 0)}, features_cache=cache, points=EVAL_POINTS,
                    encode=noisy_bag_of_words)


def test_evaluation_killed_and_resumed_writes_the_same_file(router_checkpoint, tmp_path):
    episodes, points = EVAL_EPISODES, EVAL_POINTS

    def plan(make):
        return eval_plan(make, router_checkpoint, tmp_path / "cache")

    straight = tmp_path / "straight.jsonl"
    run_online("keyroom", episodes, plan(KeyRoomEnv), straight, EngineConfig(batch_size=1), show_progress=False)
    made = []

    def dies_at_twelfth():
        made.append(1)
        if len(made) == 12:
            raise Killed
        return KeyRoomEnv()

    killed = tmp_path / "killed.jsonl"
    with pytest.raises(Killed):
        run_online("keyroom", episodes, plan(dies_at_twelfth), killed, EngineConfig(batch_size=3),
                   show_progress=False)
    written = len({r["episode_id"] for r in read_steps(killed)[0]})
    assert 0 < written < len(eval_jobs("keyroom", episodes, points))
    report = run_online("keyroom", episodes, plan(KeyRoomEnv), killed, EngineConfig(batch_size=3),
                        show_progress=False)
    assert report.episodes_resumed == written
    # what the killed run had finished but not written (it waited for an earlier episode) is not run again
    assert report.episodes_recovered > 0
    assert report.episodes_run + report.episodes_recovered + written == len(eval_jobs("keyroom", episodes, points))
    assert killed.read_bytes() == straight.read_bytes()
    assert {r["route_reason"] for r in read_steps(straight)[0]} >= {"router", "random", "swiftsage", "oracle"}


class ReusableKeyRoomEnv(KeyRoomEnv):
    reuse_safe = True  # its episodes do not depend on what it ran before


def test_evaluation_reuses_only_simulators_that_declare_it_safe(router_checkpoint, tmp_path):
    """Evaluation wraps each simulator (SignalEnv); the wrapper must pass `reuse_safe` on, or every episode pays a
    simulator start (a JVM for ScienceWorld / TextWorldExpress)."""
    made = []

    def make(cls):
        made.append(cls)
        return cls()

    files = {}
    for cls in (KeyRoomEnv, ReusableKeyRoomEnv):
        files[cls] = tmp_path / f"{cls.__name__}.jsonl"
        run_online("keyroom", EVAL_EPISODES, eval_plan(functools.partial(make, cls), router_checkpoint,
                                                       tmp_path / f"cache-{cls.__name__}"),
                   files[cls], EngineConfig(batch_size=3), show_progress=False)
    jobs = len(eval_jobs("keyroom", EVAL_EPISODES, EVAL_POINTS))
    assert made.count(KeyRoomEnv) >= jobs and made.count(ReusableKeyRoomEnv) <= 4  # 3 slots (+ a context probe)
    assert files[KeyRoomEnv].read_bytes() == files[ReusableKeyRoomEnv].read_bytes()


@pytest.mark.slow
def test_evaluation_on_ray_workers_writes_the_same_file(router_checkpoint, tmp_path):
    local, ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_online("keyroom", EVAL_EPISODES, eval_plan(KeyRoomEnv, router_checkpoint, tmp_path / "c1"), local,
               EngineConfig(batch_size=4), show_progress=False)
    report = run_online("keyroom", EVAL_EPISODES, eval_plan(KeyRoomEnv, router_checkpoint, tmp_path / "c2"), ray,
                        EngineConfig(batch_size=2, workers=2), show_progress=False)
    assert len(report.accounting["workers"]) == 2
    assert ray.read_bytes() == local.read_bytes()
    assert not (tmp_path / "c2").exists()  # Ray workers write no cache


def rl_records(out):
    return {p.relative_to(out).as_posix(): read_steps(p)[0] for p in sorted(out.glob("iter_*/*.jsonl"))}


@pytest.mark.slow
def test_rl_with_lockstep_batches_and_ray_workers_matches_one_episode_at_a_time(il_dataset, tmp_path):
    def run(out, **engine):
        config = dataclasses.replace(_config(out, 1), engine=EngineConfig(**engine))
        env = KeyRoomEnv()
        run_obj = open_run(config, out, env, GoldPathOracle(), PerturbedGoldDevice(seed=0, error_medium=0.5,
                                                                                  error_hard=0.8),
                           il_dataset, il_dataset / "features", encode=bag_of_words, make_env=KeyRoomEnv)
        return run_rl(run_obj)

    history = run(tmp_path / "b1", batch_size=1)
    for name, engine in (("b4", dict(batch_size=4)), ("ray", dict(batch_size=2, workers=2))):
        other = run(tmp_path / name, **engine)
        assert rl_records(tmp_path / name) == rl_records(tmp_path / "b1"), name
        assert [m["eval"] for m in other] == [m["eval"] for m in history], name
        assert [m.get("groups") for m in other] == [m.get("groups") for m in history], name



SW_REUSE_JOBS = [("chemistry-mix", "device"), ("find-plant", "cloud"), ("use-thermometer", "cloud"),
                 ("find-animal", "device"), ("boil", "device"), ("measure-melting-point-known-substance", "cloud")]


@pytest.mark.slow
def test_scienceworld_records_do_not_depend_on_what_the_simulator_ran_before(tmp_path):
    """Fresh JVMs, one JVM reused for every episode (the default, since the adapter starts JVMs with constant
    identity hashes, envs/jvm.py) and two reused JVMs in another order and batch size give the same records. With
    the JVM's default hashes the reused run differed (gold-path choices, thermometer readings)."""
    probe = make_env("scienceworld", step_limit=40)
    assert probe.reuse_safe
    specs = [EpisodeSpec("scienceworld", t, probe.variations(t, "test")[0], "test", f"{t}/{who}")
             for t, who in SW_REUSE_JOBS]
    probe.close()
    starts = []

    def run(order, **engine):
        def make():
            starts.append(1)
            return make_env("scienceworld", step_limit=40)
        setup = WorkerSetup(make_env=make,
                            cloud=GoldPathOracle(), device=PerturbedGoldDevice(seed=0),
                            policies={"device": Policy(always("device")), "cloud": Policy(always("cloud"))},
                            settings=EpisodeSettings(replay="device", max_steps=15))
        jobs = [Job(specs[i], SW_REUSE_JOBS[i][1]) for i in order]
        path = tmp_path / f"{order}-{engine}.jsonl"
        starts.clear()
        run_jobs(jobs, path, lambda: setup, EngineConfig(**engine), show_progress=False, setup=setup)
        gc.collect()
        return read_steps(path)[0], len(starts)

    fresh, fresh_starts = run((0, 1, 2, 3, 4, 5), fresh_env_per_episode=True)
    reused_reordered, reordered_starts = run((5, 4, 3, 2, 1, 0), batch_size=2)
    reused, reused_starts = run((3, 5, 1, 0, 2, 4))
    assert fresh_starts >= 6 and reordered_starts == 2 and reused_starts == 1
    key = lambda rows: sorted((r["episode_id"], r["step"], r["state_text"], r["action"], r["device_action"],  # noqa: E731
                               r["score"], r["success"]) for r in rows)
    assert key(reused_reordered) == key(fresh)
    assert key(reused) == key(fresh)


class DetourDevice:
    """Never wrong in a way that ends the episode, never right: walks to the garden forever."""

    name, is_stand_in = "detour-device", True

    def act(self, state):
        return AgentStep("go to garden")

    def describe(self):
        return {"name": self.name}


@pytest.mark.parametrize("factor, device_steps", [(0.0, 20), (2.0, 10), (1.5, 8), (10.0, 20)])
def test_episodes_end_after_the_gold_factor_times_the_gold_length(tmp_path, factor, device_steps):
    """A lost (wandering) episode stops at ceil(factor x gold length) (KeyRoom's gold path has 5 steps), never later
    than max_steps; a won one is untouched."""
    assert episode_step_limit(EpisodeSettings(max_steps=20, max_steps_gold_factor=factor), None) == 20
    setup = WorkerSetup(make_env=KeyRoomEnv, cloud=GoldPathOracle(), device=DetourDevice(),
                        policies={"device": Policy(always("device")), "cloud": Policy(always("cloud"))},
                        settings=EpisodeSettings(max_steps=20, max_steps_gold_factor=factor))
    jobs = [Job(EpisodeSpec("keyroom", "t1", 5, "test", f"5/{who}"), who) for who in ("device", "cloud")]
    run_jobs(jobs, tmp_path / "steps.jsonl", lambda: setup, show_progress=False, setup=setup)
    rows = read_steps(tmp_path / "steps.jsonl")[0]
    steps = {who: [r for r in rows if r["episode_id"] == f"5/{who}"] for who in ("device", "cloud")}
    assert len(steps["device"]) == device_steps and not steps["device"][-1]["success"]
    assert len(steps["cloud"]) == 5 and steps["cloud"][-1]["success"]


def test_a_slot_runs_whole_variations_then_helps_the_slot_with_the_most_left():
    """Jobs of one variation (one per method) stay on one simulator, which then makes that variation's gold path
    once; at the end a free slot takes from the largest remaining group, so no slot idles while jobs are left."""
    from hera_jax.rollout.engine import _VariationQueue

    jobs = [(i, Job(EpisodeSpec("env", task, variation, "test", f"{task}/{variation}/{method}"), "p"))
            for i, (task, variation, method) in enumerate(
                (t, v, m) for t, v in (("a", 1), ("a", 2), ("b", 1)) for m in range(3))]
    queue = _VariationQueue(jobs)
    taken = [queue.next_for(slot)[0] for slot in (0, 1, 0, 1, 0, 0)]
    assert taken == [0, 3, 1, 4, 2, 6]  # slot 0: (a, 1) whole, then the untaken (b, 1); slot 1 keeps (a, 2)
    assert len(queue) == 3
    assert [queue.next_for(1)[0], queue.next_for(1)[0], queue.next_for(1)[0]] == [5, 7, 8]  # then helps with (b, 1)
    assert len(queue) == 0 and not queue


def test_a_stateless_device_acts_on_the_slot_threads_with_the_same_records(tmp_path):
    """An agent whose `act` depends on the state alone (`stateless`, the stand-ins) is asked on the slot threads, so
    its reads of the valid actions run in parallel across a lockstep; the records equal one-at-a-time ones. An agent
    that does not declare it is asked on the engine's thread."""
    import threading

    class RecordingDevice(PerturbedGoldDevice):
        def act(self, state):
            threads.add((self.stateless, threading.current_thread().name.split("_")[0]))
            return super().act(state)

    class StatefulDevice(RecordingDevice):
        stateless = False

    def run(device, batch_size):
        setup = WorkerSetup(make_env=KeyRoomEnv, cloud=GoldPathOracle(), device=device,
                            policies={"device": Policy(always("device"))}, settings=EpisodeSettings(max_steps=12))
        jobs = [Job(EpisodeSpec("keyroom", "t1", v, "test", f"{v}"), "device") for v in range(6)]
        path = tmp_path / f"{type(device).__name__}-{batch_size}.jsonl"
        run_jobs(jobs, path, lambda: setup, EngineConfig(batch_size=batch_size), show_progress=False, setup=setup)
        return sorted((r["episode_id"], r["step"], r["action"]) for r in read_steps(path)[0])

    threads: set = set()
    one_at_a_time = run(RecordingDevice(seed=3, error_easy=0.5), 1)
    assert run(RecordingDevice(seed=3, error_easy=0.5), 3) == one_at_a_time
    assert (True, "simulator-step") in threads
    threads.clear()
    assert run(StatefulDevice(seed=3, error_easy=0.5), 3) == one_at_a_time
    assert threads == {(False, "MainThread")}


def test_progress_goes_to_a_log_as_plain_lines_with_an_eta(tmp_path, capsys, monkeypatch):
    import hera_jax.rollout.engine as engine_module

    monkeypatch.setattr(engine_module, "PLAIN_PROGRESS_S", 0.0)  # a line per episode
    setup = keyroom_setup({"cloud": Policy(always("cloud"))})
    jobs = keyroom_jobs(["cloud"])
    run_jobs(jobs, tmp_path / "steps.jsonl", lambda: setup, show_progress=True, setup=setup, label="collect")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("collect:")]
    assert len(lines) == len(jobs) and lines[-1].startswith(f"collect: {len(jobs)}/{len(jobs)} episodes, success")
    assert all("elapsed" in line and "ETA" in line for line in lines) and lines[-1].endswith("ETA 0m00s")


def test_progress_counts_episodes_that_finish_behind_a_slower_one_and_the_file_keeps_job_order(tmp_path, capsys,
                                                                                                  monkeypatch):
    import hera_jax.rollout.engine as engine_module

    class LastFirst(engine_module.LockstepWorker):  # the head of the queue finishes last
        def run(self, todo):
            yield from reversed(list(super().run(todo)))

    monkeypatch.setattr(engine_module, "LockstepWorker", LastFirst)
    monkeypatch.setattr(engine_module, "PLAIN_PROGRESS_S", 0.0)
    setup = keyroom_setup({"cloud": Policy(always("cloud"))})
    jobs = keyroom_jobs(["cloud"])
    assert len(jobs) >= 3
    run_jobs(jobs, tmp_path / "steps.jsonl", lambda: setup, show_progress=True, setup=setup, label="collect")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("collect:")]
    n = len(jobs)
    assert [line.split(",")[0] for line in lines] == [
        f"collect: {k}/{n} episodes ({k} waiting to be written in order)" for k in range(1, n)] + [
        f"collect: {n}/{n} episodes"]
    rows, _ = read_steps(tmp_path / "steps.jsonl")
    assert list(dict.fromkeys(r["episode_id"] for r in rows)) == [job.spec.episode_id for job in jobs]


def test_the_eta_waits_for_as_many_episodes_as_run_at_once_then_uses_the_average_rate():
    from hera_jax.rollout.engine import eta_text

    # 8 slots: the first finished episode says nothing about the rate (7 more are about to finish with it)
    assert eta_text(60.0, 1, 100, parallel=8) == "…"
    assert eta_text(60.0, 7, 100, parallel=8) == "…"
    assert eta_text(60.0, 8, 100, parallel=8) == "11m30s"  # 60 s / 8 episodes x 92 left
    assert eta_text(60.0, 1, 100, parallel=1) == "1h39m"
    assert eta_text(5.0, 100, 100, parallel=8) == "0m00s"


def test_a_ctrl_c_does_not_wait_for_a_simulator_that_is_still_starting(tmp_path):
    """One slot's episode is interrupted while the other slot's simulator loads (its process sleeps 60 s, as a JVM
    takes seconds): run_jobs ends within seconds and the loading simulator's process is killed, not waited for."""
    import subprocess
    import sys

    from hera_jax.envs.base import register_simulator_process

    launched: list = []

    class SlowSecondStart(KeyRoomEnv):
        built = 0

        def __init__(self):
            SlowSecondStart.built += 1
            if SlowSecondStart.built == 2:
                process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                register_simulator_process(process)
                launched.append(process)
                process.wait()  # loading until it is done or killed
                raise RuntimeError("the simulator's process ended while it loaded")
            super().__init__()

    class InterruptedCloud(GoldPathOracle):
        def act(self, state):
            deadline = time.monotonic() + 10
            while not launched and time.monotonic() < deadline:  # the Ctrl-C comes while the other slot loads
                time.sleep(0.01)
            raise KeyboardInterrupt

    setup = WorkerSetup(make_env=SlowSecondStart, cloud=InterruptedCloud(), device=GoldPathOracle(),
                        policies={"cloud": Policy(always("cloud"))}, settings=SETTINGS)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_jobs(keyroom_jobs(["cloud"]), tmp_path / "steps.jsonl", lambda: setup,
                 EngineConfig(batch_size=2, workers=1, fresh_env_per_episode=True), show_progress=False, setup=setup)
    assert launched, "the second simulator never started loading"
    assert launched[0].wait(timeout=5) is not None  # killed, not left to load for 60 s
    assert time.monotonic() - started < 20


def test_simulator_processes_killed_include_those_launched_after_the_kill():
    import subprocess
    import sys
    import threading

    from hera_jax.envs.base import SimulatorProcesses, register_simulator_process

    group = SimulatorProcesses()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    first, late, outside = [], [], subprocess.Popen(sleeper)

    def launch(into):
        group.adopt()
        process = subprocess.Popen(sleeper)
        register_simulator_process(process)
        into.append(process)

    thread = threading.Thread(target=launch, args=(first,))
    thread.start()
    thread.join()
    register_simulator_process(outside)  # this thread never adopted the group: not its process
    assert group.kill() == 1 and first[0].wait(timeout=5) is not None
    thread = threading.Thread(target=launch, args=(late,))
    thread.start()
    thread.join()
    assert late[0].wait(timeout=5) is not None  # launched after the kill: killed at once
    assert outside.poll() is None
    outside.kill()
    outside.wait()


def test_episodes_finished_out_of_order_survive_an_interrupt_and_are_not_run_again(tmp_path):
    """A slow first episode holds the file; the fast ones behind it wait in memory. A run that stops keeps them in
    `<out>.waiting`, and the next run writes them in their turn without running them again."""
    policies = {"cloud": Policy(always("cloud")), "device": Policy(always("device"))}
    jobs = [Job(EpisodeSpec("keyroom", "t1", v, "train", f"{name}/{v}"), name)
            for v in (0, 1, 2, 3) for name in policies]  # variation 0 first: its steps are slow
    straight = tmp_path / "straight.jsonl"
    SlowVariationEnv.log = []
    setup = WorkerSetup(make_env=SlowVariationEnv, cloud=GoldPathOracle(),
                        device=PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), policies=policies,
                        settings=SETTINGS)
    run_jobs(jobs, straight, lambda: setup, EngineConfig(batch_size=3, gather_s=0.0), show_progress=False,
             setup=setup)
    assert not waiting_file(straight).exists()

    out = tmp_path / "interrupted.jsonl"
    stop_after = 4  # fast episodes finished (they wait behind cloud/0 and device/0)

    class StopsAfterFastEpisodes(SlowVariationEnv):
        started: list[int] = []

        def reset(self, task, variation):
            if variation != 0 and sum(v != 0 for v in StopsAfterFastEpisodes.started) == stop_after + 1:
                raise Killed  # an interrupt while the slow episodes still run
            StopsAfterFastEpisodes.started.append(variation)
            return super().reset(task, variation)

    stopping = dataclasses.replace(setup, make_env=StopsAfterFastEpisodes)
    with pytest.raises(Killed):
        run_jobs(jobs, out, lambda: stopping, EngineConfig(batch_size=3, gather_s=0.0), show_progress=False,
                 setup=stopping)
    kept, _ = read_steps(waiting_file(out))
    kept_ids = {r["episode_id"] for r in kept}
    written = {r["episode_id"] for r in read_steps(out)[0]} if out.exists() else set()
    assert kept_ids and not kept_ids & written and all(not i.endswith("/0") for i in kept_ids)

    report = run_jobs(jobs, out, lambda: setup, EngineConfig(batch_size=3, gather_s=0.0), show_progress=False,
                      setup=setup)
    assert report.episodes_recovered == len(kept_ids)  # the kept ones were not run again
    assert report.episodes_run == len(jobs) - len(written) - len(kept_ids) and report.episodes_resumed == len(written)
    assert out.read_bytes() == straight.read_bytes()
    assert not waiting_file(out).exists()
