"""Sweep files: narrowing, trial configs, validation messages, the packaged studies (their trials drawn as Ray Tune
draws them) and the commands that read them."""

from __future__ import annotations

import math

import pytest
import yaml

from lightning_modules.config import ConfigError
from tracking.sweep.space import tune_points
from tracking.sweep_config import (
    Distribution,
    apply,
    dump_sweep,
    list_studies,
    load_sweep,
    sweep_from_dict,
    with_smoke,
)

STUDIES = ["activations", "batch_size", "capacity", "init", "learning_curve", "lr", "optimizers", "regularization"]


def _sweep(**changes):
    raw = {"name": "t", "base": {"model": {"depth": 2}}, "space": {"optim.lr": {"loguniform": [1e-4, 1e-1]}}}
    raw.update(changes)
    return sweep_from_dict(raw)


# ----------------------------------------------------------------------------------------------
# trial configs


def test_apply_sets_keys_and_merges_section_bundles() -> None:
    sweep = _sweep()
    cfg = apply(sweep.base, {"optim": {"name": "sgd", "momentum": 0.9, "lr": 0.5}, "optim.lr": 0.01,
                             "model.activation": "tanh"})
    assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.lr) == ("sgd", 0.9, 0.01)  # the dotted key wins
    assert cfg.optim.beta2 == 0.999  # the rest of the section is kept
    assert (cfg.model.depth, cfg.model.activation) == (2, "tanh")
    assert cfg.experiment == "t"  # the sweep's name, as base does not set one


# ----------------------------------------------------------------------------------------------
# narrow: coarse to fine


def test_narrow_log_scale() -> None:
    dist = Distribution("loguniform", (1e-4, 1e-1))
    # margin 1/6 of three decades is half a decade: f = sqrt(10)
    narrowed = dist.narrow([1e-3, 1e-2], margin=1 / 6)
    assert narrowed.kind == "loguniform" and narrowed.scale == "log"
    assert narrowed.bounds == pytest.approx((1e-3 / math.sqrt(10), 1e-2 * math.sqrt(10)))
    # f = 10 would step below 1e-4: clipped to the old bounds
    assert dist.narrow([2e-4], margin=1 / 3).bounds == pytest.approx((1e-4, 2e-3))


def test_narrow_log_one_minus_scale() -> None:
    dist = Distribution("loguniform_one_minus", (0.8, 0.999))
    # 1 - beta spans [0.001, 0.2]; a margin of log(2)/log(200) is a factor 2 on 1 - beta:
    # the best betas 0.9 and 0.99 (1 - beta 0.1 and 0.01) give 1 - beta in [0.005, 0.2].
    narrowed = dist.narrow([0.9, 0.99], margin=math.log(2) / math.log(200))
    assert narrowed.scale == "log_one_minus"
    assert narrowed.bounds == pytest.approx((0.8, 0.995))


def test_narrow_linear_scales() -> None:
    assert Distribution("uniform", (0.0, 1.0)).narrow([0.4, 0.5], margin=0.1).bounds == pytest.approx((0.3, 0.6))
    randint = Distribution("randint", (16, 256))
    assert randint.narrow([100, 120], margin=0.1).bounds == (76, 144)  # pad 24
    assert randint.narrow([100, 120], margin=0.01).bounds == (97, 123)  # pad 2.4, rounded outwards
    assert randint.narrow([250], margin=0.1).bounds == (226, 256)  # clipped


def test_narrow_categorical_keeps_the_values_seen() -> None:
    choice = Distribution("choice", ("relu", "tanh", "gelu"))
    assert choice.narrow(["gelu", "relu", "gelu"]) == Distribution("choice", ("relu", "gelu"))
    assert Distribution("grid", (16, 32, 64)).narrow([64]) == Distribution("grid", (64,))
    with pytest.raises(ValueError, match="not among"):
        choice.narrow(["sigmoid"])
    with pytest.raises(ValueError, match="outside the bounds"):
        Distribution("uniform", (0.0, 1.0)).narrow([2.0])


