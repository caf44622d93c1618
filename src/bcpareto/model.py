"""GridPoint -> keras.Model, and the size and cost measures of a model.

The conv family is the earlier version's architecture, kept so its logged sizes reproduce:

    [Rescaling 1/255]                         (preset: rescale; the earlier version had none)
    Conv2D(f0, k0, relu) -> MaxPool 2x2
    per further filter: Conv2D(f, k, relu) -> MaxPool 2x2 -> BatchNorm -> Dropout(conv_dropout)
    GlobalAveragePooling2D
    per dense layer: Dense(n, relu) -> BatchNorm -> Dropout(dense_dropout)
    Dense(4, softmax)

The sheet's optional columns (gridspec.py) change the part before the pooling:

    stem s:            Conv2D(s, 3, stride 2, no bias) -> BatchNorm -> ReLU, before the blocks
    stride 1 (conv):   no max-pool after that conv block
    separable:         DepthwiseConv2D(k, stride) -> BN -> ReLU -> Conv2D(f, 1) -> BN -> ReLU
    inverted_residual: [Conv2D(t*c, 1) -> BN -> ReLU6] (t > 1) -> DepthwiseConv2D(k, stride)
                       -> BN -> ReLU6 -> Conv2D(f, 1) -> BN, + the input when the shape is kept
    width w:           every filter count (and the stem) times w, rounded, at least 1
    prune p:           the model delivered after pruning (pruned_point): every width times p;
                       its parent (point.parent) is what trains first (prune.py copies the weights)

Convolutions followed by BatchNorm have no bias (it would duplicate BatchNorm's beta).
Cost measures (parameters, multiply-adds, feature-map sizes) are computed analytically, so
`bcpareto grid` needs no TensorFlow; tests check them against Keras.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .errors import TrialFailed
from .gridspec import GridPoint

if TYPE_CHECKING:
    import keras

N_CLASSES = 4
MIB = 2**20


@dataclass(frozen=True)
class Cost:
    n_params: int
    macs: int  # multiply-adds per image (conv and dense layers)
    feature_sizes: tuple[int, ...]  # side of the feature map after each conv block

    @property
    def float32_mb(self) -> float:
        return self.n_params * 4 / MIB


def cost(point: GridPoint, *, image_size: int, channels: int, padding: str) -> Cost:
    """Parameters and multiply-adds per image; raises TrialFailed if a feature map collapses.

    Parameters count everything Keras counts, BatchNorm's moving statistics included (4 per
    channel). Multiply-adds count every convolution (depthwise and 1x1 included) and dense layer;
    pooling, BatchNorm, activations and the residual additions are not multiply-adds. A pruned
    point costs what its pruned model does (pruned_point).
    """
    if point.prune is not None:
        cost(point.parent, image_size=image_size, channels=channels, padding=padding)  # a collapse, named
        child = pruned_point(point, image_size=image_size, channels=channels, padding=padding)
        return cost(child, image_size=image_size, channels=channels, padding=padding)
    side, c_in, n_params, macs, sides = image_size, channels, 0, 0, []
    if point.stem:
        c = point.stem_channels
        out = _conv_side(side, 3, 2, padding)
        if out < 1:
            _collapse(point, "the stem", side, 3, image_size=image_size, padding=padding)
        n_params += 9 * c_in * c + 4 * c
        macs += out * out * 9 * c_in * c
        side, c_in = out, c
    blocks = zip(point.channels, point.kernel_sizes, point.block_strides)
    for block, (f, k, stride) in enumerate(blocks):
        where = f"{point.block} block {block + 1}"
        if point.block == "conv":  # the earlier block: conv (stride 1), then a 2x2 max-pool
            conv_side = _conv_side(side, k, 1, padding)
            out = conv_side // 2 if stride == 2 else conv_side
            if conv_side < 1 or out < 1:
                _collapse(point, where, side, k, image_size=image_size, padding=padding)
            n_params += (k * k * c_in + 1) * f + (4 * f if block > 0 else 0)
            macs += conv_side * conv_side * k * k * c_in * f
        else:
            hidden = c_in
            if point.block == "inverted_residual" and point.expansion > 1:
                hidden = c_in * point.expansion
                n_params += c_in * hidden + 4 * hidden
                macs += side * side * c_in * hidden
            out = _conv_side(side, k, stride, padding)
            if out < 1:
                _collapse(point, where, side, k, image_size=image_size, padding=padding)
            n_params += k * k * hidden + 4 * hidden + hidden * f + 4 * f
            macs += out * out * (k * k * hidden + hidden * f)
        side, c_in = out, f
        sides.append(side)
    for n in point.neurons:
        n_params += (c_in + 1) * n + 4 * n
        macs += c_in * n
        c_in = n
    n_params += (c_in + 1) * N_CLASSES
    macs += c_in * N_CLASSES
    return Cost(n_params=n_params, macs=macs, feature_sizes=tuple(sides))


def pruned_point(point: GridPoint, *, image_size: int, channels: int, padding: str) -> GridPoint:
    """The plain GridPoint of the model a pruned point delivers (the point itself if unpruned).

    The stem, every block's output and every dense layer keep round(prune x width) channels (at
    least 1), from the parent's widths; an inverted-residual block's hidden channels follow from
    its input (input x expansion), as in any point. Where the parent's block adds its input (a
    skip connection), the pruned block keeps its input's channels, the same ones (prune.py); where
    it does not, it keeps one more or one fewer when the rounding would give its input's count, so
    that pruning never adds a skip connection the parent did not have.
    """
    if point.prune is None:
        return point
    parent = point.parent

    def keep(n: int) -> int:
        return max(1, int(n * point.prune + 0.5))

    side, c_parent, c_kept = image_size, channels, channels  # the image's channels are never pruned
    stem = keep(parent.stem_channels) if parent.stem else 0
    if parent.stem:
        side, c_parent, c_kept = _conv_side(side, 3, 2, padding), parent.stem_channels, stem
    filters = []
    for block, (f, k, stride) in enumerate(zip(parent.channels, parent.kernel_sizes, parent.block_strides)):
        kept = keep(f)
        if parent.block == "conv":
            out = _conv_side(side, k, 1, padding) // (2 if stride == 2 else 1)
        else:
            out = _conv_side(side, k, stride, padding)
        if parent.block == "inverted_residual" and out == side:
            if f == c_parent:
                kept = c_kept  # the parent adds the block's input: the same channels
            elif kept == c_kept:
                kept = kept + 1 if kept < f else kept - 1
                if kept < 1:
                    raise TrialFailed(
                        f"grid point {point.grid_id} ({point.describe()}): pruned, inverted_residual "
                        f"block {block + 1} would keep as many channels as its input and add it; "
                        "expected a fraction that keeps more channels, or more filters in that block"
                    )
        filters.append(kept)
        side, c_parent, c_kept = out, f, kept
    return replace(parent, filters=tuple(filters), stem=stem, width=1.0,
                   neurons=tuple(keep(n) for n in parent.neurons))


def _conv_side(side: int, kernel: int, stride: int, padding: str) -> int:
    """Output side of a convolution, as Keras computes it."""
    if padding == "valid":
        return (side - kernel) // stride + 1 if side >= kernel else 0
    return -(-side // stride)


def _collapse(point: GridPoint, where: str, side: int, kernel: int, *, image_size: int, padding: str) -> None:
    need = min_image_size(point, padding=padding)
    raise TrialFailed(
        f"grid point {point.grid_id} ({point.describe()}): the feature map collapses in "
        f"{where} at {image_size} px ({side}x{side} in, kernel {kernel}, padding '{padding}'); "
        f"it needs an image size of at least {need} px"
    )


def min_image_size(point: GridPoint, *, padding: str) -> int:
    """Smallest input side at which no feature map collapses."""
    side = 1
    for k, stride in reversed(list(zip(point.kernel_sizes, point.block_strides))):
        if point.block == "conv":
            side = stride * side  # before the 2x2 pool, if any
            if padding == "valid":
                side += k - 1
        elif padding == "valid":
            side = (side - 1) * stride + k  # smallest input giving `side` out of a strided conv
        else:
            side = (side - 1) * stride + 1
    if point.stem:
        side = (side - 1) * 2 + (3 if padding == "valid" else 1)
    return side


def build_model(point: GridPoint, *, config: TrainConfig) -> keras.Model:
    """The Keras model for one grid point, compiled with the preset's loss (not the optimiser).

    A pruned point gives the architecture of its pruned model (pruned_point), untrained; its
    parent's is ``build_model(point.parent, ...)``."""
    import keras
    from keras import layers

    config = config.at(point)  # the sheet's image_size column, where the row gives one
    point = pruned_point(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
    cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
    inputs = keras.Input((config.image_size, config.image_size, config.channels), name="pixels")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs) if config.rescale else inputs
    if point.stem:
        x = layers.Conv2D(point.stem_channels, 3, strides=2, padding=config.padding, use_bias=False,
                          name="stem_conv")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, name="stem_bn")(x)
        x = layers.ReLU(name="stem_relu")(x)
    blocks = zip(point.channels, point.kernel_sizes, point.block_strides)
    for block, (f, k, stride) in enumerate(blocks):
        if point.block == "conv":  # the earlier layers, with Keras' own names (the .h5 sizes)
            x = layers.Conv2D(f, k, activation="relu", padding=config.padding)(x)
            if stride == 2:
                x = layers.MaxPooling2D(2)(x)
            if block > 0:
                x = layers.BatchNormalization(momentum=config.bn_momentum)(x)
                x = layers.Dropout(config.conv_dropout)(x)
        else:
            x = _mobile_block(x, point, f=f, k=k, stride=stride, name=f"block{block + 1}", config=config)
    x = layers.GlobalAveragePooling2D()(x)
    for n in point.neurons:
        x = layers.Dense(n, activation="relu")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum)(x)
        x = layers.Dropout(config.dense_dropout)(x)
    outputs = layers.Dense(N_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"grid_{point.grid_id}")


