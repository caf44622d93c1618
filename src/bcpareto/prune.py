"""Structured pruning: a trained parent model -> the plain narrower model of a pruned grid point.

Which channels stay (network slimming, Liu et al. 2017): a channel's importance is the |scale|
(gamma) of the BatchNorm that normalises it; a layer without one (the first conv block, whose
BatchNorm the earlier architecture left out) is ranked by its filters' L1 norm instead (Li et al.
2017). Each layer keeps its most important channels, as many as ``pruned_point`` (model.py) gives
it; channels that a skip connection adds together are ranked and kept as one set (their
importances summed), and the image's channels and the four class outputs are never pruned.

The pruned model is ``build_model`` of the pruned point, a real smaller architecture (fewer
parameters, a smaller int8 file), not a mask; its weights are the parent's at the kept channels,
and each removed channel is replaced by the constant it carries when its scale is 0 (BatchNorm's
beta, or the filter's bias), folded into the next layer's bias or BatchNorm mean. So where the
removed channels' scales are 0, the pruned model computes exactly the parent's outputs (and with
every channel kept, it is the parent); elsewhere, fine-tuning (trial.py) recovers what was lost.

Works on the models ``build_model`` makes (conv, separable and inverted-residual blocks, stem,
dense head), walking the Keras graph in the layers' order; any other layer type is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import TrainConfig
from .errors import TrialFailed
from .gridspec import GridPoint
from .model import build_model

if TYPE_CHECKING:
    import keras

# Layers that pass every channel through unchanged (a constant channel stays that constant).
_PASS_THROUGH = ("MaxPooling2D", "Dropout", "GlobalAveragePooling2D")


def prune_model(parent: keras.Model, point: GridPoint, *, config: TrainConfig) -> keras.Model:
    """The pruned model of ``point`` (uncompiled) with ``parent``'s weights at the kept channels.

    ``parent``: the trained model of ``point.parent``, as ``build_model`` made it."""
    child = build_model(point, config=config)
    if len(parent.layers) != len(child.layers):
        raise TrialFailed(f"grid point {point.grid_id}: the model to prune has {len(parent.layers)} "
                          f"layers but its pruned architecture {len(child.layers)}; expected the "
                          f"parent's model, built for {point.parent.describe()}")
    pairs = list(zip(parent.layers, child.layers))
    for p, c in pairs:
        if type(p) is not type(c):
            raise TrialFailed(f"grid point {point.grid_id}: layer {p.name} ({type(p).__name__}) has "
                              f"no counterpart in the pruned model ({type(c).__name__})")
    ranking = _ranking_norms(parent)
    kept = _kept_channels(parent, {p.name: _width(c) for p, c in pairs if _is_producer(p)}, ranking=ranking)
    _copy_weights(pairs, kept, ranking=ranking)
    return child


def _kept_channels(parent: keras.Model, widths: dict[str, int], *, ranking: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each producing layer's (conv, dense) kept output channels, ascending, given how many it keeps.

    Producers whose outputs a skip connection adds keep one set, chosen by their summed importance."""
    groups = _skip_groups(parent)
    kept: dict[str, np.ndarray] = {}
    for members in groups:
        layers = [parent.get_layer(name) for name in members if name is not None]
        full = _width(layers[0])
        count = {widths[layer.name] for layer in layers}
        if len(count) != 1 or (None in members and count != {full}):
            raise TrialFailed(f"layers {', '.join(n for n in members if n)} add their outputs but would "
                              f"keep {sorted(count)} channels; expected one count for all")
        n = count.pop()
        if n == full:
            chosen = np.arange(full)
        else:
            importance = sum(_importance(layer, ranking.get(layer.name)) for layer in layers)
            chosen = np.sort(np.argsort(-importance, kind="stable")[:n])
        for layer in layers:
            kept[layer.name] = chosen
    return kept


def _is_producer(layer: Any) -> bool:
    """A layer that makes new channels out of all its input channels: a (1x1 or kxk) conv, a dense."""
    return type(layer).__name__ in ("Conv2D", "Dense")


def _width(layer: Any) -> int:
    return int(layer.filters if type(layer).__name__ == "Conv2D" else layer.units)


def _inputs(layer: Any) -> list[Any]:
    """The layers whose outputs this layer takes (each layer of these models is called once)."""
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def _owners(model: keras.Model) -> dict[str, str | None]:
    """Each layer -> the producer whose channels its output carries (None: the image's)."""
    owner: dict[str, str | None] = {}
    for layer in model.layers:
        inputs = _inputs(layer)
        if _is_producer(layer):
            owner[layer.name] = layer.name
        else:  # an Add's inputs carry the same channels (_skip_groups ties their owners)
            owner[layer.name] = owner[inputs[0].name] if inputs else None
    return owner


