"""Train M members of one grid point (folds, seeds) as one Keras model on one batch stream.

A grid point's cross-validation folds and repeats are M copies of one architecture. The packed
model holds them side by side in the channel axis (member-major: channel ``m * C + c`` is
member m's channel c) and trains them on one stream of batches, decoded and augmented once:

    shared input (pixels, Rescaling)       one tensor, C channels
    Conv2D on the shared input             one Conv2D with M * F filters (the stem, block 1)
    Conv2D between packed tensors          grouped: member m's F outputs see only its C inputs
    1x1 Conv2D (pointwise, expansion)      a block-diagonal einsum (B,H,W,M,C) x (M,C,F)
    DepthwiseConv2D                        one DepthwiseConv2D on M * C channels (per channel anyway)
    BatchNormalization                     per channel, statistics over the member's own images only
    Dense                                  a block-diagonal einsum (B,M,C) x (M,C,N)
    MaxPool, GlobalAveragePool, ReLU, Add, Dropout    unchanged: they work per channel or element
    output                                 (B, M, 4) softmax per member

It is made from the standalone model (``model.build_model``) layer by layer, so every block type
the grid knows packs the same way, and ``unpack`` gives member i back as exactly that model.

Folds: every batch carries a (B, M) mask, 1 where the image trains member m. The loss is the
sum over members of each member's mean loss over its own images of the batch, so a member's
gradient is its standalone gradient on those images. BatchNorm in training normalises with
statistics over the member's masked images only, and updates its moving statistics with them;
a held-out image still flows through member m (its output is multiplied by a zero weight), but
no statistic, loss or gradient of member m depends on it (tests/test_packed.py changes a
held-out image's label and pixels and finds member m's weights unchanged). With K-fold members
a member trains on (K-1)/K of each batch, so the packed batch is K/(K-1) times the preset's:
each member then sees about the preset's batch size and the same number of steps per epoch.

Seeds: member m starts from the weights ``build_model`` makes under its own seed (the weights a
standalone training of that member starts from); its dropout masks are its own elements of the
packed tensor, independent of the other members'.

Construction measured on this project's CPU (AMD EPYC, 2 cores, shared: load average 7-9
during the run, so within a row only; 2026-12-07; 96 px, M = 5, batch 40 packed and 32
standalone, random pixels, ms per training step (train_on_batch), median of 5 after 2 warm-ups;
`python benchmarks/bench_packed.py --construction`). Full convolutions between packed tensors
(the conv family's blocks 2+) were timed as Keras' grouped convolution (``ops.conv`` with
groups = M) and as M convolutions on channel slices, concatenated ("split"):

    model (edge_grid_mobile id)   backend     5 x standalone  branches  packed groups  packed split
    smallest (6, 2.8k params)     tensorflow       532           252         279           378
    8k separable (4)              tensorflow       341           688         972           869
    largest conv (2, 228k)        tensorflow     4,877         6,517      71,198         7,073
    smallest (6)                  jax            1,559         1,488           -             -
    8k separable (4)              jax            1,750         2,476           -             -
    largest conv (2)              jax            8,685        20,941           -             -

TensorFlow's grouped convolution on this CPU is 10x slower than the split form (71 s a step),
hence "split" for TensorFlow. JAX's packed rows are missing: that run hit a bug in the masked
BatchNorm under JAX (fixed since; the JAX tests pass); "split" is used there too until it is
measured. On random data, without the input pipeline, one packed step costs about what the M
standalone steps cost together or more (the masked BatchNorm is several unfused passes where
Keras' is one fused op): whatever packing gains comes from the per-step fixed costs it shares
(decoding, augmentation, the input pipeline, Python, dispatch), which benchmarks/bench_packed.py
measures on real batches (benchmarks/README.md).

Member results: ``train_packed`` returns, per member, the unpacked model and the TrialResult
``trial.train_and_evaluate`` would return for it (trial.finish_trial writes both): validation is
the member's held-out fold (or the split's validation set without folds), TEST is evaluated,
converted and saved from the unpacked model. Not yet: successive halving (``judge``),
distillation and ``initial_model`` (the search trains those unpacked).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import set_seed
from .config import TrainConfig
from .data import DataSplits, fit_input, training_dataset
from .errors import TrialFailed
from .gridspec import GridPoint
from .model import N_CLASSES, build_model, check_memory, cost, h5_size_mb, memory_limit_bytes, train_memory_bytes
from .trial import (
    TrialResult,
    _batch_end,
    _Curve,
    common_columns,
    compile_model,
    finish_trial,
    fold_of,
    make_optimizer,
    seed_of,
)

# How full convolutions between packed tensors run: "groups" (one grouped ops.conv) or "split"
# (M convolutions on channel slices); chosen per backend by the measurement in the docstring.
GROUPED_CONV = {"tensorflow": "split", "jax": "split"}


def pack_size(point: GridPoint, *, config: TrainConfig, wanted: int) -> tuple[int, str | None]:
    """How many members of ``point``, up to ``wanted``, to train packed so that the packed step
    fits this machine's memory (about n times one member's step at the packed batch), and the
    reason when fewer than ``wanted``."""
    config = config.at(point)
    folds = config.folds if config.validation == "cv" else 0
    batch = math.ceil(config.batch_size * folds / (folds - 1)) if folds > 1 else config.batch_size
    one = train_memory_bytes(point, image_size=config.image_size, channels=config.channels,
                             padding=config.padding, batch_size=batch)
    have = memory_limit_bytes()
    n = max(1, wanted)
    while n > 1 and n * one > have:
        n -= 1
    if n == wanted:
        return n, None
    return n, (f"grid point {point.grid_id}: {wanted} models packed need about {wanted * one / 2**30:,.1f} GiB, "
               f"more than this machine's {have / 2**30:,.1f} GiB: packs of {n}")


@dataclass(frozen=True)
class Member:
    """One model of a packed group: the fold it holds out (None: trains on all of data.train,
    validates on data.val) and its seed; ``repeat`` is the search's repeat number (CSV rows)."""

    fold: int | None
    seed: int
    repeat: int = 0


