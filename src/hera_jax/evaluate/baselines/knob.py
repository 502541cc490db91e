"""What a baseline declares about its settings, so that evaluate.py offers them as flags without listing them.

A baseline's `VALUES` knob holds the values swept (one frontier point each; `--<field>` with dashes); its `OPTIONS`
are fixed settings its chooser reads from `ctx.options[field]`. evaluate.py's config gains one field per knob
(hera_jax.evaluate.baselines.with_baseline_knobs), with the knob's help text and declared range.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hera_jax.limits import Range


@dataclasses.dataclass(frozen=True)
class Knob:
    field: str  # the config field and flag name (`confidence_min_margin` -> `--confidence-min-margin`)
    default: Any  # a tuple of numbers for swept values; one number for a fixed option
    help: str
    limit: Range | None = None  # checked per value at parse time, with the flag's name
