"""Router checkpoints with orbax: best params plus the configs that produced them, written atomically.

Orbax writes each step to a temporary folder and renames it when complete, so a crash never leaves a checkpoint
that looks finished but is not. Parameters holding NaN/inf are neither saved nor loaded. Loading checks the stored
feature spec and model shape against what the caller expects and says what differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec
from hera_jax.router.model import RouterMLP, p_cloud
from hera_jax.limits import validate
from hera_jax.router.train import TrainConfig, nonfinite_leaves

CHECKPOINT_FORMAT = "hera_jax.router/1"


class CheckpointError(HeraError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class RouterBundle:
    params: Any
    train_config: TrainConfig
    feature_spec: FeatureSpec
    meta: dict[str, Any]

    def p_cloud(self, features) -> jax.Array:
        model = RouterMLP(tuple(self.train_config.hidden_sizes))
        return p_cloud(model, self.params, jnp.asarray(features, jnp.float32))


@contextlib.contextmanager
def _manager(directory: str | Path) -> Iterator[ocp.CheckpointManager]:
    """orbax's manager of a checkpoint folder. It reads every step folder's metadata and warns (absl) about a folder
    without it, e.g. an empty `99/` that `latest_step` passes over; those warnings are dropped."""
    absl = logging.getLogger("absl")
    quiet = logging.Filter()
    quiet.filter = lambda record: "Metadata file does not exist" not in record.getMessage()
    absl.addFilter(quiet)
    try:
        with ocp.CheckpointManager(Path(directory).resolve(),
                                   # a router's checkpoint is small and every save waits for it: writing it in
                                   # the caller's thread leaves no background thread that could still create the
                                   # step's folder after a failed write was cleaned up
                                   options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                                                        enable_async_checkpointing=False)) as manager:
            yield manager
    finally:
        absl.removeFilter(quiet)


def save_router(
    directory: str | Path,
    step: int,
    params: Any,
    train_config: TrainConfig,
    feature_spec: FeatureSpec,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    bad = nonfinite_leaves(params)
    if bad:
        raise CheckpointError(f"{directory}: refusing to save a router whose parameters {', '.join(bad)} hold NaN/inf")
    meta = {
        "format": CHECKPOINT_FORMAT,
        "train_config": dataclasses.asdict(train_config),
        "feature_spec": dataclasses.asdict(feature_spec),
        "params_sha256": params_digest(params),
        **(extra_meta or {}),
    }
    try:
        with _manager(directory) as manager, _quiet_orbax_failures(lambda e: _write_failure(e) is not None):
            try:
                saved = manager.save(
                    step,
                    args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)),
                )
            except ocp.checkpoint_manager.StepAlreadyExistsError:
                saved = False
            if not saved:  # orbax skips a step at or below its latest one: another run's checkpoints are in there
                raise CheckpointError(
                    f"{directory}: step {step} was not saved (the folder already holds step "
                    f"{manager.latest_step()}, from another run?); use a new run folder"
                )
            manager.wait_until_finished()
    except (OSError, ValueError) as e:
        reason = _write_failure(e)
        if reason is None:
            raise
        remove_settled(lambda: list(Path(directory).glob(f"{step}.orbax-checkpoint-tmp*")))  # the unfinished step
        raise CheckpointError(f"{directory}: step {step} could not be written ({reason}); earlier steps are kept, "
                              "nothing of this one: free space and rerun") from None
    return Path(directory) / str(step)


def remove_settled(paths: Callable[[], list[Path]], quiet_s: float = 0.2, timeout_s: float = 10.0) -> list[Path]:
    """Remove what `paths()` lists until it lists nothing at two checks `quiet_s` apart. After a failed write
    TensorStore may still finish writes it had started, and a write creates its parent folders again: one removal
    could come too early. Returns what is still there after `timeout_s` (normally nothing)."""
    deadline = time.monotonic() + timeout_s
    quiet_checks = 0
    while quiet_checks < 2 and time.monotonic() < deadline:
        found = paths()
        for path in found:
            shutil.rmtree(path, ignore_errors=True)
        quiet_checks = 0 if found else quiet_checks + 1
        time.sleep(quiet_s)
    return paths()


@contextlib.contextmanager
def _quiet_orbax_failures(expected: Callable[[BaseException], bool]):
    """A refused write or a failed restore reaches the caller as one CheckpointError; what orbax and TensorStore
    print about the same failure (`expected` says which errors) from their own threads is dropped: the failing
    thread's traceback (absl), the task "never retrieved" (asyncio), and the "Event loop is closed" of callbacks
    that outlive orbax's event loop and read coroutines collected with their error (unraisable). After a failure
    the filters stay: those stragglers may still come after the caller's error."""
    loggers = [logging.getLogger("absl"), logging.getLogger("asyncio")]

    def keep(record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not expected(error)

    previous_hook = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if not ((isinstance(value, RuntimeError) and str(value) == "Event loop is closed")
                or (value is not None and expected(value))):  # a read's coroutine collected with its error
            previous_hook(unraisable)

    for logger in loggers:
        logger.addFilter(keep)
    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        raise  # filters stay
    else:
        for logger in loggers:
            logger.removeFilter(keep)
        sys.unraisablehook = previous_hook


def _write_failure(error: Exception) -> str | None:
    """Why a checkpoint write failed, when the file system refused it (a full disk, a file-size limit, no
    permission); None for other errors. TensorStore reports these as ValueError with the OS error code."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    code = re.search(r"os_error_code='(\d+)'", str(error))
    return os.strerror(int(code.group(1))) if code else None


def _read_failure(error: BaseException) -> bool:
    """Whether `error` is TensorStore failing to read a parameter array (what orbax's read tasks raise)."""
    return "reading array index" in str(error) or "TensorStore" in str(error)


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: tuple(leaf.shape), tree)


def _complete(directory: Path, step: int) -> bool:
    """Whether a step's folder holds both parts of a saved router (an empty or half-copied folder does not)."""
    return all((directory / str(step) / part).is_dir() for part in ("meta", "params"))


def latest_step(directory: str | Path) -> int | None:
    """The newest complete step in a checkpoint folder (an empty `99/` next to a good step is passed over)."""
    directory = Path(directory)
    if not directory.exists():
        return None
    # step folders are named by their number; orbax writes a step under a temporary name and renames it when done
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and _complete(directory, int(p.name))]
    return max(steps, default=None)


