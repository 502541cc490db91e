"""Narrow sweep configurations packed side by side into one wide network ("slot").

Zero padding (hera_jax/sweep.py) trains a 32x16 router inside a 256x128 network: the optimizer reads and writes the
padded zeros, and the GEMMs multiply them, every step. Configurations that differ only in their width (same seed,
learning rate and labels, so the same minibatches and loss) can instead share one network: the default grid's
32x16, 64x32 and 128x64 routers take 224 of a slot's 256 first-layer units and 112 of its 128 second-layer units,
so its 64 configurations train in 32 slots instead of 64. Inside a slot each router owns a block of units per
layer and one output column; the weights between blocks stay zero (make_train drops their gradients), and
make_train's heads give each router its own early stopping, so every router trains exactly as it would alone.

Everything here is index bookkeeping in numpy (static, built once per grid) and one gather per parameter array.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.router.train import Heads, TrainResult


class Packing(NamedTuple):
    """Where each configuration trains (C configurations, S slots of up to K routers each)."""

    slot: np.ndarray  # int[C]
    head: np.ndarray  # int[C] output column of the configuration in its slot
    offset: np.ndarray  # int[C, depth] first unit of the configuration in each hidden layer of its slot
    width: np.ndarray  # int[C, depth] the configuration's own widths
    capacity: tuple[int, ...]  # a slot's hidden widths (the grid's widest)
    num_heads: int  # K

    @property
    def num_slots(self) -> int:
        return int(self.slot.max()) + 1

    def slot_configs(self) -> np.ndarray:
        """int[S, K]: the configuration in each head of each slot, -1 for an unused head."""
        table = np.full((self.num_slots, self.num_heads), -1, np.int64)
        table[self.slot, self.head] = np.arange(len(self.slot))
        return table

    def unit_owner(self, layer: int) -> np.ndarray:
        """int[S, capacity[layer]]: the configuration owning each unit of a hidden layer, -1 for unused units."""
        owner = np.full((self.num_slots, self.capacity[layer]), -1, np.int64)
        for c, (s, o, w) in enumerate(zip(self.slot, self.offset[:, layer], self.width[:, layer])):
            owner[s, o:o + w] = c
        return owner


def pack_configurations(share_keys: list[tuple], widths: np.ndarray, capacity: tuple[int, ...]) -> Packing:
    """First fit, widest first: configurations with equal `share_keys` (everything but the width) share a slot while
    every hidden layer's widths add up to at most `capacity`."""
    widths = np.asarray(widths, np.int64)
    num_configs, depth = widths.shape
    slot, head = np.zeros(num_configs, np.int64), np.zeros(num_configs, np.int64)
    offset = np.zeros((num_configs, depth), np.int64)
    used: list[np.ndarray] = []
    heads: list[int] = []
    slots_of_key: dict[tuple, list[int]] = {}
    for c in sorted(range(num_configs), key=lambda c: (-int(widths[c].sum()), c)):
        candidates = slots_of_key.setdefault(share_keys[c], [])
        s = next((s for s in candidates if np.all(used[s] + widths[c] <= capacity)), None)
        if s is None:
            s = len(used)
            used.append(np.zeros(depth, np.int64))
            heads.append(0)
            candidates.append(s)
        slot[c], head[c], offset[c] = s, heads[s], used[s]
        used[s] = used[s] + widths[c]
        heads[s] += 1
    return Packing(slot, head, offset, widths, tuple(int(w) for w in capacity), max(heads))


def slot_heads(packing: Packing) -> Heads:
    """make_train's Heads per slot (leading axis S): each hidden unit's router (-1: unused), which weights join two
    units of one router (the others stay zero), each parameter's router."""
    num_slots, num_heads, depth = packing.num_slots, packing.num_heads, len(packing.capacity)
    unit_head, keep, head_of = [], {}, {}
    previous = np.zeros((num_slots, 0), np.int64)  # the layer below's unit routers (none below the first)
    for layer in range(depth + 1):
        if layer < depth:
            owner = packing.unit_owner(layer)
            head = np.where(owner >= 0, packing.head[np.maximum(owner, 0)], -1)
            unit_head.append(jnp.asarray(head, jnp.int32))
        else:  # output column k is head k's
            head = np.broadcast_to(np.arange(num_heads), (num_slots, num_heads))
        # None: every weight of the array is kept, so make_train selects nothing there at each step. Every router
        # reads every input feature, and each bias belongs to one unit.
        kernel_keep = None
        if layer > 0:
            kernel_keep = jnp.asarray((previous[:, :, None] == head[:, None, :]) & (previous[:, :, None] >= 0))
        keep[f"Dense_{layer}"] = {"kernel": kernel_keep, "bias": None}
        column = np.maximum(head, 0)  # an unused unit holds zeros whichever router "owns" it
        head_of[f"Dense_{layer}"] = {"kernel": jnp.asarray(column[:, None, :]), "bias": jnp.asarray(column)}
        previous = head
    return Heads(tuple(unit_head), keep, head_of)


