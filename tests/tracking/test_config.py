"""The config loader: defaults, YAML, overrides, and the message of each class of bad input."""

from __future__ import annotations

import pytest

from lightning_modules.config import ConfigError, RunConfig
from tracking.config import config_from_dict, dump_yaml, flatten, load_config


def test_no_file_gives_the_default_config() -> None:
    cfg = load_config()
    assert cfg == RunConfig()
    assert (cfg.model.arch, cfg.data.name) == ("mlp", "mnist1d")


def test_file_then_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  depth: 3\n  activation: tanh\noptim:\n  lr: 0.1\n")
    cfg = load_config(path, ["model.depth=6", "optim.lr=3e-4", "model.width=[64, 32, 16, 8, 8, 8]"])
    assert cfg.model.depth == 6
    assert cfg.model.activation == "tanh"  # from the file, untouched by overrides
    assert cfg.optim.lr == pytest.approx(3e-4)  # YAML reads "3e-4" as text; it still becomes a number
    assert cfg.model.widths() == [64, 32, 16, 8, 8, 8]


def test_free_form_sections_take_nested_overrides() -> None:
    cfg = load_config(None, ["optim.name=Adagrad", "optim.kwargs.lr_decay=0.1"])
    assert cfg.optim.kwargs == {"lr_decay": 0.1}


def test_yaml_round_trip() -> None:
    cfg = load_config(None, ["model.keep_prob=[0.8, 0.5]", "data.name=digits", "reg.l2=0.01"])
    assert config_from_dict(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg


def test_flatten_gives_dotted_params() -> None:
    flat = flatten({"model": {"depth": 2, "width": [3, 4]}, "optim": {"kwargs": {}}, "run_name": None})
    assert flat == {"model.depth": 2, "model.width": [3, 4], "optim.kwargs": {}, "run_name": None}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.dept=3"],
         "unknown key 'model.dept' (did you mean 'model.depth'?); the keys of model are: arch, depth"),
        (["modle.depth=3"], "unknown key 'modle' (did you mean 'module'?); the keys of the config are: experiment"),
        (["model.depth=abc"], "model.depth = 'abc': expected an integer"),
        (["model.depth=true"], "model.depth = True: expected an integer"),
        (["model.depth=-1"], "model.depth = -1 is out of range; allowed: >= 0"),
        (["data.train_fraction=1.5"], "data.train_fraction = 1.5 is out of range; allowed: > 0.0 and <= 1.0"),
        (["model.keep_prob=[0.5, 0]"], "model.keep_prob = [0.5, 0.0] is out of range; allowed: > 0.0 and <= 1.0"),
        (["model.activation=relux"], "model.activation = 'relux' is not allowed (did you mean 'relu'?); "
         "choose one of: sigmoid, tanh, relu, leaky_relu, elu, gelu, mish, maxout"),
        (["model.init=kaiming"], "model.init = 'kaiming' is not allowed; choose one of: zeros, constant"),
        (["optim.lr=fast"], "optim.lr = 'fast': expected a number"),
        (["optim.lr=.inf"], "optim.lr = inf: expected a finite number"),
        (["model.width=wide"], "model.width = 'wide': expected an integer or a list of integers"),
        (["model=3"], "model = 3 must be a section"),
        (["depth"], "override 'depth' must look like section.key=value"),
        (["model..depth=2"], "override 'model..depth=2' must look like section.key=value"),
    ],
)
def test_bad_input_names_field_value_and_allowed(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert message in str(caught.value)


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == RunConfig()
