"""The networks of fitlens: an MLP (depth 0 = logistic / softmax regression), a 1-D and a 2-D CNN.

Every hidden layer is a `Block` with the same four named parts, so diagnostics hook any
architecture by the same names:

    hidden.<i>.linear  the affine map z = W a + b (Linear, DropConnectLinear, or a convolution)
    hidden.<i>.norm    BatchNorm1d / BatchNorm2d when model.batch_norm, else Identity
    hidden.<i>.act     the activation; its input is the pre-activation z (after batch norm),
                       its output the activation a
    hidden.<i>.drop    InvertedDropout(keep_prob of that layer)
    out                a plain Linear to the class logits

plus `input_drop` (inverted dropout on the inputs, model.input_keep_prob) and `flatten`.
`build_model` picks the network from `ModelConfig.arch`; `check_model_config` fails fast on a
config that cannot be built, with a `ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

from torch import Tensor, nn

from lightning_modules.config import ConfigError, ModelConfig
from lightning_modules.init import INIT_SCHEMES, initialize
from lightning_modules.layers import (
    ACTIVATIONS,
    ChannelMaxout,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    InvertedDropout,
    check_keep_prob,
    make_activation,
)

ARCHS: tuple[str, ...] = ("mlp", "cnn1d", "cnn2d")
MODEL_ACTIVATIONS: tuple[str, ...] = (*ACTIVATIONS, "maxout")

# spatial dims -> (convolution, its DropConnect twin, batch norm over its channels)
_CONV_LAYERS: dict[int, tuple[type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    1: (nn.Conv1d, DropConnectConv1d, nn.BatchNorm1d),
    2: (nn.Conv2d, DropConnectConv2d, nn.BatchNorm2d),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_prob(value: float, field_name: str) -> float:
    try:
        return check_keep_prob(value, field_name)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_common(cfg: ModelConfig) -> None:
    """The fields every architecture uses: activation, init, input and DropConnect keep_probs."""
    if cfg.activation not in MODEL_ACTIVATIONS:
        raise ConfigError(f"model.activation = {cfg.activation!r} is unknown; allowed: {', '.join(MODEL_ACTIVATIONS)}")
    if cfg.activation == "maxout" and (not _is_int(cfg.maxout_pieces) or cfg.maxout_pieces < 2):
        raise ConfigError(f"model.maxout_pieces = {cfg.maxout_pieces!r} is not allowed; maxout needs an integer >= 2")
    if cfg.activation == "leaky_relu" and (not _is_number(cfg.leaky_slope) or not 0.0 <= cfg.leaky_slope < 1.0):
        raise ConfigError(f"model.leaky_slope = {cfg.leaky_slope!r} is not allowed; it must lie in [0, 1)")
    if cfg.init not in INIT_SCHEMES:
        raise ConfigError(f"model.init = {cfg.init!r} is unknown; allowed: {', '.join(INIT_SCHEMES)}")
    if cfg.init == "normal" and (not _is_number(cfg.init_std) or cfg.init_std <= 0.0):
        raise ConfigError(f"model.init_std = {cfg.init_std!r} is not allowed; init normal needs a std > 0")
    if cfg.init == "uniform" and (not _is_number(cfg.init_bound) or cfg.init_bound <= 0.0):
        raise ConfigError(f"model.init_bound = {cfg.init_bound!r} is not allowed; init uniform needs a bound > 0")
    if cfg.init == "constant" and not _is_number(cfg.init_value):
        raise ConfigError(f"model.init_value = {cfg.init_value!r} is not allowed; it must be a number")
    _check_prob(cfg.input_keep_prob, "model.input_keep_prob")
    _check_prob(cfg.dropconnect_keep_prob, "model.dropconnect_keep_prob")


def _keep_probs(cfg: ModelConfig, n_layers: int, count_phrase: str, what: str) -> list[float]:
    """One keep_prob per layer: a single float is broadcast, a list must have `n_layers` entries."""
    if isinstance(cfg.keep_prob, list):
        if len(cfg.keep_prob) != n_layers:
            raise ConfigError(
                f"model.keep_prob has {len(cfg.keep_prob)} entries but {count_phrase}; "
                f"give one keep_prob per {what} or a single float"
            )
        return [_check_prob(p, f"model.keep_prob[{i}]") for i, p in enumerate(cfg.keep_prob)]
    return [_check_prob(cfg.keep_prob, "model.keep_prob")] * n_layers


def _mlp_layers(cfg: ModelConfig) -> tuple[list[int], list[float]]:
    """(widths, keep_probs) of the MLP's hidden layers, validated."""
    if not _is_int(cfg.depth) or cfg.depth < 0:
        raise ConfigError(
            f"model.depth = {cfg.depth!r} is not allowed; it must be an integer >= 0 "
            "(0 = logistic / softmax regression)"
        )
    if isinstance(cfg.width, list):
        if len(cfg.width) != cfg.depth:
            raise ConfigError(
                f"model.width has {len(cfg.width)} entries but model.depth = {cfg.depth}; "
                "give one width per hidden layer or a single int"
            )
        widths = list(cfg.width)
    else:
        widths = [cfg.width] * cfg.depth
    # A single int is checked even at depth 0, where it is unused, so a typo never hides.
    for width in cfg.width if isinstance(cfg.width, list) else [cfg.width]:
        if not _is_int(width) or width < 1:
            raise ConfigError(
                f"model.width = {cfg.width!r} is not allowed; every hidden layer needs an integer width >= 1"
            )
    keep_probs = _keep_probs(cfg, cfg.depth, f"model.depth = {cfg.depth}", "hidden layer")
    return widths, keep_probs


