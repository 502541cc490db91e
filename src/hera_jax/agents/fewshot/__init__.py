"""Few-shot examples for the LLM agents' prompts, one JSON file per environment.

`scienceworld.json` holds the first gold-path steps of train variations of ScienceWorld tasks that are NOT in the
default collection (so no example shows a task the router is evaluated on); `textworld_express_twc.json` the gold
paths of one train variation each of two TWC task types (a prompt never shows an example of its own task type).
Regenerate them with:

    python -m hera_jax.agents.fewshot
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

# (env, options, ((task, gold steps kept), ...)); an example is never shown for its own task type, so TWC has two
SHIPPED = (
    ("scienceworld", {"simplification": "easy"},
     (("find-living-thing", 8), ("measure-melting-point-unknown-substance", 8))),
    ("textworld_express:twc", {}, (("twc-medium", 8), ("twc-easy", 8))),
)


def file_name(env: str) -> str:
    return env.replace(":", "_") + ".json"


def main() -> None:
    from hera_jax.agents.prompting import fewshot_from_env
    from hera_jax.envs import make_env

    for name, options, chosen in SHIPPED:
        env = make_env(name, **options)
        try:
            examples = []
            for task, steps in chosen:
                variation = env.variations(task, "train")[0]
                examples.append(dataclasses.asdict(fewshot_from_env(env, task, variation, steps)))
        finally:
            env.close()
        out = Path(__file__).with_name(file_name(name))
        out.write_text(json.dumps(examples, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
