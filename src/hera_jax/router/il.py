"""Stage 1 of Hera: train the router on IL labels and evaluate it on dev / test / unseen-task test."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from hera_jax.dataset import SPLIT_NAMES, StepTable, check_trainable
from hera_jax.features import FeatureSpec, featurize_indexed
from hera_jax.router.metrics import split_binary_metrics
from hera_jax.router.model import column_standardization, fold_standardization, standardize_columns
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
) -> tuple[jax.Array | np.ndarray, int]:
    """Features of every row (each distinct state embedded once; a jax.Array on the default device for one
    dataset). A union table reads each dataset's own cache
    (`<dataset>/features`); `features_dir` overrides the cache of the first (or only) dataset."""
    datasets = table.datasets or (None,)
    if len(datasets) == 1:
        cache = features_dir if features_dir is not None else Path(datasets[0]) / "features"
        return featurize_indexed(table.distinct_keys, table.distinct_texts, table.state_index, table.step, spec,
                                 cache, encode=encode, signals=table.device_signals)
    features = np.zeros((len(table), spec.input_dim), np.float32)
    num_new = 0
    for index, dataset in enumerate(datasets):
        rows = np.flatnonzero(table.source_mask(index))
        cache = features_dir if index == 0 and features_dir is not None else Path(dataset) / "features"
        used, local_index = np.unique(table.state_index[rows], return_inverse=True)
        part, new = featurize_indexed([table.distinct_keys[i] for i in used], [table.distinct_texts[i] for i in used],
                                      local_index, table.step[rows], spec, cache, encode=encode,
                                      signals={k: v[rows] for k, v in table.device_signals.items()})
        features[rows] = np.asarray(part)
        num_new += new
    return features, num_new


def split_metrics(
    table: StepTable,
    features: np.ndarray,
    config: TrainConfig,
    params: Any,
    threshold: float = 0.5,
    rows: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Binary metrics of the router on each split (restricted to `rows` when given, e.g. one dataset of a union):
    one forward pass over every row and one compiled program for all splits."""
    masks = {split: table.mask(split) if rows is None else table.mask(split) & rows for split in SPLIT_NAMES}
    masks = {split: mask for split, mask in masks.items() if mask.any()}
    if not masks:
        return {}
    scores = predict_p_cloud(config, params, jnp.asarray(features))
    values = split_binary_metrics(scores, jnp.asarray(table.label), jnp.asarray(np.stack(list(masks.values()))),
                                  jnp.float32(threshold))
    values = {k: np.asarray(v) for k, v in values.items()}
    return {split: {"states": int(mask.sum()), **{k: float(v[i]) for k, v in values.items()}}
            for i, (split, mask) in enumerate(masks.items())}


def il_train_data(table: StepTable, features: np.ndarray | jax.Array) -> TrainData:
    """The train split (IL labels, weight 1) and the dev split of a table, as the trainer takes them. The rows are
    taken on the device from one transfer of `features` (no host copy of each split: a million-row table's
    features are gigabytes)."""
    train, dev = np.flatnonzero(table.mask("train")), np.flatnonzero(table.mask("dev"))
    return _take_splits(jnp.asarray(features), train.astype(np.int32), dev.astype(np.int32),
                        table.label[train].astype(np.int32), table.label[dev].astype(np.int32))


@jax.jit
def _take_splits(x: jax.Array, train: jax.Array, dev: jax.Array, y_train: jax.Array, y_dev: jax.Array) -> TrainData:
    # one program: as separate eager ops the two gathers, their index handling and the conversions were a dozen
    # programs, each traced and looked up in the compile cache at every start-up
    return TrainData(x_train=x[train], y_train=y_train, w_train=jnp.ones(train.shape, jnp.float32), x_dev=x[dev],
                     y_dev=y_dev)


def train_and_evaluate(
    table: StepTable,
    features: np.ndarray,
    config: TrainConfig,
    dataset_dir: str | Path,
    threshold: float = 0.5,
    mesh: Mesh | None = None,
    standardize: Sequence[int] = (),
) -> tuple[Any, TrainResult, dict[str, dict[str, float]], float]:
    """Train on the train split (early stopping on dev), evaluate every split. With a `mesh` of several devices
    (router/sharding.py's `data_mesh`) training is data parallel; the batch size must divide by the device count.

    `standardize`: feature columns trained z-scored by their train-split mean and deviation (the device's
    confidence signals, whose scales differ by signal and model); the returned parameters take raw features
    (`fold_standardization`)."""
    check_trainable(table, dataset_dir)
    features = jnp.asarray(features)  # one host-to-device transfer for training and the split metrics
    data = il_train_data(table, features)
    columns = jnp.asarray(standardize, jnp.int32)
    if len(standardize):
        shift, scale = column_standardization(data.x_train, columns)
        data = data._replace(x_train=standardize_columns(data.x_train, columns, shift, scale),
                             x_dev=standardize_columns(data.x_dev, columns, shift, scale))
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
    if len(standardize):
        result = result._replace(params=fold_standardization(result.params, columns, shift, scale))
    del data  # the split copies: a large table's features fit on the device once more for the metrics
    metrics = split_metrics(table, features, config, result.params, threshold)
    return result.params, result, metrics, train_s