def _conv_layers(cfg: ModelConfig) -> tuple[list[int], list[float]]:
    """(channels, keep_probs) of the CNN's conv blocks, validated.

    CNNs use model.channels (one conv block each), kernel_size and stride; model.depth and
    model.width are MLP fields and are ignored. model.keep_prob is one float for every conv block
    or a list with one entry per entry of model.channels.
    """
    channels = cfg.channels
    if not isinstance(channels, list) or not channels:
        raise ConfigError(
            f"model.channels = {channels!r} is not allowed; a CNN needs a non-empty list of channel "
            "counts, one conv block each (e.g. [32, 32, 32])"
        )
    if any(not _is_int(c) or c < 1 for c in channels):
        raise ConfigError(f"model.channels = {channels!r} is not allowed; every entry must be an integer >= 1")
    if not _is_int(cfg.kernel_size) or cfg.kernel_size < 1:
        raise ConfigError(f"model.kernel_size = {cfg.kernel_size!r} is not allowed; it must be an integer >= 1")
    if not _is_int(cfg.stride) or cfg.stride < 1:
        raise ConfigError(f"model.stride = {cfg.stride!r} is not allowed; it must be an integer >= 1")
    count_phrase = f"model.channels has {len(channels)} (one conv block each)"
    keep_probs = _keep_probs(cfg, len(channels), count_phrase, "conv block")
    return list(channels), keep_probs


def _check_input_shape(arch: str, input_shape: tuple[int, ...]) -> None:
    if not input_shape or any(not _is_int(n) or n < 1 for n in input_shape):
        raise ValueError(f"input_shape = {input_shape!r} is not allowed; it needs one or more sizes >= 1")
    if arch == "cnn1d" and len(input_shape) not in (1, 2):
        raise ConfigError(
            f"model.arch = 'cnn1d' needs a 1-D input (L,) or (C, L), but the data gives shape {input_shape}; "
            "use arch cnn2d or mlp"
        )
    if arch == "cnn2d" and len(input_shape) not in (2, 3):
        raise ConfigError(
            f"model.arch = 'cnn2d' needs an image input (H, W) or (C, H, W), but the data gives shape "
            f"{input_shape}; use arch cnn1d or mlp, or an image layout of the data (data.layout: image)"
        )


def check_model_config(cfg: ModelConfig, input_shape: tuple[int, ...] | None = None) -> None:
    """Raise `ConfigError` if `cfg` cannot be built (for `input_shape`, when given); else return None.

    Checks only the fields the chosen architecture uses, so a sweep over archs is not tripped by,
    say, a width list that only the MLP reads.
    """
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch = {cfg.arch!r} is unknown; allowed: {', '.join(ARCHS)}")
    _check_common(cfg)
    if cfg.arch == "mlp":
        _mlp_layers(cfg)
    else:
        _conv_layers(cfg)
    if input_shape is not None:
        _check_input_shape(cfg.arch, tuple(input_shape))