# ----------------------------------------------------------------------------------------------
# validation: every message names the field, the value and what is allowed


@pytest.mark.parametrize(("space", "expected"), [
    ({"optim.lr": {"loguniform": [0, 1]}}, r"space\.optim\.lr = .*loguniform bounds must be > 0"),
    ({"model.activation": {"choice": ["relux"]}},
     r"space\.model\.activation = .*'relux'.*did you mean 'relu'.*choose one of: sigmoid, tanh"),
    ({"model.dept": {"randint": [1, 4]}}, r"space\.model\.dept = .*unknown key 'model\.dept' \(did you mean "
                                          r"'model\.depth'\?\)"),
    ({"optim.lr": {"loguniform": [1e-1, 1e-4]}}, r"space\.optim\.lr = .*reversed.*expected low < high"),
    ({"model.width": {"randint": [256, 16]}}, r"space\.model\.width = .*reversed.*low <= high"),
    ({"optim.lr": {"loguniform": ["abc", 1]}}, r"space\.optim\.lr = 'abc': expected a number"),
    ({"optim.lr": {"logunifrom": [1e-4, 1]}},
     r"space\.optim\.lr = .*unknown distribution 'logunifrom' \(did you mean 'loguniform'\?\); choose one of: "
     r"loguniform, loguniform_one_minus, uniform, randint, choice, grid"),
    ({"optim.beta1": {"uniform": [0.5, 1.0]}}, r"space\.optim\.beta1 = .*value 1\.0 .*out of range; allowed: >= 0"),
    ({"optim.beta1": {"loguniform_one_minus": [0.9, 1.0]}}, r"space\.optim\.beta1 = .*must lie in \[0, 1\)"),
    ({"model.depth": {"uniform": [1, 4]}}, r"space\.model\.depth = .*model\.depth = 1\.0: expected an integer"),
    ({"model.width": {"randint": [16.0, 64]}}, r"space\.model\.width = .*randint bounds must be integers"),
    ({"optim.lr": [1e-4, 1e-1]}, r"space\.optim\.lr = .*expected one distribution.*choose|name one of"),
    ({"model.init": {"grid": []}}, r"space\.model\.init = .*non-empty list"),
    ({}, r"space = \{\}: expected a non-empty mapping"),
])
def test_bad_space_messages(space, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        _sweep(space=space)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"num_sample": 3}, r"unknown key 'num_sample' \(did you mean 'num_samples'\?\)"),
    ({"search": "bayes"}, r"search = 'bayes' is not allowed; choose one of: random, grid, tpe"),
    ({"scheduler": "hyperband"}, r"scheduler = 'hyperband' is not allowed; choose one of: fifo, asha, pbt"),
    ({"metric": "test/error"}, r"metric = 'test/error' is not allowed.*; choose one of: dev/error, dev/loss"),
    ({"num_samples": 0}, r"num_samples = 0 is out of range; allowed: >= 1"),
    ({"resources": {"gpus": -1}}, r"resources\.gpus = -1\.0 is out of range; allowed: >= 0"),
    ({"base": {"model": {"dept": 3}}}, r"unknown key 'base\.model\.dept' \(did you mean 'base\.model\.depth'\?\)"),
    ({"smoke": {"base": {"train": {"max_epochs": 0}}}}, r"smoke\.base\.train\.max_epochs = 0 is out of range"),
    ({"search": "grid"}, r"search = 'grid' needs every space entry to be a grid; space\.optim\.lr is loguniform"),
    ({"search": "tpe", "space": {"model.init": {"grid": ["he"]}}}, r"search = 'tpe' cannot cross grid values"),
    ({"scheduler": "pbt", "search": "tpe"}, r"scheduler = 'pbt' with search = 'tpe'"),
])
def test_bad_sweep_messages(changes, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        _sweep(**changes)


def test_load_sweep_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "space": {"optim.lr": {"loguniform": [1e-4, 1e-1]},
                                                              "reg.l2": {"uniform": [0.0, 1.0]}}}))
    sweep = load_sweep(path, ["num_samples=4", "base.train.max_epochs=3", "space.optim.lr={loguniform: [1e-3, 1e-2]}",
                              "space.reg.l2=null", "resources.gpus=0.5"])
    assert (sweep.num_samples, sweep.base.train.max_epochs, sweep.resources.gpus) == (4, 3, 0.5)
    assert sweep.space == {"optim.lr": Distribution("loguniform", (1e-3, 1e-2))}  # YAML's "1e-3" text read as a number
    with pytest.raises(ConfigError, match=r"space\.optim\.lr = .*loguniform bounds must be > 0"):
        load_sweep(path, ["space.optim.lr={loguniform: [0, 1]}"])
    with pytest.raises(ConfigError, match=r"sweep 'inti' is neither a file nor a packaged study \(did you mean "
                                          r"'init'\?\)"):
        load_sweep("inti")
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.yaml")