def members_for(point: GridPoint, *, config: TrainConfig, data: DataSplits, repeats: list[int]) -> list[Member]:
    """The members that trial.train_and_evaluate would train for these repeats: the same folds
    (repeat r holds out fold r % K under cross-validation) and seeds."""
    return [Member(fold=fold_of(data, repeat=r), seed=seed_of(point, config=config, repeat=r), repeat=r)
            for r in repeats]


@dataclass(frozen=True)
class MemberResult:
    member: Member
    model: Any  # the unpacked keras.Model: build_model(point)'s architecture, this member's weights
    result: TrialResult


# --------------------------------------------------------------------------- the packed layers


def _layers() -> Any:
    """The packed layer classes, made on first use (Keras is imported inside functions only)."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    import keras
    from keras import ops

    class Tile(keras.layers.Layer):
        """A shared tensor -> M member copies along the channels (member-major)."""

        def __init__(self, members: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.members = members

        def call(self, x: Any) -> Any:
            return ops.tile(x, [1] * (len(x.shape) - 1) + [self.members])

    class PackedConv2D(keras.layers.Layer):
        """M Conv2D layers of F filters: on a shared input one conv of M * F filters; between
        packed tensors grouped (kernel (k, k, C, M * F), member m's outputs m*F.. see its inputs
        m*C..), as an einsum when the kernel is 1x1."""

        def __init__(self, members: int, filters: int, kernel_size: tuple[int, int], *, strides: tuple[int, int],
                     padding: str, use_bias: bool, activation: Any, shared_input: bool, grouped: str,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.members, self.filters, self.kernel_size = members, filters, tuple(kernel_size)
            self.strides, self.padding, self.use_bias = tuple(strides), padding, use_bias
            self.activation = keras.activations.get(activation)
            self.shared_input, self.grouped = shared_input, grouped

        def build(self, input_shape: Any) -> None:
            c = input_shape[-1] if self.shared_input else input_shape[-1] // self.members
            self.c_in = c
            self.kernel = self.add_weight(shape=(*self.kernel_size, c, self.members * self.filters),
                                          initializer="zeros", name="kernel")
            self.bias = (self.add_weight(shape=(self.members * self.filters,), initializer="zeros", name="bias")
                         if self.use_bias else None)

        def call(self, x: Any) -> Any:
            m, c, f = self.members, self.c_in, self.filters
            if self.shared_input:
                y = ops.conv(x, self.kernel, strides=self.strides, padding=self.padding)
            elif self.kernel_size == (1, 1) and self.strides == (1, 1):
                shape = ops.shape(x)
                y = ops.einsum("bhwmc,mcf->bhwmf", ops.reshape(x, (-1, shape[1], shape[2], m, c)),
                               ops.transpose(ops.reshape(self.kernel, (c, m, f)), (1, 0, 2)))
                y = ops.reshape(y, (-1, shape[1], shape[2], m * f))
            elif self.grouped == "groups":
                y = ops.conv(x, self.kernel, strides=self.strides, padding=self.padding)
            else:
                y = ops.concatenate([
                    ops.conv(x[..., i * c:(i + 1) * c], self.kernel[..., i * f:(i + 1) * f],
                             strides=self.strides, padding=self.padding) for i in range(m)], axis=-1)
            if self.bias is not None:
                y = y + self.bias
            return self.activation(y)

        def member_weights(self, i: int) -> list[np.ndarray]:
            part = slice(i * self.filters, (i + 1) * self.filters)
            return [np.asarray(self.kernel)[..., part]] + ([np.asarray(self.bias)[part]] if self.use_bias else [])

        def set_members(self, weights: list[list[np.ndarray]]) -> None:
            for k, variable in enumerate(self.weights):
                variable.assign(np.concatenate([w[k] for w in weights], axis=-1))

    class PackedDepthwise(keras.layers.DepthwiseConv2D):
        """A DepthwiseConv2D on M * C channels: member m's kernel is channels m*C.. of it."""

        def member_weights(self, i: int) -> list[np.ndarray]:
            c = self.kernel.shape[2] // self.members
            part = slice(i * c, (i + 1) * c)
            return [np.asarray(self.kernel)[:, :, part]] + ([np.asarray(self.bias)[part]] if self.use_bias else [])

        def set_members(self, weights: list[list[np.ndarray]]) -> None:
            self.kernel.assign(np.concatenate([w[0] for w in weights], axis=2))
            if self.use_bias:
                self.bias.assign(np.concatenate([w[1] for w in weights]))

    class PackedDense(keras.layers.Layer):
        """M Dense layers as one block-diagonal einsum: (B, M * C) -> (B, M * N)."""

        def __init__(self, members: int, units: int, *, activation: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.members, self.units = members, units
            self.activation = keras.activations.get(activation)

        def build(self, input_shape: Any) -> None:
            self.c_in = input_shape[-1] // self.members
            self.kernel = self.add_weight(shape=(self.members, self.c_in, self.units),
                                          initializer="zeros", name="kernel")
            self.bias = self.add_weight(shape=(self.members, self.units), initializer="zeros", name="bias")

        def call(self, x: Any) -> Any:
            y = ops.einsum("bmc,mcn->bmn", ops.reshape(x, (-1, self.members, self.c_in)), self.kernel)
            y = self.activation(y + self.bias)  # softmax: per member, over its last axis
            return ops.reshape(y, (-1, self.members * self.units))

        def member_weights(self, i: int) -> list[np.ndarray]:
            return [np.asarray(self.kernel)[i], np.asarray(self.bias)[i]]

        def set_members(self, weights: list[list[np.ndarray]]) -> None:
            self.kernel.assign(np.stack([w[0] for w in weights]))
            self.bias.assign(np.stack([w[1] for w in weights]))

    class MaskedBatchNorm(keras.layers.Layer):
        """BatchNormalization of M members' channels; in training, member m's mean and variance
        (and moving statistics) come from the images whose mask[:, m] is 1, and nothing else.
        A batch without any image of member m normalises it with its moving statistics and
        leaves them as they are. Weights as Keras' BatchNormalization: gamma, beta, moving
        mean, moving variance."""

        def __init__(self, members: int, *, momentum: float, epsilon: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.members, self.momentum, self.epsilon = members, momentum, epsilon

        def build(self, x_shape: Any, member_mask_shape: Any = None) -> None:
            n = x_shape[-1]
            self.gamma = self.add_weight(shape=(n,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(n,), initializer="zeros", name="beta")
            self.moving_mean = self.add_weight(shape=(n,), initializer="zeros", name="moving_mean",
                                               trainable=False)
            self.moving_variance = self.add_weight(shape=(n,), initializer="ones", name="moving_variance",
                                                   trainable=False)

        def call(self, x: Any, member_mask: Any, training: bool | None = None) -> Any:
            # variables as tensors first: JAX's tracing takes no Keras variable inside ops.where
            moving_mean = ops.convert_to_tensor(self.moving_mean)
            moving_variance = ops.convert_to_tensor(self.moving_variance)
            mean, variance = moving_mean, moving_variance
            if training:
                n = x.shape[-1]
                weight = ops.repeat(ops.cast(member_mask, x.dtype), n // self.members, axis=1)  # (B, M*C)
                weight = ops.reshape(weight, (-1,) + (1,) * (len(x.shape) - 2) + (n,))
                axes = tuple(range(len(x.shape) - 1))
                spatial = float(np.prod(x.shape[1:-1])) if len(x.shape) > 2 else 1.0
                count = ops.sum(weight, axis=axes) * spatial
                some = count > 0
                safe = ops.maximum(count, 1.0)
                batch_mean = ops.sum(x * weight, axis=axes) / safe
                batch_variance = ops.sum(ops.square(x - batch_mean) * weight, axis=axes) / safe
                mean = ops.where(some, batch_mean, moving_mean)
                variance = ops.where(some, batch_variance, moving_variance)
                self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
                self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
            scale = ops.rsqrt(variance + self.epsilon) * ops.convert_to_tensor(self.gamma)
            return x * scale + (ops.convert_to_tensor(self.beta) - mean * scale)  # two passes over x

        def member_weights(self, i: int) -> list[np.ndarray]:
            c = self.gamma.shape[0] // self.members
            return [np.asarray(v)[i * c:(i + 1) * c]
                    for v in (self.gamma, self.beta, self.moving_mean, self.moving_variance)]

        def set_members(self, weights: list[list[np.ndarray]]) -> None:
            for k, variable in enumerate((self.gamma, self.beta, self.moving_mean, self.moving_variance)):
                variable.assign(np.concatenate([w[k] for w in weights]))

    _LAYERS = {"Tile": Tile, "PackedConv2D": PackedConv2D, "PackedDepthwise": PackedDepthwise,
               "PackedDense": PackedDense, "MaskedBatchNorm": MaskedBatchNorm}
    return _LAYERS


_LAYERS: dict[str, Any] | None = None


# --------------------------------------------------------------------------- pack and unpack


@dataclass
class Packed:
    """The packed keras.Model (inputs ``pixels`` (B, S, S, C) and ``mask`` (B, M); output
    (B, M, 4)) and, for each layer of build_model's model (same order), its packed layer (None
    for a layer without weights)."""

    model: Any
    members: int
    point: GridPoint
    config: TrainConfig
    layers: list[Any]


def pack(point: GridPoint, *, config: TrainConfig, seeds: list[int], grouped: str | None = None) -> Packed:
    """M = len(seeds) members of ``point``, member m starting from build_model's weights under
    seed ``seeds[m]``."""
    import keras

    config = config.at(point)
    standalone = []
    for seed in seeds:
        set_seed(seed)
        standalone.append(build_model(point, config=config))
    packed = _packed_graph(standalone[0], members=len(seeds), grouped=grouped or GROUPED_CONV.get(
        keras.backend.backend(), "split"), config=config, point=point)
    for twin, *layers in zip(packed.layers, *(m.layers for m in standalone), strict=True):
        if twin is not None:
            twin.set_members([[np.asarray(w) for w in layer.get_weights()] for layer in layers])
    return packed


def _packed_graph(template: Any, *, members: int, grouped: str, config: TrainConfig, point: GridPoint) -> Packed:
    """The packed twin of ``template`` (a build_model model), walking its layers in order."""
    import keras
    from keras import layers

    kinds = _layers()
    pixels = keras.Input(template.inputs[0].shape[1:], name="pixels")
    mask = keras.Input((members,), name="mask")
    # standalone tensor -> (packed tensor, whether it holds M members' channels)
    tensors: dict[int, tuple[Any, bool]] = {id(template.inputs[0]): (pixels, False)}
    by_index: list[Any] = []

    def packed_input(t: Any) -> Any:
        value, is_packed = tensors[id(t)]
        return value if is_packed else kinds["Tile"](members)(value)

    for layer in template.layers:
        node = layer._inbound_nodes[0]
        inputs, (output,) = list(node.input_tensors), list(node.output_tensors)
        if isinstance(layer, keras.layers.InputLayer):
            by_index.append(None)
            continue
        name = layer.name
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            cfg = layer.get_config()
            new = kinds["PackedDepthwise"].from_config({**cfg, "name": name, "depthwise_initializer": "zeros"})
            new.members = members
            result, is_packed = new(packed_input(inputs[0])), True
        elif isinstance(layer, keras.layers.Conv2D):
            if layer.groups != 1 or layer.dilation_rate != (1, 1):
                raise TrialFailed(f"layer {name}: packing knows no grouped or dilated convolution")
            value, is_packed = tensors[id(inputs[0])]
            new = kinds["PackedConv2D"](members, layer.filters, layer.kernel_size, strides=layer.strides,
                                        padding=layer.padding, use_bias=layer.use_bias,
                                        activation=layer.activation, shared_input=not is_packed,
                                        grouped=grouped, name=name)
            result, is_packed = new(value), True
        elif isinstance(layer, keras.layers.BatchNormalization):
            new = kinds["MaskedBatchNorm"](members, momentum=layer.momentum, epsilon=layer.epsilon, name=name)
            result, is_packed = new(packed_input(inputs[0]), mask), True
        elif isinstance(layer, keras.layers.Dense):
            new = kinds["PackedDense"](members, layer.units, activation=layer.activation, name=name)
            result, is_packed = new(packed_input(inputs[0])), True
        elif isinstance(layer, keras.layers.Add):
            new = layers.Add(name=name)
            if all(not tensors[id(t)][1] for t in inputs):
                result, is_packed = new([tensors[id(t)][0] for t in inputs]), False
            else:
                result, is_packed = new([packed_input(t) for t in inputs]), True
        elif isinstance(layer, (keras.layers.Rescaling, keras.layers.ReLU, keras.layers.Activation,
                                keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D,
                                keras.layers.Dropout)):
            new = layer.__class__.from_config({**layer.get_config(), "name": name})  # per channel/element
            value, is_packed = tensors[id(inputs[0])]
            result = new(value)
        else:
            raise TrialFailed(f"layer {name} ({type(layer).__name__}): the packed trainer does not know it")
        tensors[id(output)] = (result, is_packed)
        by_index.append(new if layer.weights else None)
    out, is_packed = tensors[id(template.outputs[0])]
    outputs = layers.Reshape((members, N_CLASSES), name="members")(out)
    model = keras.Model({"pixels": pixels, "mask": mask}, outputs, name=f"grid_{point.grid_id}_x{members}")
    return Packed(model=model, members=members, point=point, config=config, layers=by_index)


def unpack(packed: Packed, i: int) -> Any:
    """Member i as a standalone keras.Model: build_model(point)'s architecture (layer names,
    shapes, sizes) with member i's weights, moving statistics included."""
    model = build_model(packed.point, config=packed.config)
    for layer, twin in zip(model.layers, packed.layers, strict=True):
        if layer.weights:
            layer.set_weights(twin.member_weights(i))
    return model


def packed_predict(packed: Packed, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """(N, M, 4) probabilities of every member (inference: moving statistics, no dropout)."""
    import keras

    if not len(images):
        return np.zeros((0, packed.members, N_CLASSES), np.float32)

    class Inputs(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()

        def __len__(self) -> int:
            return math.ceil(len(images) / batch_size)

        def __getitem__(self, index: int) -> Any:
            x = images[index * batch_size:(index + 1) * batch_size].astype(np.float32)
            return ({"pixels": x, "mask": np.ones((len(x), packed.members), np.float32)},)

    return np.asarray(packed.model.predict(Inputs(), verbose=0), dtype=np.float32)


# --------------------------------------------------------------------------- the loss and metrics


def packed_loss(members: int, *, smoothing: float) -> Any:
    """y_true (B, 1 + M): the label, then each member's mask. Sum over members of the member's
    mean (label-smoothed) cross-entropy over its own images of the batch."""
    import keras
    from keras import ops

    class PackedLoss(keras.losses.Loss):  # a Loss, not a function: Keras would reshape y_true to y_pred's rank
        def __init__(self) -> None:
            super().__init__(name="packed_loss", reduction="sum")

        def call(self, y_true: Any, y_pred: Any) -> Any:
            labels = ops.cast(y_true[:, 0], "int32")
            mask = y_true[:, 1:]
            one_hot = ops.repeat(ops.expand_dims(ops.one_hot(labels, N_CLASSES), 1), members, axis=1)
            per_image = keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)  # (B, M)
            return ops.sum(ops.sum(per_image * mask, axis=0) / ops.maximum(ops.sum(mask, axis=0), 1.0))

    return PackedLoss()


def _member_metric(i: int, kind: str, *, smoothing: float) -> Any:
    """Member i's training loss or accuracy over its own images of the epoch (logged as
    ``m{i}_loss``, ``m{i}_accuracy``)."""
    import keras
    from keras import ops

    class MemberMetric(keras.metrics.Metric):
        def __init__(self) -> None:
            super().__init__(name=f"m{i}_{kind}")
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            labels = ops.cast(y_true[:, 0], "int32")
            mask = y_true[:, 1 + i]
            pred = y_pred[:, i]
            if kind == "accuracy":
                value = ops.cast(ops.equal(ops.argmax(pred, axis=-1), labels), "float32")
            else:
                value = keras.losses.categorical_crossentropy(ops.one_hot(labels, N_CLASSES), pred,
                                                              label_smoothing=smoothing)
            self.total.assign(self.total + ops.sum(value * mask))
            self.count.assign(self.count + ops.sum(mask))

        def result(self) -> Any:
            return self.total / ops.maximum(self.count, 1.0)

    return MemberMetric()


# --------------------------------------------------------------------------- training


def _batches(split: Any, *, targets: np.ndarray, batch_size: int, augment: tuple[str, ...], seed: int) -> Any:
    """training_dataset's batches (the project's one pipeline) as ({pixels, mask}, targets)."""
    inner = training_dataset(split, batch_size=batch_size, augment=augment, seed=seed, targets=targets)
    import keras

    class PackedBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()

        def __len__(self) -> int:
            return len(inner)

        def __getitem__(self, index: int) -> Any:
            return self.batch(inner.epoch, index)

        def batch(self, epoch: int, index: int) -> Any:
            x, t = inner.batch(epoch, index)
            return {"pixels": x, "mask": t[:, 1:]}, t

        def on_epoch_end(self) -> None:
            inner.on_epoch_end()

    return PackedBatches()


def train_packed(
    point: GridPoint, members: list[Member], *, config: TrainConfig, data: DataSplits,
    model_dir: Path | None = None, verbose: int = 2, grouped: str | None = None,
) -> list[MemberResult]:
    """Train ``members`` of ``point`` as one packed model; per member, its unpacked model and
    the TrialResult a standalone train_and_evaluate writes for it (row, curve, predictions,
    saved files).

    ``data``: the whole split (under cross-validation with its folds, not one fold's). Member m
    trains on data.train minus its fold (all of it when its fold is None) and validates every
    epoch on its fold (else on data.val). A member whose loss became NaN/inf raises
    TrialFailed for the group (the search can train that one alone)."""
    import keras

    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    config = config.at(point)
    if not members:
        return []
    if data.train.images.shape[1] != config.image_size:
        raise TrialFailed(f"grid point {point.grid_id} takes {config.image_size} px images but was given "
                          f"{data.train.images.shape[1]} px ones")
    if config.teacher is not None:
        raise TrialFailed("the packed trainer does not distil yet; train with a teacher unpacked")
    if point.prune:
        raise TrialFailed("the packed trainer does not prune (train the parent, then prune): train it unpacked")
    if any(m.fold is not None for m in members) and data.folds is None:
        raise TrialFailed("a packed member holds out a fold, but the data has no folds (validation = \"cv\")")
    started = time.perf_counter()
    n = len(members)
    measures = cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
    check_memory(point, config=config)

    # data: one stream over all of TRAIN; each member's mask says which images train it
    train = data.train
    masks = np.ones((len(train), n), np.float32)
    for i, member in enumerate(members):
        if member.fold is not None:
            masks[:, i] = data.folds != member.fold
    share = float(masks.mean()) if len(train) else 1.0
    batch_size = max(1, round(config.batch_size / max(share, 1e-9)))  # each member: about the preset's batch
    targets = np.concatenate([train.labels[:, None].astype(np.float32), masks], axis=1)
    batches = _batches(train, targets=targets, batch_size=batch_size, augment=config.augment,
                       seed=config.seed + 1000 * members[0].repeat)
    steps_per_epoch = len(batches)
    train_ds = fit_input(batches, epochs=config.epochs)
    if data.folds is not None:  # validation: member m's fold of TRAIN (None: data.val, empty under CV)
        val_images = train.images
        val_index = [np.flatnonzero(data.folds == m.fold) if m.fold is not None else np.zeros(0, int)
                     for m in members]
        val_labels = train.labels
    else:
        val_images, val_labels = data.val.images, data.val.labels
        val_index = [np.arange(len(data.val)) for _ in members]

    # model
    packed = pack(point, config=config, seeds=[m.seed for m in members], grouped=grouped)
    set_seed(members[0].seed)  # dropout of the packed model
    smoothing = config.label_smoothing
    packed.model.compile(
        optimizer=make_optimizer(config, steps_per_epoch=steps_per_epoch),
        loss=packed_loss(n, smoothing=smoothing),
        metrics=[_member_metric(i, kind, smoothing=smoothing) for i in range(n) for kind in ("loss", "accuracy")],
    )

    # fit, with every member's validation after each epoch
    curves = [_Curve() for _ in members]
    history: list[dict[str, list[float]]] = [{k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
                                             for _ in members]
    epoch_start = [0.0]

    def on_epoch_begin(epoch: int, logs: Any = None) -> None:
        epoch_start[0] = time.perf_counter()

    def on_epoch_end(epoch: int, logs: Any = None) -> None:
        probabilities = packed_predict(packed, val_images, batch_size=max(config.batch_size, 64))
        seconds = time.perf_counter() - epoch_start[0]  # the validation pass included, as in fit's
        for i, index in enumerate(val_index):
            p = probabilities[index, i]
            val_loss, val_accuracy = _loss_and_accuracy(p, val_labels[index], smoothing=smoothing)
            for key, value in (("loss", logs[f"m{i}_loss"]), ("accuracy", logs[f"m{i}_accuracy"]),
                               ("val_loss", val_loss), ("val_accuracy", val_accuracy)):
                history[i][key].append(float(value))
            curves[i].seconds.append(round(seconds / n, 3))  # each member's share of the packed epoch
            curves[i].val_accuracy.append(val_accuracy)

    packed.model.fit(
        train_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                                                  on_train_batch_end=lambda batch, logs: _batch_end(batch))],
    )

    # per member: the unpacked model, measured and recorded as a standalone training records it
    results = []
    for i, member in enumerate(members):
        last = {k: v[-1] for k, v in history[i].items()}
        if not all(math.isfinite(last[k]) for k in ("loss",)) or (len(val_index[i]) and not math.isfinite(last["val_loss"])):
            raise TrialFailed(f"grid point {point.grid_id}, packed member {i} (fold {member.fold}, seed "
                              f"{member.seed}): the loss became NaN/inf; try a lower learning_rate")
        model = unpack(packed, i)
        compile_model(model, config, steps_per_epoch=steps_per_epoch)  # as train_and_evaluate, before the .h5 size
        size_mb = h5_size_mb(model)
        member_data = data.for_fold(member.fold) if member.fold is not None else data
        common = common_columns(point, repeat=member.repeat, fold=member.fold,
                                n_folds=data.n_folds, seed=member.seed, measures=measures)
        result = finish_trial(model, point, config=config, data=member_data, last=last, epochs=config.epochs,
                              curve=curves[i], size_mb=size_mb, common={**common, "pack": n}, started=started,
                              model_dir=model_dir, repeat=member.repeat)
        results.append(MemberResult(member=member, model=model, result=result))
    wall = time.perf_counter() - started
    for member_result in results:  # each member's share: the rows' seconds add up to the pack's
        member_result.result.row["wall_seconds"] = round(wall / n, 2)
    return results


def _loss_and_accuracy(probabilities: np.ndarray, labels: np.ndarray, *, smoothing: float) -> tuple[float, float]:
    """Mean (label-smoothed) cross-entropy and accuracy, as Keras' validation pass computes them."""
    if not len(labels):
        return math.nan, math.nan
    target = np.eye(N_CLASSES, dtype=np.float64)[labels] * (1 - smoothing) + smoothing / N_CLASSES
    p = np.clip(probabilities / probabilities.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
    return float(-(target * np.log(p)).sum(axis=1).mean()), float((p.argmax(axis=1) == labels).mean())