class Block(nn.Module):
    """One hidden layer of the course: z = linear(a); z = norm(z); a = act(z); a = drop(a).

    `linear` is the affine map (a Linear, DropConnectLinear or convolution), `norm` batch norm or
    Identity, `act` the activation (ChannelMaxout for maxout), `drop` inverted dropout.
    """

    def __init__(self, linear: nn.Module, norm: nn.Module, act: nn.Module, drop: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.norm = norm
        self.act = act
        self.drop = drop

    def forward(self, a: Tensor) -> Tensor:
        z = self.norm(self.linear(a))  # batch norm sits between z and g(z), as in the course
        return self.drop(self.act(z))


def _make_block(cfg: ModelConfig, n_in: int, n_units: int, keep_prob: float, spatial_dims: int) -> Block:
    """A hidden Block: dense when spatial_dims == 0, else a convolution over 1 or 2 spatial dims."""
    maxout = cfg.activation == "maxout"
    n_out = n_units * cfg.maxout_pieces if maxout else n_units  # maxout: `pieces` linear units per unit
    dropconnect = cfg.dropconnect_keep_prob < 1.0
    if spatial_dims == 0:
        if dropconnect:
            linear: nn.Module = DropConnectLinear(n_in, n_out, keep_prob=cfg.dropconnect_keep_prob)
        else:
            linear = nn.Linear(n_in, n_out)
        norm_cls: type[nn.Module] = nn.BatchNorm1d
    else:
        conv_cls, dropconnect_conv_cls, norm_cls = _CONV_LAYERS[spatial_dims]
        # padding k // 2 keeps the length at stride 1 (odd k) and gives ceil(n / stride) otherwise.
        geometry = {"kernel_size": cfg.kernel_size, "stride": cfg.stride, "padding": cfg.kernel_size // 2}
        if dropconnect:
            linear = dropconnect_conv_cls(n_in, n_out, keep_prob=cfg.dropconnect_keep_prob, **geometry)
        else:
            linear = conv_cls(n_in, n_out, **geometry)
    norm = norm_cls(n_out) if cfg.batch_norm else nn.Identity()
    act = ChannelMaxout(cfg.maxout_pieces) if maxout else make_activation(cfg.activation, cfg.leaky_slope)
    return Block(linear, norm, act, InvertedDropout(keep_prob))


def _initialize(net: nn.Module, cfg: ModelConfig) -> None:
    initialize(net, cfg.init, std=cfg.init_std, value=cfg.init_value, bound=cfg.init_bound)


class MLP(nn.Module):
    """A fully connected network: flatten -> input dropout -> `depth` hidden Blocks -> `out`.

    depth 0 is logistic / softmax regression: a single Linear from the inputs to the classes.
    Hidden layers use DropConnectLinear when model.dropconnect_keep_prob < 1; `out` is always a
    plain Linear (no dropout, DropConnect or activation: it gives logits).
    """

    arch: ClassVar[str] = "mlp"

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        _check_common(cfg)
        widths, keep_probs = _mlp_layers(cfg)
        _check_input_shape(self.arch, input_shape)
        self.input_shape = tuple(input_shape)
        sizes = [math.prod(input_shape), *widths]  # n[0] = number of input features
        self.flatten = nn.Flatten()  # (B, *input_shape) -> (B, n[0])
        self.input_drop = InvertedDropout(cfg.input_keep_prob)
        self.hidden = nn.Sequential(
            *(
                _make_block(cfg, n_in, n_out, p, 0)
                for n_in, n_out, p in zip(sizes[:-1], sizes[1:], keep_probs, strict=True)
            )
        )
        self.out = nn.Linear(sizes[-1], n_classes)
        _initialize(self, cfg)

    def forward(self, x: Tensor) -> Tensor:
        a = self.input_drop(self.flatten(x))  # (B, n[0])
        return self.out(self.hidden(a))  # (B, n_classes)


class _ConvNet(nn.Module):
    """Conv Blocks (conv -> batch norm -> activation -> dropout), then flatten and a Linear `out`.

    One Block per entry of model.channels, each a convolution with model.kernel_size,
    model.stride and padding kernel_size // 2. No pooling and no hidden dense layers: the stride
    alone shrinks the maps, and model.depth / model.width (MLP fields) are ignored.
    model.keep_prob is one float for every conv block or a list with one entry per conv block.
    """

    spatial_dims: ClassVar[int]
    arch: ClassVar[str]

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        _check_common(cfg)
        channels, keep_probs = _conv_layers(cfg)
        _check_input_shape(self.arch, input_shape)
        self.input_shape = tuple(input_shape)
        # (L,) / (H, W) are single-channel signals; (C, L) / (C, H, W) carry their channels.
        has_channels = len(input_shape) == self.spatial_dims + 1
        in_channels = input_shape[0] if has_channels else 1
        spatial = list(input_shape[1:] if has_channels else input_shape)
        self.input_drop = InvertedDropout(cfg.input_keep_prob)
        sizes = [in_channels, *channels]
        self.hidden = nn.Sequential(
            *(
                _make_block(cfg, c_in, c_out, p, self.spatial_dims)
                for c_in, c_out, p in zip(sizes[:-1], sizes[1:], keep_probs, strict=True)
            )
        )
        padding = cfg.kernel_size // 2
        for _ in channels:
            spatial = [(n + 2 * padding - cfg.kernel_size) // cfg.stride + 1 for n in spatial]
        self.flatten = nn.Flatten()  # (B, C, *spatial) -> (B, C * prod(spatial))
        self.out = nn.Linear(channels[-1] * math.prod(spatial), n_classes)
        _initialize(self, cfg)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == self.spatial_dims + 1:
            x = x.unsqueeze(1)  # (B, *spatial) -> (B, 1, *spatial)
        a = self.hidden(self.input_drop(x))  # (B, C_last, *spatial_out)
        return self.out(self.flatten(a))  # (B, n_classes)


class CNN1d(_ConvNet):
    """A 1-D CNN for sequences such as MNIST-1D: input (B, L) or (B, C, L).

    The MNIST-1D paper's CNN (three conv layers of 25 channels, kernels 5, 3, 3, stride 2, then a
    linear layer) is approximated by channels [25, 25, 25], kernel_size 5, stride 2: one kernel size
    for every block, 40 -> 20 -> 10 -> 5 positions, then Linear(25 * 5, n_classes), the paper's 125
    inputs (configs/mnist1d_cnn.yaml, with augmentation: ~95% test accuracy).
    """

    spatial_dims: ClassVar[int] = 1
    arch: ClassVar[str] = "cnn1d"


class CNN2d(_ConvNet):
    """A 2-D CNN for images such as the 8x8 digits: input (B, H, W) or (B, C, H, W).

    With stride 1 the 8x8 map keeps its size through every block (out = Linear(C * 64, ...));
    with stride 2 it halves per block (8 -> 4 -> 2 -> 1).
    """

    spatial_dims: ClassVar[int] = 2
    arch: ClassVar[str] = "cnn2d"


_ARCH_CLASSES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn1d": CNN1d, "cnn2d": CNN2d}


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The network `cfg.arch` for inputs of `input_shape` (no batch dim), giving logits (B, n_classes).

    input_shape is (F,) for tables and 1-D sequences (MNIST-1D: (40,)), (H, W) for images (digits:
    (8, 8)); a leading channel dim is accepted by the CNNs. The weights are initialized by
    model.init. Raises `ConfigError` when the config does not fit (see `check_model_config`).
    """
    if not _is_int(n_classes) or n_classes < 1:
        raise ValueError(f"n_classes = {n_classes!r} is not allowed; it must be an integer >= 1")
    # Data modules may report numpy integers (e.g. from an array's shape); the layers want ints.
    input_shape = tuple(int(n) if isinstance(n, numbers.Integral) else n for n in input_shape)
    check_model_config(cfg, input_shape)
    return _ARCH_CLASSES[cfg.arch](cfg, input_shape, n_classes)