def test_smoke_changes_samples_and_base() -> None:
    sweep = _sweep(smoke={"num_samples": 2, "base": {"train": {"max_epochs": 1, "limit_batches": 2}, "data": {}}})
    smoke = with_smoke(sweep)
    assert (smoke.num_samples, smoke.base.train.max_epochs, smoke.base.train.limit_batches) == (2, 1, 2)
    assert smoke.base.model.depth == 2 and smoke.base.data == sweep.base.data  # `data: {}` changes nothing


# ----------------------------------------------------------------------------------------------
# packaged studies


def test_every_expected_study_is_packaged() -> None:
    assert list_studies() == STUDIES


@pytest.mark.parametrize("name", STUDIES)
def test_packaged_study_validates_and_every_trial_builds(name) -> None:
    sweep = load_sweep(name)
    assert sweep.name == name and sweep.base.experiment == name
    assert len(sweep.description) > 200 and "\n" not in sweep.description  # one paragraph
    points = tune_points(sweep, sweep.num_samples)
    assert len(points) == sweep.num_trials <= 12  # small enough for 2 CPU cores
    configs = [apply(sweep.base, p) for p in points]
    assert all(c.train.max_epochs <= 30 and c.data.name in ("mnist1d", "moons") for c in configs)
    assert with_smoke(sweep).base.train.max_epochs == 1
    assert sweep_from_dict(yaml.safe_load(dump_sweep(sweep))) == sweep  # round trip


def test_init_study_crosses_five_schemes_with_two_activations() -> None:
    points = tune_points(load_sweep("init"), 1)
    cfgs = [apply(load_sweep("init").base, p).model for p in points]
    schemes = {(m.init, m.init_std if m.init == "normal" else None, m.activation) for m in cfgs}
    assert len(schemes) == 10 and all(m.depth == 6 for m in cfgs)
    assert {(i, s) for i, s, _ in schemes} == {("zeros", None), ("normal", 0.01), ("normal", 1.0), ("xavier", None),
                                               ("he", None)}


@pytest.mark.parametrize("name", list_studies())
def test_a_sweep_read_back_from_its_parent_run_is_the_same_sweep(name, tmp_path) -> None:
    """`fitlens sweep --resume` (make sweep-resume) finds the unfinished sweep by the hash of the sweep as run:
    the search_space.yaml of its parent must read back to a sweep with the same hash, smoke or not."""
    from mlflow.tracking import MlflowClient

    from tracking.reader import unfinished_sweep
    from tracking.sweep.driver import _create_parent, sweep_hash
    from tracking.writer import experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    for sweep in (load_sweep(name), with_smoke(load_sweep(name))):
        identity = sweep_hash(sweep, uri)
        parent = _create_parent(client, experiment_id(client, sweep.base.experiment), sweep, identity, None)
        client.set_terminated(parent, "KILLED")  # Ctrl-C
        again = unfinished_sweep(uri)
        assert sweep_hash(again, uri) == identity
        assert again == sweep
        client.set_terminated(parent, "FINISHED")
    with pytest.raises(ConfigError, match="--resume: no unfinished sweep in"):
        unfinished_sweep(uri)