def _check_field_types(config) -> None:
    """A stored field must have its default's type (an int may stand for a float): a hand-edited meta with
    `"embedding_dim": "abc"` is refused when loaded, not deep inside the first computation that uses it."""
    for field in dataclasses.fields(config):
        default, value = field.default, getattr(config, field.name)
        if default is dataclasses.MISSING or default is None or value is None:
            continue
        expected = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise TypeError(f"{field.name} is {value!r}, expected a {type(default).__name__}")


def load_router(
    directory: str | Path, step: int | None = None, expected_spec: FeatureSpec | None = None
) -> RouterBundle:
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no checkpoint folder; train a router first (experiments/il.py)")
    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"{directory}: holds no finished checkpoint")
    with _manager(directory) as manager:
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:
            raise CheckpointError(f"{directory}/{step}: unreadable checkpoint metadata ({e})") from e
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{directory}/{step}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
            )
        try:
            train_config = TrainConfig(**{**meta["train_config"],
                                          "hidden_sizes": tuple(meta["train_config"]["hidden_sizes"])})
            spec_fields = meta["feature_spec"]
            # checkpoints from before text designs existed embedded the joint state text
            feature_spec = FeatureSpec(**{"text_design": "joint", **spec_fields,
                                          "scalar_features": tuple(spec_fields["scalar_features"])})
            for config in (train_config, feature_spec):
                _check_field_types(config)
                validate(config, "")
            feature_spec.input_dim  # noqa: B018 (computed from every field: fails here, not at first use)
        except (KeyError, TypeError, ValueError, HeraError) as e:
            raise CheckpointError(f"{directory}/{step}/meta: missing or malformed field ({e.__class__.__name__}: "
                                  f"{e}); this is not a router saved by hera_jax, or it was damaged") from None
        if expected_spec is not None and feature_spec != expected_spec:
            diffs = [
                f"{f.name}: checkpoint {getattr(feature_spec, f.name)!r}, now {getattr(expected_spec, f.name)!r}"
                for f in dataclasses.fields(FeatureSpec)
                if getattr(feature_spec, f.name) != getattr(expected_spec, f.name)
            ]
            raise CheckpointError(
                f"{directory}/{step}: checkpoint was trained on other features ({'; '.join(diffs)}); "
                "use matching feature settings or retrain"
            )
        model = RouterMLP(train_config.hidden_sizes)
        # On this process's first device: orbax would otherwise place each array where it was saved ("cuda:0"),
        # and a router trained on a GPU or TPU could not be loaded on a CPU server (or the reverse).
        here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=here),
            jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, feature_spec.input_dim)))["params"]),
        )
        # Compare shapes from the stored metadata first: a restore that fails part-way leaves orbax's pending
        # TensorStore reads to be collected at interpreter exit, each printing a long warning.
        try:
            stored = ocp.StandardCheckpointHandler().metadata(directory.resolve() / str(step) / "params").tree
            shapes_match = _shapes(stored) == _shapes(abstract)
        except Exception as e:
            raise CheckpointError(f"{directory}/{step}: unreadable parameter metadata ({e})") from e
        if not shapes_match:
            raise CheckpointError(
                f"{directory}/{step}: parameters do not match the stored config (hidden sizes "
                f"{train_config.hidden_sizes}, input {feature_spec.input_dim}): stored {_shapes(stored)}"
            )
        try:
            with _quiet_orbax_failures(_read_failure):  # the restore's own error is reported below, once
                restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
            params = restored["params"]
        except Exception as e:  # the shapes matched above: the array data itself is cut or damaged
            detail = str(e).split("See full TensorStore details")[0].strip().splitlines()[0][:200]
            raise CheckpointError(
                f"{directory}/{step}: the parameter data under params/ is cut or damaged ({detail}); retrain, or "
                "restore the checkpoint from a copy"
            ) from None
    bad = nonfinite_leaves(params)
    if bad:
        raise CheckpointError(
            f"{directory}/{step}: parameters {', '.join(bad)} hold NaN/inf; this router is unusable, retrain it"
        )
    # routers saved before the digest existed carry none and load as they always did
    if "params_sha256" in meta and meta["params_sha256"] != params_digest(params):
        raise CheckpointError(
            f"{directory}/{step}: the parameters differ from the digest saved with them (the array files were "
            "changed or damaged on disk); retrain, or restore the checkpoint from a copy"
        )
    return RouterBundle(params, train_config, feature_spec, meta)


def params_digest(params: Any) -> str:
    """sha256 of every parameter array (path, dtype, shape, bytes), in tree order: one changed byte changes it."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
