"""Init schemes against their theoretical variances, and the networks `build_model` returns."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_modules.config import ConfigError, ModelConfig
from lightning_modules.init import INIT_SCHEMES, fan_in_fan_out, initialize
from lightning_modules.layers import ChannelMaxout, DropConnectLinear, InvertedDropout
from lightning_modules.models import MLP, Block, CNN1d, CNN2d, build_model, check_model_config

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "mish", "maxout"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- initialization -----------------------------------------------------------------------


def test_fan_in_fan_out_by_hand() -> None:
    assert fan_in_fan_out(nn.Linear(30, 7).weight) == (30, 7)
    assert fan_in_fan_out(nn.Conv1d(4, 8, 5).weight) == (4 * 5, 8 * 5)
    assert fan_in_fan_out(nn.Conv2d(16, 32, 3).weight) == (16 * 9, 32 * 9)


@pytest.mark.parametrize(
    ("scheme", "n_in", "n_out", "expected_var"),
    [
        ("xavier", 1000, 1000, 1 / 1000),
        ("xavier", 500, 2000, 1 / 500),  # Xavier (course) uses n_in only
        ("glorot", 500, 2000, 2 / (500 + 2000)),
        ("he", 1000, 1000, 2 / 1000),
        ("he", 250, 1000, 2 / 250),
        ("normal", 1000, 1000, 0.03**2),
        ("uniform", 1000, 1000, 0.2**2 / 3),
    ],
)
def test_init_variance_matches_theory(scheme: str, n_in: int, n_out: int, expected_var: float) -> None:
    layer = nn.Linear(n_in, n_out)
    initialize(layer, scheme, std=0.03, bound=0.2)
    # >= 2.5e5 samples: the sample variance is within ~0.6% (2 sigma) of the true one.
    assert layer.weight.var().item() == pytest.approx(expected_var, rel=0.03)
    # Zero mean: the sample mean has std sigma / sqrt(n_in * n_out); allow 4 of those.
    assert layer.weight.mean().item() == pytest.approx(0.0, abs=4 * (expected_var / (n_in * n_out)) ** 0.5)
    assert torch.count_nonzero(layer.bias) == 0


def test_uniform_init_stays_inside_its_bound() -> None:
    layer = nn.Linear(300, 300)
    initialize(layer, "uniform", bound=0.05)
    assert layer.weight.abs().max().item() <= 0.05


def test_conv_init_uses_channels_times_kernel_as_fan_in() -> None:
    conv = nn.Conv2d(16, 64, 3)  # n_in = 16 * 9 = 144
    initialize(conv, "he")
    assert conv.weight.var().item() == pytest.approx(2 / 144, rel=0.05)


def test_init_reaches_subclasses_maxout_and_convs() -> None:
    maxout = nn.Sequential(nn.Linear(6, 6), ChannelMaxout(2))  # a maxout layer as the models build it
    net = nn.Sequential(DropConnectLinear(4, 6, keep_prob=0.5), maxout, nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2))
    initialize(net, "constant", value=0.3)
    for layer in (net[0], maxout[0], net[2]):
        assert torch.all(layer.weight == 0.3)
        assert torch.all(layer.bias == 0.0)
    assert torch.all(net[3].weight == 1.0)  # batch-norm scale is not a W of the course


def test_default_init_leaves_pytorch_init_untouched() -> None:
    layer = nn.Linear(10, 10)
    before = [p.detach().clone() for p in layer.parameters()]
    initialize(layer, "default")
    assert all(torch.equal(b, p) for b, p in zip(before, layer.parameters(), strict=True))
    assert torch.count_nonzero(layer.bias) > 0


def test_initialize_errors_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="init scheme = 'kaiming' is unknown; allowed: zeros, constant"):
        initialize(nn.Linear(2, 2), "kaiming")
    with pytest.raises(ValueError, match="std = 0.0 is not allowed"):
        initialize(nn.Linear(2, 2), "normal", std=0.0)


@pytest.mark.parametrize(("init", "value"), [("zeros", 0.0), ("constant", 0.1)])
def test_symmetric_init_never_breaks_symmetry(init: str, value: float) -> None:
    cfg = ModelConfig(depth=2, width=8, activation="tanh", init=init, init_value=value)
    net = build_model(cfg, (5,), 3)
    loss = F.cross_entropy(net(torch.randn(32, 5)), torch.randint(0, 3, (32,)))
    loss.backward()
    for i in range(2):
        linear = net.hidden[i].linear
        # Every unit (row) starts identical, and receives the same gradient, so it stays identical.
        assert torch.all(linear.weight == linear.weight[0])
        assert torch.allclose(linear.weight.grad, linear.weight.grad[0].expand_as(linear.weight.grad))
        assert torch.all(linear.bias == 0.0)
    if init == "constant":  # a non-zero constant gives non-zero (but still identical) gradients
        assert net.hidden[0].linear.weight.grad.abs().sum() > 0


# --- build_model --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [0, 2])
def test_mlp_output_shape_for_every_activation(activation: str, depth: int) -> None:
    cfg = ModelConfig(depth=depth, width=16, activation=activation, batch_norm=True)
    net = build_model(cfg, (40,), 10)
    assert isinstance(net, MLP)
    assert net(torch.randn(4, 40)).shape == (4, 10)
    assert len(net.hidden) == depth


def test_depth_zero_is_exactly_one_linear_layer() -> None:
    net = build_model(ModelConfig(depth=0), (8, 8), 10)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (64, 10)
    assert sum(p.numel() for p in net.parameters()) == 64 * 10 + 10


def test_mlp_blocks_have_stable_names_and_the_configured_parts() -> None:
    cfg = ModelConfig(depth=3, width=[20, 10, 5], keep_prob=[0.9, 0.8, 0.7], input_keep_prob=0.95, batch_norm=True)
    net = build_model(cfg, (12,), 4)
    names = dict(net.named_modules())
    for i, (width, keep_prob) in enumerate([(20, 0.9), (10, 0.8), (5, 0.7)]):
        assert isinstance(names[f"hidden.{i}"], Block)
        assert type(names[f"hidden.{i}.linear"]) is nn.Linear
        assert names[f"hidden.{i}.linear"].out_features == width
        assert isinstance(names[f"hidden.{i}.norm"], nn.BatchNorm1d)
        assert isinstance(names[f"hidden.{i}.act"], nn.ReLU)
        assert names[f"hidden.{i}.drop"].keep_prob == keep_prob
    assert net.input_drop.keep_prob == 0.95
    assert type(names["out"]) is nn.Linear and names["out"].in_features == 5


def test_batch_norm_absent_by_default() -> None:
    net = build_model(ModelConfig(), (40,), 10)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    assert all(isinstance(block.norm, nn.Identity) for block in net.hidden)


def test_mlp_dropconnect_in_hidden_layers_only() -> None:
    net = build_model(ModelConfig(dropconnect_keep_prob=0.5), (40,), 10)
    assert all(isinstance(block.linear, DropConnectLinear) for block in net.hidden)
    assert net.hidden[0].linear.keep_prob == 0.5
    assert type(net.out) is nn.Linear


def test_mlp_maxout_widens_the_linear_map_and_takes_the_max() -> None:
    net = build_model(ModelConfig(depth=2, width=6, activation="maxout", maxout_pieces=3), (40,), 10)
    assert net.hidden[0].linear.out_features == 18
    assert isinstance(net.hidden[0].act, ChannelMaxout)
    assert net.hidden[1].linear.in_features == 6
    assert net(torch.randn(2, 40)).shape == (2, 10)


def test_mlp_applies_the_configured_init() -> None:
    net = build_model(ModelConfig(depth=2, width=400, init="xavier"), (300,), 10)
    assert net.hidden[0].linear.weight.var().item() == pytest.approx(1 / 300, rel=0.05)
    assert net.hidden[1].linear.weight.var().item() == pytest.approx(1 / 400, rel=0.05)
    assert all(torch.count_nonzero(block.linear.bias) == 0 for block in net.hidden)


def test_dropout_is_random_in_training_and_deterministic_in_eval() -> None:
    net = build_model(ModelConfig(keep_prob=0.5, input_keep_prob=0.8), (40,), 10)
    x = torch.randn(8, 40)
    assert not torch.equal(net.train()(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_cnn1d_on_mnist1d_shape() -> None:
    cfg = ModelConfig(arch="cnn1d", channels=[32, 32, 32], kernel_size=5, stride=2)
    net = build_model(cfg, (40,), 10)
    assert isinstance(net, CNN1d)
    assert net.out.in_features == 32 * 5  # 40 -> 20 -> 10 -> 5 positions
    assert net(torch.randn(4, 40)).shape == (4, 10)
    assert net(torch.randn(4, 1, 40)).shape == (4, 10)
    assert [type(block.linear) for block in net.hidden] == [nn.Conv1d] * 3


def test_cnn1d_batch_norm_maxout_dropconnect_and_keep_prob_per_block() -> None:
    cfg = ModelConfig(
        arch="cnn1d",
        channels=[8, 4],
        batch_norm=True,
        activation="maxout",
        maxout_pieces=2,
        keep_prob=[0.9, 0.6],
        dropconnect_keep_prob=0.8,
        depth=5,  # an MLP field, ignored by CNNs: keep_prob follows the channels
    )
    net = build_model(cfg, (40,), 3)
    assert [block.norm.num_features for block in net.hidden] == [16, 8]
    assert [block.drop.keep_prob for block in net.hidden] == [0.9, 0.6]
    assert net.hidden[1].linear.in_channels == 8
    assert all(block.linear.keep_prob == 0.8 for block in net.hidden)
    assert net(torch.randn(4, 40)).shape == (4, 3)


@pytest.mark.parametrize(("stride", "flat_features"), [(1, 16 * 64), (2, 16 * 1)])
def test_cnn2d_on_digits_shape(stride: int, flat_features: int) -> None:
    cfg = ModelConfig(arch="cnn2d", channels=[8, 16, 16], kernel_size=3, stride=stride, batch_norm=True)
    net = build_model(cfg, (8, 8), 10)
    assert isinstance(net, CNN2d)
    assert net.out.in_features == flat_features  # stride 2: 8 -> 4 -> 2 -> 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    assert net(torch.randn(4, 8, 8)).shape == (4, 10)
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_cnn2d_accepts_channels_in_the_input_shape() -> None:
    net = build_model(ModelConfig(arch="cnn2d", channels=[4]), (3, 8, 8), 2)
    assert net.hidden[0].linear.in_channels == 3
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_input_dropout_sits_before_the_first_layer() -> None:
    net = build_model(ModelConfig(input_keep_prob=0.5), (40,), 10)
    seen = {}
    net.hidden[0].linear.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0]))
    x = torch.ones(16, 40)
    net.train()(x)
    assert set(seen["x"].unique().tolist()) <= {0.0, 2.0}  # inverted dropout: 0 or 1 / 0.5
    assert isinstance(net.input_drop, InvertedDropout)


# --- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "input_shape", "message"),
    [
        (
            {"depth": 2, "width": [10, 20, 30]},
            (40,),
            "model.width has 3 entries but model.depth = 2; give one width per hidden layer or a single int",
        ),
        ({"width": 0}, (40,), "model.width = 0 is not allowed; every hidden layer needs an integer width >= 1"),
        ({"depth": 2, "width": [10, 0]}, (40,), r"model.width = \[10, 0\] is not allowed"),
        ({"depth": -1}, (40,), "model.depth = -1 is not allowed; it must be an integer >= 0"),
        ({"keep_prob": 0.0}, (40,), r"model.keep_prob = 0.0 is not allowed; .* must lie in \(0, 1\]"),
        ({"keep_prob": 1.5}, (40,), r"model.keep_prob = 1.5 is not allowed; .* must lie in \(0, 1\]"),
        ({"depth": 2, "keep_prob": [0.5, 2.0]}, (40,), r"model.keep_prob\[1\] = 2.0 is not allowed"),
        (
            {"depth": 2, "keep_prob": [0.5]},
            (40,),
            "model.keep_prob has 1 entries but model.depth = 2; give one keep_prob per hidden layer",
        ),
        (
            {"arch": "cnn1d", "channels": [8, 8, 8], "keep_prob": [0.5, 0.5]},
            (40,),
            r"model.keep_prob has 2 entries but model.channels has 3 \(one conv block each\); "
            "give one keep_prob per conv block",
        ),
        ({"input_keep_prob": 0.0}, (40,), r"model.input_keep_prob = 0.0 is not allowed"),
        ({"dropconnect_keep_prob": 1.2}, (40,), r"model.dropconnect_keep_prob = 1.2 is not allowed"),
        (
            {"arch": "cnn2d"},
            (40,),
            r"model.arch = 'cnn2d' needs an image input \(H, W\) or \(C, H, W\), but the data gives shape \(40,\)",
        ),
        ({"arch": "cnn1d"}, (1, 8, 8), r"model.arch = 'cnn1d' needs a 1-D input \(L,\) or \(C, L\)"),
        ({"arch": "cnn1d", "channels": []}, (40,), r"model.channels = \[\] is not allowed"),
        ({"arch": "cnn1d", "channels": [8, 0]}, (40,), r"model.channels = \[8, 0\] is not allowed"),
        ({"arch": "rnn"}, (40,), "model.arch = 'rnn' is unknown; allowed: mlp, cnn1d, cnn2d"),
        ({"activation": "swish"}, (40,), "model.activation = 'swish' is unknown; allowed: sigmoid"),
        ({"activation": "maxout", "maxout_pieces": 1}, (40,), "model.maxout_pieces = 1 is not allowed"),
        ({"init": "kaiming"}, (40,), "model.init = 'kaiming' is unknown; allowed: zeros"),
        ({"init": "normal", "init_std": 0.0}, (40,), "model.init_std = 0.0 is not allowed"),
    ],
)
def test_config_errors_name_field_value_and_allowed(
    overrides: dict[str, object], input_shape: tuple[int, ...], message: str
) -> None:
    cfg = ModelConfig(**overrides)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg, input_shape, 10)
    with pytest.raises(ConfigError, match=message):
        check_model_config(cfg, input_shape)


def test_fields_of_other_archs_are_not_checked() -> None:
    # A width list that does not match depth only matters to the MLP.
    check_model_config(ModelConfig(arch="cnn1d", depth=2, width=[1, 2, 3]), (40,))
    # And CNN channels only matter to the CNNs.
    check_model_config(ModelConfig(arch="mlp", channels=[]), (40,))


def test_every_init_scheme_builds() -> None:
    for scheme in INIT_SCHEMES:
        net = build_model(ModelConfig(init=scheme, depth=1, width=4), (3,), 2)
        assert net(torch.randn(2, 3)).shape == (2, 2)
