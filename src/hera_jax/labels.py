"""Router training labels of stage 1 (imitation).

`il_labels` marks a state "needs cloud" when the device's action differs from the cloud's. Stage 2's labels
(per group of identical states, the routing choice with the better return net of cloud calls) live with the rest of
the RL stage, in `hera_jax.rl.preferences`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hera_jax.state import normalize_action

NEEDS_CLOUD = 1
DEVICE_ENOUGH = 0


def il_labels(device_actions: Sequence[str], cloud_actions: Sequence[str]) -> np.ndarray:
    """int8[N]: 1 = "needs cloud" (actions differ after normalising case and whitespace), 0 = "device is enough"."""
    if len(device_actions) != len(cloud_actions):
        raise ValueError(
            f"device_actions has {len(device_actions)} entries but cloud_actions has {len(cloud_actions)}"
        )
    labels = np.empty(len(device_actions), dtype=np.int8)
    for i, (device, cloud) in enumerate(zip(device_actions, cloud_actions)):
        if device is None:
            raise ValueError(f"device_actions[{i}] is None: the device was not replayed on this state")
        if cloud is None:
            raise ValueError(f"cloud_actions[{i}] is None: no cloud action was recorded for this state")
        labels[i] = il_label(device, cloud)
    return labels


def il_label(device_action: str, cloud_action: str) -> int:
    """The IL rule for one state: NEEDS_CLOUD when the actions differ after normalising case and whitespace."""
    return NEEDS_CLOUD if normalize_action(device_action) != normalize_action(cloud_action) else DEVICE_ENOUGH