def _skip_groups(model: keras.Model) -> list[list[str | None]]:
    """The producers in sets whose outputs are added (a set of one where nothing adds them)."""
    owner = _owners(model)
    group: dict[str | None, int] = {}
    groups: list[list[str | None]] = []
    for layer in model.layers:
        if _is_producer(layer):
            group[layer.name] = len(groups)
            groups.append([layer.name])
    for layer in model.layers:
        if type(layer).__name__ != "Add":
            continue
        first, *rest = (owner[x.name] for x in _inputs(layer))
        for name in (first, *rest):
            if name not in group:  # the image's channels join a set: it keeps them all
                group[name] = len(groups)
                groups.append([name])
        for other in rest:
            a, b = group[first], group[other]
            if a != b:
                groups[a] += groups[b]
                for name in groups[b]:
                    group[name] = a
                groups[b] = []
    return [g for g in groups if g]


def _ranking_norms(model: keras.Model) -> dict[str, Any]:
    """Each producer -> the BatchNorm right after it (through pooling, dropout or ReLU), if any."""
    ranking: dict[str, Any] = {}
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        source = _inputs(layer)[0]
        while type(source).__name__ in ("MaxPooling2D", "Dropout", "ReLU"):
            source = _inputs(source)[0]
        if _is_producer(source) and source.name not in ranking:
            ranking[source.name] = layer
    return ranking


def _importance(producer: Any, norm: Any) -> np.ndarray:
    """|BatchNorm gamma| of each output channel, else the L1 norm of its filter."""
    if norm is not None:
        return np.abs(np.asarray(norm.gamma.numpy(), dtype=np.float64))
    kernel = np.asarray(producer.get_weights()[0], dtype=np.float64)
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def _activation(layer: Any, values: np.ndarray) -> np.ndarray:
    name = getattr(layer.activation, "__name__", "linear")
    if name == "relu":
        return np.maximum(values, 0.0)
    if name == "linear":
        return values
    return values  # softmax: only the class outputs, which are never pruned


def _copy_weights(pairs: list[tuple[Any, Any]], kept: dict[str, np.ndarray], *,
                  ranking: dict[str, Any]) -> None:
    """Copy the kept channels' weights layer by layer, folding the removed ones' constants.

    The state of every layer's output: the parent's channels it keeps, the constant value of each
    removed channel (indexed by the parent's channels), and a shift of the kept channels that the
    next BatchNorm must absorb (a producer without a bias)."""
    ranking_norms = {id(norm) for norm in ranking.values()}
    state: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    for p, c in pairs:
        kind = type(p).__name__
        inputs = [state[x.name] for x in _inputs(p)]
        weights = [np.asarray(w, dtype=np.float64) for w in p.get_weights()]
        if kind == "InputLayer":
            n = int(p.output.shape[-1])
            state[p.name] = (np.arange(n), np.zeros(n), None)
            continue
        keep, const, shift = inputs[0]
        if shift is not None and kind != "BatchNormalization":
            raise TrialFailed(f"cannot prune {p.name}: a layer without a bias before it, not a BatchNorm")
        if _is_producer(p):
            kernel = weights[0]
            out = kept[p.name]
            removed = np.setdiff1d(np.arange(kernel.shape[-2]), keep)
            summed = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)
            delta = const[removed] @ summed[removed]  # what the removed inputs' constants added
            new = [kernel[..., keep, :][..., out]]
            # a removed output's value (where no BatchNorm follows to set it): its bias, as for a
            # filter of norm 0; without a bias, the next BatchNorm absorbs the kept outputs' shift
            if p.use_bias:
                bias = weights[1] + delta
                new.append(bias[out])
                state[p.name] = (out, _activation(p, bias), None)
            else:
                state[p.name] = (out, _activation(p, delta), delta[out])
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = weights
            if shift is not None:
                mean = mean.copy()
                mean[keep] -= shift
            new = [gamma[keep], beta[keep], mean[keep], variance[keep]]
            if id(p) in ranking_norms:
                value = beta.copy()  # a channel removed for a zero scale carries its beta
            else:
                value = gamma * (const - mean) / np.sqrt(variance + p.epsilon) + beta
            state[p.name] = (keep, value, None)
        elif kind == "ReLU":
            value = np.maximum(const, 0.0)
            if p.max_value is not None:
                value = np.minimum(value, float(p.max_value))
            new = []
            state[p.name] = (keep, value, None)
        elif kind == "DepthwiseConv2D":
            kernel = weights[0]
            new = [kernel[:, :, keep, :]]
            value = const * kernel.sum(axis=(0, 1))[:, 0]
            if p.use_bias:
                new.append(weights[1][keep])
                value = value + weights[1]
            state[p.name] = (keep, value, None)
        elif kind == "Add":
            if any(not np.array_equal(keep, other[0]) for other in inputs[1:]):
                raise TrialFailed(f"cannot prune {p.name}: its inputs keep different channels")
            new = []
            state[p.name] = (keep, sum(other[1] for other in inputs), None)
        elif kind in _PASS_THROUGH or kind == "Rescaling":
            new = []
            state[p.name] = (keep, const, None)
        else:
            raise TrialFailed(f"cannot prune layer {p.name} of type {kind}: expected the layers "
                              "build_model makes (conv, separable and inverted-residual blocks, dense)")
        if new:
            c.set_weights([w.astype(np.float32) for w in new])
