"""Stage 1 of Hera: train the router on IL labels and evaluate it on dev / test / unseen-task test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from hera_jax.dataset import SPLIT_NAMES, StepTable, check_trainable
from hera_jax.features import FeatureCacheError, FeatureSpec, featurize
from hera_jax.features.cache import cache_path
from hera_jax.router.metrics import binary_metrics
from hera_jax.router.sharding import make_sharded_train, pad_rows, shard_train_data
from hera_jax.router.train import (
    TrainConfig,
    TrainData,
    TrainResult,
    check_finite_result,
    make_train,
    predict_p_cloud,
)


def build_features(
    table: StepTable, spec: FeatureSpec, features_dir: Path | None = None, encode=None
) -> tuple[np.ndarray, int]:
    """Features of every row. A union table reads each dataset's own cache (`<dataset>/features`);
    `features_dir` overrides the cache of the first (or only) dataset."""
    datasets = table.datasets or (None,)
    if len(datasets) == 1:
        cache = features_dir if features_dir is not None else Path(datasets[0]) / "features"
        features, num_new = featurize(table.state_key, table.state_text, table.step, spec, cache, encode=encode)
        check_finite_features(features, table.state_key, spec, cache)
        return features, num_new
    features = np.zeros((len(table), spec.input_dim), np.float32)
    num_new = 0
    for index, dataset in enumerate(datasets):
        rows = np.flatnonzero(table.source_mask(index))
        cache = features_dir if index == 0 and features_dir is not None else Path(dataset) / "features"
        keys = [table.state_key[i] for i in rows]
        part, new = featurize(keys, [table.state_text[i] for i in rows], table.step[rows], spec, cache, encode=encode)
        check_finite_features(part, keys, spec, cache)
        features[rows] = part
        num_new += new
    return features, num_new


def check_finite_features(features: np.ndarray, state_keys: list[str], spec: FeatureSpec, cache_dir: Path) -> None:
    """Refuse NaN/inf features (a damaged cache or encoder output) before they reach training, naming the cache
    file and the first bad state_key: one NaN input turns every trained weight into NaN."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        what = "features" if spec.text_design == "joint" else f"segment embeddings ({spec.text_design} design)"
        raise FeatureCacheError(
            f"{cache_path(cache_dir, spec.encoder, spec.text_design)}: {what} of state_key {state_keys[first]!r} "
            f"hold NaN/inf ({len({state_keys[i] for i in np.flatnonzero(bad)})} state(s) affected); delete that "
            "cache file to re-embed them"
        )


def split_metrics(
    table: StepTable,
    features: np.ndarray,
    config: TrainConfig,
    params: Any,
    threshold: float = 0.5,
    rows: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Binary metrics of the router on each split (restricted to `rows` when given, e.g. one dataset of a union)."""
    metrics = {}
    for split in SPLIT_NAMES:
        mask = table.mask(split) if rows is None else table.mask(split) & rows
        if not mask.any():
            continue
        scores = predict_p_cloud(config, params, jnp.asarray(features[mask]))
        values = binary_metrics(scores, jnp.asarray(table.label[mask]), threshold)
        metrics[split] = {"states": int(mask.sum()), **{k: float(v) for k, v in values.items()}}
    return metrics


def il_train_data(table: StepTable, features: np.ndarray) -> TrainData:
    """The train split (IL labels, weight 1) and the dev split of a table, as the trainer takes them."""
    train, dev = table.mask("train"), table.mask("dev")
    return TrainData(
        x_train=jnp.asarray(features[train]),
        y_train=jnp.asarray(table.label[train], jnp.int32),
        w_train=jnp.ones(int(train.sum()), jnp.float32),
        x_dev=jnp.asarray(features[dev]),
        y_dev=jnp.asarray(table.label[dev], jnp.int32),
    )


def train_and_evaluate(
    table: StepTable,
    features: np.ndarray,
    config: TrainConfig,
    dataset_dir: str | Path,
    threshold: float = 0.5,
    mesh: Mesh | None = None,
) -> tuple[Any, TrainResult, dict[str, dict[str, float]], float]:
    """Train on the train split (early stopping on dev), evaluate every split. With a `mesh` of several devices
    (router/sharding.py's `data_mesh`) training is data parallel; the batch size must divide by the device count."""
    check_trainable(table, dataset_dir)
    data = il_train_data(table, features)
    start = time.perf_counter()
    if mesh is not None and mesh.size > 1:  # data parallel: each device takes a slice of every minibatch
        data = pad_rows(data, mesh.size)
        train = make_sharded_train(config, int(data.x_train.shape[0]), mesh)
        result = train(jax.random.key(config.seed), shard_train_data(data, mesh))
    else:
        result = jax.jit(make_train(config, int(data.x_train.shape[0])))(jax.random.key(config.seed), data)
    jax.block_until_ready(result)
    train_s = time.perf_counter() - start
    check_finite_result(result, f"training on {dataset_dir}")
    metrics = split_metrics(table, features, config, result.params, threshold)
    return result.params, result, metrics, train_s
