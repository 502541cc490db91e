"""ScienceWorld adapter: states are canonical, so identical states share a key across task reloads."""

import pytest

from hera_jax.envs.scienceworld import ScienceWorld, canonical_observation
from hera_jax.state import AgentState, state_key, state_text


def test_canonical_observation_sorts_each_list_run_only():
    text = "This room is the kitchen. In it, you see:\n\tthe agent\n\ta cup\nYou also see:\n\tA door\n\tA bed"
    assert canonical_observation(text) == (
        "This room is the kitchen. In it, you see:\n\ta cup\n\tthe agent\nYou also see:\n\tA bed\n\tA door"
    )
    assert canonical_observation("no list here") == "no list here"
    assert canonical_observation(canonical_observation(text)) == canonical_observation(text)


def test_same_variation_gives_the_same_state_keys_after_reloading():
    env = ScienceWorld()
    try:
        keys = []
        for _ in range(3):
            first = env.reset("boil", 1)
            result = env.step(first.gold_path[0])
            state = AgentState(first.task_description, result.observation, result.valid_actions,
                               history=((first.gold_path[0], result.observation),), step=1)
            keys.append((state_key(state_text(AgentState(first.task_description, first.observation, ()))),
                         state_key(state_text(state))))
        assert keys[0] == keys[1] == keys[2]
    finally:
        env.close()


def _walk(reset, step, gold, mistakes_at, pick):
    """Gold actions, except a valid non-gold action at the steps in `mistakes_at`; stops when the episode ends."""
    first = reset()
    trace = [(first[0], first[1])]
    valid = first[1]
    for k, action in enumerate(gold):
        if k in mistakes_at:
            action = pick(valid, action)
        out = step(action)
        trace.append(out)
        valid = out[1]
        if out[-1]:  # done
            break
    return trace


@pytest.mark.slow
def test_fast_step_matches_the_scienceworld_api_and_fetches_valid_actions_only_when_read():
    """The adapter's own step (no free actions, valid actions on demand) against `ScienceWorldEnv.step`: the same
    observations, valid actions, rewards, scores and ends, on won, lost-by-wrong-focus and wandering episodes."""
    import pytest
    from hera_jax.envs.base import StaleActionsError

    env = ScienceWorld()
    api = env._env
    try:
        def fast_reset(task, variation):
            def reset():
                first = env.reset(task, variation)
                return first.observation, tuple(first.valid_actions)
            return reset

        def fast_step(action):
            r = env.step(action)
            return r.observation, tuple(r.valid_actions), r.reward, r.score, r.success, r.done

        def api_reset(task, variation):
            def reset():
                api.load(task, variation, "easy", generateGoldPath=True)
                observation, info = api.reset()
                return canonical_observation(observation), tuple(sorted(info["valid"]))
            return reset

        def api_step(action):
            observation, reward, done, info = api.step(action)
            score = float(info["score"])
            return (canonical_observation(observation), tuple(sorted(info["valid"])), float(reward), score,
                    bool(done and score >= 100), bool(done))

        def pick(valid, gold):  # a deterministic wrong action of the gold action's verb (e.g. focus on the wrong thing)
            verb = gold.split()[0]
            same = [a for a in valid if a.startswith(verb) and a != gold]
            return same[len(same) // 2] if same else valid[0]

        ends = set()
        for task, variation, mistakes_at in (("find-living-thing", 1, ()), ("find-living-thing", 1, "focus"),
                                             ("boil", 1, (2, 5)), ("chemistry-mix", 1, (1, 3))):
            gold = env.reset(task, variation).gold_path
            if mistakes_at == "focus":  # focusing on the wrong object fails the task at once (score -100)
                mistakes_at = (next(k for k, a in enumerate(gold) if a.startswith("focus on")),)
            fast = _walk(fast_reset(task, variation), fast_step, gold, mistakes_at, pick)
            slow = _walk(api_reset(task, variation), api_step, gold, mistakes_at, pick)
            assert fast == slow, (task, mistakes_at)
            ends.add((fast[-1][-2], fast[-1][-1], fast[-1][3]))  # (success, done, score)
        assert (True, True, 100.0) in ends and any(score < 0 for _, _, score in ends)  # a won and a failed episode

        first = env.reset("boil", 1)
        result = env.step(first.gold_path[0])
        assert not result.valid_actions.fetched  # nothing asked for them: no Java listing
        assert "look around" in result.valid_actions and result.valid_actions.fetched
        later = env.step(first.gold_path[1])
        with pytest.raises(StaleActionsError):
            list(first.valid_actions)  # the simulator has moved on: answering would describe another state
        assert len(later.valid_actions) > 0
    finally:
        env.close()


@pytest.mark.slow
def test_episodes_and_gold_paths_do_not_depend_on_what_the_simulator_ran_before():
    """ScienceWorld keeps an object-id counter and its gold-path finder's cache of routes across loads. With them
    left over, chemistry-mix-paint-secondary-color 29's gold path went through the bedroom on a JVM that had run
    variation 28, and through the living room on a fresh JVM. `reset` makes each gold path once; episodes with
    mistakes drawn from the valid actions must give the same trace, gold path included, on fresh simulators and on
    one that ran other episodes (and the same variation) before."""
    def walk(env, task, variation, mistakes_at):
        first = env.reset(task, variation)
        trace = [(first.observation, tuple(first.valid_actions), first.gold_path)]
        for k, action in enumerate(first.gold_path):
            if k in mistakes_at:
                verb = action.split()[0]
                same = [a for a in trace[-1][1] if a.startswith(verb) and a != action]
                action = same[len(same) // 3] if same else trace[-1][1][0]
            r = env.step(action)
            trace.append((r.observation, tuple(r.valid_actions), r.score, r.done))
            if r.done:
                break
        return trace

    episodes = (("chemistry-mix-paint-secondary-color", 29, (3, 6)), ("test-conductivity", 677, (2, 4)),
                ("boil", 21, (1,)))
    expected = {}
    for task, variation, mistakes_at in episodes:
        fresh = ScienceWorld()
        try:
            expected[task] = walk(fresh, task, variation, mistakes_at)
        finally:
            fresh.close()
    used = ScienceWorld()
    try:
        walk(used, "chemistry-mix-paint-secondary-color", 28, ())
        for task, variation, mistakes_at in episodes + episodes[::-1]:  # each twice, after other episodes
            assert walk(used, task, variation, mistakes_at) == expected[task], task
            walk(used, "find-animal", 225, (1,))
    finally:
        used.close()
