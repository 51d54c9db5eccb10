"""Sweep files: distributions (sampled against their intended scale), narrowing, validation messages, studies."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import yaml

from fitlens.cli import main
from lightning_modules.config import ConfigError
from tracking.sweep_config import (
    Distribution,
    apply,
    dump_sweep,
    list_studies,
    load_sweep,
    sample_configs,
    sweep_from_dict,
    with_smoke,
)

STUDIES = ["activations", "batch_size", "capacity", "init", "learning_curve", "lr", "optimizers", "regularization"]


def _sweep(**changes):
    raw = {"name": "t", "base": {"model": {"depth": 2}}, "space": {"optim.lr": {"loguniform": [1e-4, 1e-1]}}}
    raw.update(changes)
    return sweep_from_dict(raw)


def _deciles(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.histogram(values, bins=10, range=(low, high))[0]


# ----------------------------------------------------------------------------------------------
# sampling


def test_loguniform_is_uniform_in_log10() -> None:
    rng = np.random.default_rng(0)
    dist = Distribution("loguniform", (1e-4, 1e-1))
    samples = np.array([dist.sample(rng) for _ in range(10_000)])
    assert samples.min() >= 1e-4 and samples.max() <= 1e-1
    # 1000 expected per tenth of the three decades; binomial std ~30, so 150 is a 5-sigma band.
    counts = _deciles(np.log10(samples), -4, -1)
    assert np.all(np.abs(counts - 1000) < 150), counts
    # A uniform draw in lr would put ~90% of the samples in the top decade; here a third.
    assert abs(np.mean(samples > 1e-2) - 1 / 3) < 0.02


def test_loguniform_one_minus_is_uniform_in_log_of_one_minus_beta() -> None:
    rng = np.random.default_rng(1)
    dist = Distribution("loguniform_one_minus", (0.8, 0.999))
    beta = np.array([dist.sample(rng) for _ in range(10_000)])
    assert beta.min() >= 0.8 and beta.max() <= 0.999
    counts = _deciles(np.log(1 - beta), math.log(0.001), math.log(0.2))
    assert np.all(np.abs(counts - 1000) < 150), counts
    # beta in [0.99, 0.999] (1 - beta in [0.001, 0.01]) holds log(10)/log(200) = 43% of the draws,
    # though it is only 4.5% of the interval [0.8, 0.999].
    assert abs(np.mean(beta >= 0.99) - math.log(10) / math.log(200)) < 0.02


def test_uniform_and_randint_bounds() -> None:
    rng = np.random.default_rng(2)
    uniform = np.array([Distribution("uniform", (0.5, 1.0)).sample(rng) for _ in range(10_000)])
    assert uniform.min() >= 0.5 and uniform.max() <= 1.0
    assert np.all(np.abs(_deciles(uniform, 0.5, 1.0) - 1000) < 150)
    ints = [Distribution("randint", (1, 3)).sample(rng) for _ in range(600)]
    assert set(ints) == {1, 2, 3}  # both bounds included
    assert all(type(i) is int for i in ints)


def test_choice_draws_every_value() -> None:
    rng = np.random.default_rng(3)
    counts = Counter(Distribution("choice", ("relu", "tanh")).sample(rng) for _ in range(2000))
    assert set(counts) == {"relu", "tanh"} and abs(counts["relu"] - 1000) < 150


def test_grid_keys_are_crossed_and_random_keys_drawn_per_point() -> None:
    sweep = _sweep(space={"optim.lr": {"loguniform": [1e-4, 1e-1]}, "model.activation": {"grid": ["relu", "tanh"]},
                          "model.init": {"grid": ["zeros", "xavier", "he"]}}, num_samples=4)
    assert (sweep.grid_size, sweep.num_trials) == (6, 24)
    points = sample_configs(sweep, 4, seed=0)
    assert len(points) == 24
    combos = Counter((p["model.activation"], p["model.init"]) for p in points)
    assert len(combos) == 6 and set(combos.values()) == {4}
    assert len({p["optim.lr"] for p in points}) == 24  # a fresh draw for every trial
    assert sample_configs(sweep, 4, seed=0) == points  # seeded
    assert sample_configs(sweep, 4, seed=1) != points


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
# packaged studies and the CLI


def test_every_expected_study_is_packaged() -> None:
    assert list_studies() == STUDIES


@pytest.mark.parametrize("name", STUDIES)
def test_packaged_study_validates_and_every_trial_builds(name) -> None:
    sweep = load_sweep(name)
    assert sweep.name == name and sweep.base.experiment == name
    assert len(sweep.description) > 200 and "\n" not in sweep.description  # one paragraph
    points = sample_configs(sweep, sweep.num_samples, seed=0)
    assert len(points) == sweep.num_trials <= 12  # small enough for 2 CPU cores
    configs = [apply(sweep.base, p) for p in points]
    assert all(c.train.max_epochs <= 30 and c.data.name in ("mnist1d", "moons") for c in configs)
    assert with_smoke(sweep).base.train.max_epochs == 1
    assert sweep_from_dict(yaml.safe_load(dump_sweep(sweep))) == sweep  # round trip


def test_init_study_crosses_five_schemes_with_two_activations() -> None:
    points = sample_configs(load_sweep("init"), 1, seed=0)
    cfgs = [apply(load_sweep("init").base, p).model for p in points]
    schemes = {(m.init, m.init_std if m.init == "normal" else None, m.activation) for m in cfgs}
    assert len(schemes) == 10 and all(m.depth == 6 for m in cfgs)
    assert {(i, s) for i, s, _ in schemes} == {("zeros", None), ("normal", 0.01), ("normal", 1.0), ("xavier", None),
                                               ("he", None)}


def test_studies_command_json(capsys) -> None:
    assert main(["studies", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in rows] == STUDIES
    trials = {r["name"]: r["trials"] for r in rows}
    assert trials["init"] == 10 and trials["capacity"] == 9 and trials["optimizers"] == 10
    init = next(r for r in rows if r["name"] == "init")
    assert init["summary"] == "Initialization decides whether a deep network can learn at all."


def test_studies_command_table(capsys) -> None:
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES) and "trials" in out


# ----------------------------------------------------------------------------------------------
# Ray Tune


def test_to_tune_builds_the_matching_search_space() -> None:
    pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'ray[tune]==2.60.0')")
    from ray.tune.search.sample import Categorical, Float, Function, Integer

    lr = Distribution("loguniform", (1e-4, 1e-1)).to_tune()
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 1e-1)
    assert abs(np.mean(np.array(lr.sample(size=3000)) > 1e-2) - 1 / 3) < 0.05  # log-uniform: a third per decade
    width = Distribution("randint", (16, 256)).to_tune()
    assert isinstance(width, Integer) and (width.lower, width.upper) == (16, 257)  # Ray excludes the upper bound
    assert isinstance(Distribution("uniform", (0.0, 1.0)).to_tune(), Float)
    choice = Distribution("choice", ("relu", "tanh")).to_tune()
    assert isinstance(choice, Categorical) and choice.categories == ["relu", "tanh"]
    assert Distribution("grid", (1, 2)).to_tune() == {"grid_search": [1, 2]}

    beta = Distribution("loguniform_one_minus", (0.8, 0.999))
    drawn = beta.to_tune()
    assert isinstance(drawn, Function)
    assert all(0.8 <= b <= 0.999 for b in drawn.sample(size=200))
    searched = beta.to_tune(searcher=True)  # over 1 - beta, for TPE
    assert isinstance(searched, Float) and (searched.lower, searched.upper) == pytest.approx((0.001, 0.2))
    assert beta.from_tune(0.01, searcher=True) == pytest.approx(0.99)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sweep", "--study", "lrr"], "sweep 'lrr' is neither a file nor a packaged study (did you mean 'lr'?)"),
        (["sweep"], "fitlens sweep needs --study NAME (one of: activations,"),
        (["sweep", "--study", "lr", "num_samples=0"], "num_samples = 0"),
        (["sweep", "--study", "lr", "scheduler=hyperband"], "scheduler = 'hyperband'"),
        (["sweep", "--study", "lr", "space.optim.lr={loguniform: [0, 1]}"], "loguniform bounds must be > 0"),
        (["sweep", "--resume", "num_samples=3"], "--resume takes no overrides"),
        (["sweep", "refine", "abc", "--top", "0"], "--top = 0"),
    ],
)
def test_sweep_command_refuses_bad_input_before_starting_anything(argv, expected, capsys, tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fitlens: config error: ") and expected in err, err
    assert not (tmp_path / "sweeps").exists()  # no Ray cluster, no sweep state


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