def _mobile_block(x: Any, point: GridPoint, *, f: int, k: int, stride: int, name: str,
                  config: TrainConfig) -> Any:
    """A separable (MobileNet) or inverted-residual (MobileNetV2) block."""
    from keras import layers

    def bn(y: Any, part: str) -> Any:
        return layers.BatchNormalization(momentum=config.bn_momentum, name=f"{name}_{part}_bn")(y)

    inverted = point.block == "inverted_residual"
    relu = 6.0 if inverted else None  # ReLU6 in MobileNetV2
    block_input, c_in = x, x.shape[-1]
    if inverted and point.expansion > 1:
        x = layers.Conv2D(c_in * point.expansion, 1, use_bias=False, name=f"{name}_expand")(x)
        x = layers.ReLU(relu, name=f"{name}_expand_relu")(bn(x, "expand"))
    x = layers.DepthwiseConv2D(k, strides=stride, padding=config.padding, use_bias=False,
                               name=f"{name}_dw")(x)
    x = layers.ReLU(relu, name=f"{name}_dw_relu")(bn(x, "dw"))
    x = bn(layers.Conv2D(f, 1, use_bias=False, name=f"{name}_pw")(x), "pw")
    if not inverted:
        return layers.ReLU(name=f"{name}_pw_relu")(x)
    if tuple(block_input.shape[1:]) == tuple(x.shape[1:]):
        x = layers.Add(name=f"{name}_add")([block_input, x])
    return x


