"""Harm-aware bayes limit (STAND-IN only): the cloud acts where a device error is likely AND likely unrecoverable.

Expected harm at a state = p(device error) x p(the error cannot be undone). p(error) is the stand-in device's error
model (as in `bayes`); p(unrecoverable) averages, over the mistakes the stand-in device picks from at this state (a
valid action with the gold action's first two words, else any other valid action, uniformly), the measured share of
episodes that a mistake with that verb makes fail. The cloud acts where the expected harm reaches the threshold.

The rule, measured by `experiments/probe_irreversible.py` (gold path to step k, one device mistake, then the
gold-path stand-in cloud finishes; failed / probes per verb of the mistake, train variations, easy simplification):
- ScienceWorld (5 tasks x 1 variation, 94 probes): a wrong `focus on` ends the episode as a failure at once (7 of
  9; 8 of 9 failed); a wrong `go to` leaves the gold path in the wrong room, which the stand-in cloud never walks
  back (13/20 failed); wrong `connect` 4/22, `move` 2/13 (one ended the episode: an object moved to the wrong
  answer box). pick up, pour, use, mix, open, eat, dunk, look: 0 failures in 30 probes.
- TextWorldExpress TWC (4 tasks x 2 variations, 156 probes): `put X in Y` takes X out of the inventory into the
  wrong place and the gold path never takes it back (79/86 failed); `move` 3/5, `close` 3/6, `take` 5/16 (taking
  back an object already put away); open, look, inventory: 0/43. Nothing ends a TWC episode at once.
- CookingWorld (3 tasks x 1 variation, 116 probes): a wrong `cook`, `dice` or `eat` ends the episode as a failure at
  once (7/8, 5/5, 3/3); `put` 14/24 (an ingredient left behind), `move` 1/3; examine, open, take, read, chop, look,
  inventory: 0/73.
- ALFWorld (the cloud stand-in is its hand-coded expert, which re-plans): nothing ends an episode at once, and
  nearly every failed probe is a `pick_two_obj_and_place` game, which the expert often loses on its own
  (experiments/results/alfworld-*/).
Verbs never probed count as recoverable (0). "Unrecoverable" is relative to the gold-path stand-in cloud, which
cannot re-plan: an LLM cloud could walk back a wrong room; it cannot undo a wrong focus, cook or dice.
"""

from __future__ import annotations

import numpy as np

from hera_jax.agents.stand_ins import reference_action
from hera_jax.evaluate.baselines.bayes import device_error_probability, error_model
from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY
from hera_jax.rollout.episode import Choice, Chooser
from hera_jax.state import AgentState, normalize_action

KNOB = "expected-harm threshold"
# the values swept, one frontier point each (evaluate.py --bayes-harm-thresholds)
VALUES = Knob(
    "bayes_harm_thresholds", (0.1, 0.25, 0.5),
    "STAND-IN limit `bayes_harm`: cloud where p(device error) x p(the error is unrecoverable) is at least this.",
    PROBABILITY,
)
TITLE = "bayes-harm (STAND-IN limit: error model)"

# env -> verb of the device's mistake -> (failed, probes), from experiments/probe_irreversible.py (see above)
UNRECOVERABLE_COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "scienceworld": {"focus": (8, 9), "go": (13, 20), "connect": (4, 22), "move": (2, 13), "pick": (0, 9),
                     "pour": (0, 7), "use": (0, 5), "mix": (0, 3), "look": (0, 2), "eat": (0, 2), "open": (0, 1),
                     "dunk": (0, 1)},
    "textworld_express:twc": {"put": (79, 86), "move": (3, 5), "close": (3, 6), "take": (5, 16), "open": (0, 28),
                              "inventory": (0, 9), "look": (0, 6)},
    "textworld_express:cookingworld": {"eat": (3, 3), "dice": (5, 5), "cook": (7, 8), "put": (14, 24),
                                       "move": (1, 3), "examine": (0, 33), "open": (0, 22), "take": (0, 4),
                                       "read": (0, 3), "look": (0, 4), "inventory": (0, 4), "chop": (0, 2),
                                       "close": (0, 1)},
    "alfworld": {"go": (7, 55), "take": (2, 6), "help": (2, 5), "inventory": (0, 1), "examine": (0, 1)},
}


def action_verb(action: str) -> str:
    """The command word of an action ('focus', 'go', 'put', 'take'); 'put down' (ScienceWorld) is kept apart from
    'put X in Y' (TextWorldExpress)."""
    words = normalize_action(action).split()
    if not words:
        return ""
    return "put down" if words[:2] == ["put", "down"] else words[0]


def mistake_pool(gold: str, valid_actions: tuple[str, ...]) -> tuple[str, ...]:
    """The actions the stand-in device picks its mistake from, uniformly (`PerturbedGoldDevice._mistake`'s rule:
    valid actions other than gold that share its first two words, else all other valid actions, else 'look around')."""
    gold_norm = normalize_action(gold)
    verb = " ".join(gold_norm.split()[:2])
    others = [a for a in valid_actions if normalize_action(a) != gold_norm]
    same_verb = [a for a in others if normalize_action(a).startswith(verb)]
    return tuple(same_verb or others or ["look around"])


def unrecoverable_probability(env: str, mistakes: tuple[str, ...]) -> float:
    """Mean over the possible mistakes of the measured share of episodes a mistake with that verb made fail."""
    counts = UNRECOVERABLE_COUNTS[env]
    rates = [counts[v][0] / counts[v][1] if v in counts else 0.0 for v in map(action_verb, mistakes)]
    return float(np.mean(rates))


def decide(p_error: np.ndarray, p_unrecoverable: np.ndarray, threshold: float) -> np.ndarray:
    """bool[N]: cloud where the expected harm p(error) x p(unrecoverable) reaches the threshold."""
    return np.asarray(p_error) * np.asarray(p_unrecoverable) >= threshold


def expected_harm_inputs(state: AgentState, device) -> tuple[float, float]:
    """(p(device error), p(unrecoverable | error)) at this state."""
    gold = reference_action(state)
    if gold is None:
        return device_error_probability(state, device), 0.0
    return device_error_probability(state, device), unrecoverable_probability(
        state.env, mistake_pool(gold, state.valid_actions))


def chooser(threshold: float, ctx, method: str = "bayes_harm") -> Chooser:
    device = error_model(ctx)

    def choose(state, text, cloud_calls) -> Choice:
        p_error, p_unrecoverable = expected_harm_inputs(state, device)
        go_cloud = decide(np.array([p_error]), np.array([p_unrecoverable]), threshold)[0]
        return Choice("cloud" if go_cloud else "device", "bayes-harm", p_error * p_unrecoverable)

    return choose


def unavailable(ctx) -> str | None:
    if error_model(ctx) is None:
        return "needs the stand-in device (perturbed), whose error model is known"
    env = getattr(ctx.signals, "name", None)
    if env is not None and env not in UNRECOVERABLE_COUNTS:
        return (f"no unrecoverability rule measured for {env} (experiments/probe_irreversible.py; known: "
                f"{', '.join(UNRECOVERABLE_COUNTS)})")
    return None