def _layer_sources(packing: Packing):
    """Per Dense layer: (owner, unit) of each of a slot's columns: the configuration it comes from and its column
    there. Hidden columns are units; output column k is head k's configuration's only output."""
    configs = packing.slot_configs()
    sources = []
    for layer in range(len(packing.capacity)):
        owner = packing.unit_owner(layer)
        unit = np.arange(packing.capacity[layer])[None, :] - packing.offset[np.maximum(owner, 0), layer]
        sources.append((owner, np.where(owner >= 0, unit, 0)))
    sources.append((configs, np.zeros_like(configs)))
    return sources


def pack_params(config_params: dict, packing: Packing) -> dict:
    """Configurations' parameters (leading axis C, zero-padded to the widest layers, one output) into slots (leading
    axis S, K outputs), each router's block at its offsets and zeros elsewhere."""
    sources = _layer_sources(packing)
    packed = {}
    for i, (owner, unit) in enumerate(sources):
        leaf = config_params[f"Dense_{i}"]
        c = owner[:, None, :]
        if i == 0:  # the input rows are shared by every router
            rows, valid = np.arange(leaf["kernel"].shape[1])[None, :, None], c >= 0
        else:
            row_owner, row_unit = sources[i - 1]
            rows, valid = row_unit[:, :, None], (c >= 0) & (row_owner[:, :, None] == c)
        kernel = leaf["kernel"][np.maximum(c, 0), rows, unit[:, None, :]]
        bias = leaf["bias"][np.maximum(owner, 0), unit]
        packed[f"Dense_{i}"] = {"kernel": jnp.where(valid, kernel, 0.0), "bias": jnp.where(owner >= 0, bias, 0.0)}
    return packed


def unpack_params(slot_params: dict, packing: Packing, wide_shapes: dict) -> dict:
    """The inverse of pack_params: slots' parameters back to one network per configuration (leading axis C), zero
    padded to `wide_shapes` (the grid's widest layers, one output)."""
    num_layers = len(packing.capacity) + 1
    slot = packing.slot

    def columns(i: int, size: int):
        """int[C, size] slot column of each of a configuration's columns in layer i, and whether it is real."""
        if i == num_layers - 1:
            return np.broadcast_to(packing.head[:, None], (len(slot), size)), np.ones((len(slot), size), bool)
        j = np.arange(size)[None, :]
        real = j < packing.width[:, i][:, None]
        return np.where(real, packing.offset[:, i][:, None] + j, 0), real

    unpacked = {}
    for i in range(num_layers):
        shape = wide_shapes[f"Dense_{i}"]["kernel"].shape
        col, col_real = columns(i, shape[1])
        if i == 0:
            row, row_real = np.broadcast_to(np.arange(shape[0])[None, :], (len(slot), shape[0])), True
        else:
            row, row_real = columns(i - 1, shape[0])
            row_real = row_real[:, :, None]
        leaf = slot_params[f"Dense_{i}"]
        kernel = leaf["kernel"][slot[:, None, None], row[:, :, None], col[:, None, :]]
        bias = leaf["bias"][slot[:, None], col]
        unpacked[f"Dense_{i}"] = {"kernel": jnp.where(row_real & col_real[:, None, :], kernel, 0.0),
                                  "bias": jnp.where(col_real, bias, 0.0)}
    return unpacked


def unpack_result(result: TrainResult, packing: Packing, wide_shapes: dict) -> TrainResult:
    """A slots' TrainResult (leading S, trailing K) as one per configuration (leading C)."""
    per_config = jax.tree.map(lambda a: a[packing.slot, ..., packing.head],
                              result._replace(params=None))
    return per_config._replace(params=unpack_params(result.params, packing, wide_shapes))