def h5_size_mb(model: keras.Model) -> float:
    """Size in MiB of the model saved as Keras .h5, the earlier version's `model_size(MB)`.

    One correction keeps the column comparable with the earlier logs: the HDF5 library the
    earlier version used spent twice the length of the `model_config` attribute on it (the
    attribute's first allocation is left behind in the file); HDF5 1.14 does so only for
    configs under about 32 KB. When the file holds the config once, its length is added back.
    With it, all 24 earlier grid points reproduce within 0.1% (tests/test_model.py).
    """
    import logging

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.h5")
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)  # silence the "HDF5 is legacy" warning
        try:
            model.save(path)
        finally:
            absl_logger.setLevel(level)
        size = os.path.getsize(path)
        with h5py.File(path, "r") as handle:
            root_attrs = dict(handle.attrs)
        # Probe how this HDF5 library stores the same root attributes on their own.
        probe = os.path.join(tmp, "probe.h5")
        with h5py.File(probe, "w") as handle:
            for key, value in root_attrs.items():
                handle.attrs[key] = value
        config_bytes = len(str(root_attrs.get("model_config", "")).encode())
        if os.path.getsize(probe) < 2 * config_bytes:  # stored once: add the earlier second copy
            size += config_bytes
        return size / MIB


def train_memory_bytes(point: GridPoint, *, image_size: int, channels: int, padding: str,
                       batch_size: int) -> int:
    """A rough lower bound of the memory one training step of this point needs, in bytes.

    float32 weights, their gradients and Adam's two moments (4 copies of every parameter), plus
    one batch of input and of every conv block's activations, kept for the backward pass (about
    4 tensors per block: conv output, pooled, normalised, dropped out). A pruned point: its
    parent's, which trains first and is the wider.
    """
    point = point.parent
    measures = cost(point, image_size=image_size, channels=channels, padding=padding)
    side, per_image = image_size, image_size * image_size * channels
    for f, k in zip(point.filters, point.kernel_sizes):
        conv_side = side - k + 1 if padding == "valid" else side
        per_image += 4 * conv_side * conv_side * f
        side = conv_side // 2
    per_image += 4 * sum(point.neurons)
    return 4 * (4 * measures.n_params + batch_size * per_image)


def memory_limit_bytes() -> int:
    """This machine's physical memory (the most a training step could ever use)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_memory(point: GridPoint, *, config: TrainConfig) -> None:
    """Raise TrialFailed, with the reason, when a point cannot fit this machine's memory."""
    config = config.at(point)
    need = train_memory_bytes(point, image_size=config.image_size, channels=config.channels,
                              padding=config.padding, batch_size=config.batch_size)
    have = memory_limit_bytes()
    if need > have:
        raise TrialFailed(
            f"grid point {point.grid_id} ({point.describe()}): training it needs at least "
            f"{need / 2**30:,.1f} GiB (weights, gradients, optimizer state and one batch of "
            f"activations at {config.image_size} px, batch {config.batch_size}), more than this "
            f"machine's {have / 2**30:,.1f} GiB; use fewer filters or neurons, a smaller "
            "--image-size or --batch-size"
        )
