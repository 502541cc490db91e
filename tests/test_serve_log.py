"""The proxy's decision log: an episode's outcome is written off the lock the event loop takes for every request."""

from __future__ import annotations

import json
import threading

import pytest

import hera_jax.serve.log as log_module
from hera_jax.rollout.records import read_steps
from hera_jax.serve.log import DECISIONS_FILE, DecisionLog, ServedStep


def _step(episode: str, index: int, route: str = "device") -> ServedStep:
    return ServedStep(episode_id=episode, step=index, state_text=f"Task: t\nNow: state {index}", route=route,
                      routed=route, action=f"act {index}", p_cloud=0.25, threshold=0.5, reason="router",
                      tokens_in=3, tokens_out=2, latency_s=0.01, status=200, cloud_calls_so_far=0, task="t")


def _log(folder) -> DecisionLog:
    return DecisionLog(folder, agents={"device": {"name": "d"}, "cloud": {"name": "c"}}, settings={})


def test_requests_are_logged_while_an_outcome_waits_for_its_disk(tmp_path, monkeypatch):
    log = _log(tmp_path)
    log.record(_step("ep-a", 0, "cloud"))
    log.record(_step("ep-a", 1))
    entered, release = threading.Event(), threading.Event()
    real_append = log_module.append_episode

    def slow_disk(path, records):  # the records' fsync, held until the test lets it go
        entered.set()
        assert release.wait(10)
        real_append(path, records)

    monkeypatch.setattr(log_module, "append_episode", slow_disk)
    result = {}
    finisher = threading.Thread(target=lambda: result.setdefault("steps", log.finish("ep-a", True)))
    finisher.start()
    assert entered.wait(10)
    # what the event loop does for each request; before, both waited for the finishing episode's write
    done = threading.Event()

    def loop_side():
        log.record(_step("ep-b", 0, "cloud"))
        result["ep-b cloud calls"] = log.cloud_calls("ep-b")
        log.record(_step("ep-a", 2, "cloud"))  # a late step of the finishing episode: it waits for an outcome again
        done.set()

    threading.Thread(target=loop_side, daemon=True).start()
    assert done.wait(5), "record() waited for another episode's disk write"
    release.set()
    finisher.join(10)
    assert result == {"ep-b cloud calls": 1, "steps": 2}
    log.close()
    kinds = [(e["kind"], e["episode_id"]) for e in map(json.loads, (tmp_path / DECISIONS_FILE).read_text().splitlines())]
    assert kinds == [("step", "ep-a"), ("step", "ep-a"), ("step", "ep-b"), ("step", "ep-a"), ("outcome", "ep-a")]
    rows, _ = read_steps(tmp_path / "steps.jsonl")
    assert [(r["episode_id"], r["step"], r["actor"]) for r in rows] == [("ep-a", 0, "cloud"), ("ep-a", 1, "device")]
    assert log.cloud_calls("ep-a") == 1  # the late step
    # a restart finds the same: ep-b and ep-a's late step wait for an outcome, ep-a's first two are done
    again = _log(tmp_path)
    assert again.cloud_calls("ep-b") == 1 and again.cloud_calls("ep-a") == 1
    assert again.finish("ep-a", False) == 1
    with pytest.raises(KeyError):
        again.finish("ep-a", True)
    again.close()


def test_an_outcome_whose_records_cannot_be_written_can_be_sent_again(tmp_path, monkeypatch):
    log = _log(tmp_path)
    log.record(_step("ep-a", 0))
    real_append = log_module.append_episode

    def full_disk(path, records):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log_module, "append_episode", full_disk)
    with pytest.raises(OSError, match="No space"):
        log.finish("ep-a", False)
    log.record(_step("ep-a", 1))  # a step that came meanwhile stays after the earlier one
    monkeypatch.setattr(log_module, "append_episode", real_append)
    assert log.finish("ep-a", False) == 2
    rows, _ = read_steps(tmp_path / "steps.jsonl")
    assert [r["step"] for r in rows] == [0, 1] and [r["action"] for r in rows] == ["act 0", "act 1"]
    log.close()
