"""Reference points: the device alone and the cloud alone."""

from __future__ import annotations

from hera_jax.rollout.episode import Chooser, always

KNOB = "-"
TITLE = "reference"


def chooser(param: float, ctx, method: str) -> Chooser:
    return always("cloud" if method == "cloud_only" else "device")


def unavailable(ctx) -> str | None:
    return None
