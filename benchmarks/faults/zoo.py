"""The fault zoo: training setups with a known fault, each with the cause or causes the diagnosis must name, and
healthy setups that must get no error-severity finding. Drawn from the course's lessons and from the faults public
rule sets check for (SageMaker Debugger's VanishingGradient, ExplodingTensor, DeadRelu, PoorWeightInitialization,
LossNotDecreasing, Overtraining, ClassImbalance; AutoTrainer's and DeepDiagnosis' problems).

A setup is a run config (dotted overrides of fitlens' default run: an MLP on MNIST-1D) or, for a bug in code, a
small LightningModule or DataModule of `benchmarks.faults.bugs`. `make bench-diagnosis` trains them all
(`benchmarks/bench_diagnosis.py`); `tests/analysis/test_fault_zoo.py` trains the FAST subset in `make test`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_circles, make_moons


@dataclass(frozen=True)
class Setup:
    name: str
    overrides: tuple[str, ...]  # dotted run-config overrides; {work} is the zoo's folder (generated tables)
    causes: tuple[str, ...] = ()  # the primary cause must be one of them, and each must be found
    also: tuple[str, ...] = ()  # findings that may come too (not counted as false alarms)
    undetectable: str = ""  # why fitlens cannot tell this fault from what it records (left out of the scores)

    @property
    def healthy(self) -> bool:
        return not self.causes and not self.undetectable


# The default run, shortened: 10 epochs, no early stopping, the default diagnostics preset (the update and
# pre-activation kinds included), one torch thread.
BASE = ("train.max_epochs=10", "train.early_stopping=false", "train.threads=1", "diagnostics.preset=default")
DEEP = ("model.depth=6", "model.width=64")
MOONS = ("data.name=moons", "data.n_samples=1000", "model.depth=1", "model.width=16")
# Findings a faulty network often gets beside its cause, without being wrong: it does not fit its training set.
BIAS = ("high_bias",)

FAULTS: tuple[Setup, ...] = (
    # initialization: the course's lessons
    Setup("zeros init, tanh", (*DEEP, "model.activation=tanh", "model.init=zeros"), ("symmetry",), BIAS),
    Setup("zeros init, ReLU", (*DEEP, "model.activation=relu", "model.init=zeros"), ("symmetry",), BIAS),
    Setup("constant init", (*DEEP, "model.activation=tanh", "model.init=constant", "model.init_value=0.05"),
          ("symmetry",), BIAS),
    Setup("std 0.01, tanh", (*DEEP, "model.activation=tanh", "model.init=normal", "model.init_std=0.01"),
          ("init_too_small",), BIAS),
    Setup("std 0.01, ReLU", (*DEEP, "model.activation=relu", "model.init=normal", "model.init_std=0.01"),
          ("init_too_small",), BIAS),
    Setup("std 0.01, sigmoid", (*DEEP, "model.activation=sigmoid", "model.init=normal", "model.init_std=0.01"),
          ("init_too_small",), (*BIAS, "vanishing_gradients", "saturated_units")),
    Setup("std 1, tanh", (*DEEP, "model.activation=tanh", "model.init=normal", "model.init_std=1.0"),
          ("init_too_large",), (*BIAS, "high_variance")),
    Setup("std 1, ReLU", (*DEEP, "model.activation=relu", "model.init=normal", "model.init_std=1.0"),
          ("init_too_large",), (*BIAS, "high_variance", "learning_rate_too_high")),
    Setup("Xavier in a deep ReLU net", ("model.depth=10", "model.width=64", "model.activation=relu",
                                        "model.init=xavier"), ("init_too_small",), (*BIAS, "high_variance")),
    # the learning rate and its schedule
    Setup("lr 10x too high (Adam 0.1)", ("optim.lr=0.1",), ("learning_rate_too_high",), (*BIAS, "diverged")),
    Setup("lr 1000x too high (SGD 10)", ("optim.name=sgd", "optim.lr=10.0"), ("diverged", "learning_rate_too_high"),
          BIAS),
    Setup("momentum far too high", ("optim.name=sgd", "optim.lr=0.5", "optim.momentum=0.99"),
          ("learning_rate_too_high",), (*BIAS, "diverged")),
    Setup("lr 1000x too low (Adam 1e-5)", ("optim.lr=1e-5",), ("learning_rate_too_low",), (*BIAS, "undertrained")),
    Setup("lr far too low (SGD 1e-4)", ("optim.name=sgd", "optim.lr=1e-4"), ("learning_rate_too_low",),
          (*BIAS, "undertrained")),
    Setup("lr decays to nothing after an epoch", ("optim.lr=1e-3", "optim.schedule=exponential", "optim.gamma=1e-4"),
          ("lr_decayed_too_fast",), BIAS),
    # inputs
    Setup("no normalization, breast cancer", ("data.name=breast_cancer", "data.normalize=false", "optim.lr=1e-3"),
          ("inputs_not_normalized",), (*BIAS, "high_variance", "learning_rate_too_high")),
    Setup("no normalization, a wide-range feature", ("data.name=csv", "data.path={work}/wide.csv",
                                                     "data.target=label", "data.normalize=false", "model.depth=2",
                                                     "model.width=32"),
          ("inputs_not_normalized",), (*BIAS, "learning_rate_too_high")),
    # regularization
    Setup("L2 far too strong", ("reg.l2=300",), ("over_regularized",), BIAS),
    Setup("L1 far too strong", ("reg.l1=300",), ("over_regularized",), BIAS),
    Setup("dropout far too strong", ("model.keep_prob=0.1",), ("over_regularized",), BIAS),
    # Early stopping is a regularizer too (the course's): either finding addresses the variance.
    Setup("no regularization on a small training set", ("data.train_fraction=0.05", "model.width=256",
                                                        "train.max_epochs=40"), ("high_variance", "overtrained")),
    # training length
    Setup("too many epochs without early stopping", ("data.train_fraction=0.1", "train.max_epochs=60"),
          ("overtrained",), ("high_variance",)),
    Setup("too few epochs", ("optim.lr=1e-3", "train.max_epochs=5"), ("undertrained",), (*BIAS, "high_variance")),
    # mini-batches
    Setup("batch size 1", (*MOONS, "data.batch_size=1", "train.max_epochs=3", "optim.lr=1e-3"),
          ("batch_too_small",), (*BIAS, "high_variance", "overtrained")),
    Setup("full batch", ("data.batch_size=4000", "optim.lr=1e-3"), ("batch_too_large",), (*BIAS, "undertrained")),
    # data
    Setup("90/10 class imbalance", ("data.name=csv", "data.path={work}/imbalanced.csv", "data.target=label",
                                    "model.depth=0", "optim.lr=1e-3"), ("class_imbalance",), BIAS),
    Setup("20% label noise", ("data.name=teacher_student", "data.noise=0.2", "data.n_samples=1000",
                              "model.width=256", "train.max_epochs=60", "optim.lr=3e-3"), ("label_noise",),
          ("high_variance", "overtrained")),
    # bugs in code
    Setup("softmax before the cross-entropy", ("module=benchmarks.faults.bugs:SoftmaxBeforeLoss",),
          ("loss_on_probabilities",), BIAS),
    Setup("a frozen layer", ("module=benchmarks.faults.bugs:FrozenLayer",), ("no_gradient",),
          ("high_variance", "high_bias")),
    Setup("labels shuffled against their inputs", ("data.name=benchmarks.faults.bugs:ShuffledLabels",
                                                   "data.args={train_fraction: 0.1}", "train.max_epochs=40",
                                                   "model.width=256"),
          ("labels_unrelated",), ("high_variance", "overtrained")),
    Setup("dropout left on at evaluation", ("module=benchmarks.faults.bugs:DropoutAtEval",),
          undetectable="the kept weights are measured by the module's own evaluation, which drops units too; "
                       "fitlens records no second evaluation of the same weights to show that its results vary"),
    Setup("batches sorted by label, never shuffled", ("data.name=benchmarks.faults.bugs:SortedBatches",),
          undetectable="fitlens records the loss per epoch, not per step: the sawtooth of one class per batch is "
                       "averaged away, and what remains reads as a network that learns badly"),
)

HEALTHY: tuple[Setup, ...] = (
    Setup("the default MLP", ()),
    Setup("the default MLP with early stopping", ("train.early_stopping=true", "train.max_epochs=20")),
    Setup("the paper's MLP with dropout", ("model.keep_prob=0.8", "optim.lr=3e-3")),
    Setup("a 3-layer CNN", ("model.arch=cnn1d", "model.channels=[25,25,25]", "model.kernel_size=5",
                            "model.stride=2", "optim.lr=3e-3")),
    Setup("He, 6 ReLU layers", (*DEEP, "model.activation=relu", "model.init=he", "optim.lr=1e-3")),
    Setup("Xavier, 6 tanh layers", (*DEEP, "model.activation=tanh", "model.init=xavier", "optim.lr=1e-3")),
    Setup("SGD with momentum", ("optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9")),
    Setup("softmax regression", ("model.depth=0", "optim.lr=3e-3")),
    Setup("two-class softmax regression, zero init", (*MOONS, "model.depth=0", "model.init=zeros")),
    Setup("moons, a small tanh net", (*MOONS, "model.activation=tanh", "model.init=xavier", "optim.lr=3e-3")),
    Setup("breast cancer, normalized", ("data.name=breast_cancer", "optim.lr=1e-3")),
    Setup("digits, a 2-D CNN", ("data.name=digits", "model.arch=cnn2d", "model.channels=[16,16]",
                                "model.kernel_size=3", "model.stride=1", "optim.lr=1e-3")),
    Setup("teacher-student, 10% label noise, early stopping", ("data.name=teacher_student", "data.noise=0.1",
                                                               "train.early_stopping=true", "train.max_epochs=30")),
)

# Held out: written after the thresholds were set on FAULTS and HEALTHY, and run once, not tuned on: the same kinds of
# fault on other data, architectures and magnitudes. Its scores are reported apart (`--held-out`): what the
# diagnosis does on setups it was not built around.
HELD_OUT: tuple[Setup, ...] = (
    Setup("held out: zeros init in a 1-D CNN", ("model.arch=cnn1d", "model.channels=[16,16,16]", "model.init=zeros"),
          ("symmetry",), BIAS),
    Setup("held out: std 0.01, 8 leaky-ReLU layers", ("model.depth=8", "model.width=48", "model.activation=leaky_relu",
                                                     "model.init=normal", "model.init_std=0.01"),
          ("init_too_small",), BIAS),
    Setup("held out: std 2, sigmoid", (*DEEP, "model.activation=sigmoid", "model.init=normal", "model.init_std=2.0"),
          ("init_too_large",), (*BIAS, "saturated_units", "vanishing_gradients")),
    Setup("held out: Adam 0.3 on flat digits", ("data.name=digits", "data.layout=flat", "optim.lr=0.3"),
          ("learning_rate_too_high", "diverged"), BIAS),
    Setup("held out: SGD 1e-5 on teacher-student", ("data.name=teacher_student", "optim.name=sgd", "optim.lr=1e-5"),
          ("learning_rate_too_low",), (*BIAS, "undertrained")),
    Setup("held out: L2 1000 on teacher-student", ("data.name=teacher_student", "reg.l2=1000"), ("over_regularized",),
          BIAS),
    Setup("held out: keep_prob 0.2 on digits", ("data.name=digits", "data.layout=flat", "model.keep_prob=0.2"),
          ("over_regularized",), BIAS),
    Setup("held out: unnormalized digits pixels", ("data.name=digits", "data.layout=flat", "data.normalize=false",
                                                  "optim.lr=1e-3"), ("inputs_not_normalized",),
          (*BIAS, "high_variance")),
    Setup("held out: step decay to nothing", ("optim.lr=3e-3", "optim.schedule=step", "optim.step_size=1",
                                             "optim.gamma=0.001"), ("lr_decayed_too_fast",), BIAS),
    Setup("held out: batch size 2", (*MOONS, "data.batch_size=2", "train.max_epochs=3", "optim.lr=1e-3"),
          ("batch_too_small",), (*BIAS, "high_variance", "overtrained")),
    Setup("held out: 95/5 imbalance, logistic regression", ("data.name=csv", "data.path={work}/imbalanced95.csv",
                                                            "data.target=label", "model.depth=0", "optim.lr=1e-3"),
          ("class_imbalance",), BIAS),
    Setup("held out: softmax before the loss, 1 hidden layer", ("module=benchmarks.faults.bugs:SoftmaxBeforeLoss",
                                                                "module_args={depth: 1, width: 64}"),
          ("loss_on_probabilities",), BIAS),
    Setup("held out: a frozen layer, 4 hidden layers", ("module=benchmarks.faults.bugs:FrozenLayer",
                                                        "module_args={depth: 4, width: 64}"), ("no_gradient",),
          ("high_variance", "high_bias")),
    Setup("held out: a digits MLP", ("data.name=digits", "data.layout=flat", "optim.lr=1e-3")),
    Setup("held out: a wide teacher-student net with L2", ("data.name=teacher_student", "model.width=256", "reg.l2=3")),
    Setup("held out: a 1-D CNN with dropout", ("model.arch=cnn1d", "model.channels=[16,16,16]", "model.keep_prob=0.8",
                                             "optim.lr=3e-3")),
    Setup("held out: He, 8 ReLU layers on moons", (*MOONS, "model.depth=8", "model.width=32", "optim.lr=1e-3")),
    Setup("held out: breast cancer, logistic regression", ("data.name=breast_cancer", "model.depth=0",
                                                           "optim.lr=3e-3")),
)

# What `make test` trains: 8 faults and 3 healthy setups that each train in a few seconds.
FAST = ("zeros init, tanh", "std 0.01, tanh", "std 1, tanh", "lr 1000x too high (SGD 10)",
        "lr 1000x too low (Adam 1e-5)", "no normalization, breast cancer", "softmax before the cross-entropy",
        "a frozen layer", "L2 far too strong", "softmax regression", "moons, a small tanh net", "He, 6 ReLU layers")


def setups(names: tuple[str, ...] | None = None, held_out: bool = False) -> list[Setup]:
    """The zoo's setups, faults first (those named, in the zoo's order); with `held_out`, the held-out ones."""
    every = [*FAULTS, *HEALTHY, *HELD_OUT]
    if names is not None:
        return [s for s in every if s.name in names]
    return list(HELD_OUT) if held_out else [*FAULTS, *HEALTHY]


def write_tables(work: Path) -> None:
    """The generated tables some setups read: a wide-range feature, and a 90/10 class imbalance."""
    work.mkdir(parents=True, exist_ok=True)
    x, y = make_moons(1500, noise=0.2, random_state=0)
    pd.DataFrame({"a": x[:, 0], "b": 1000.0 * x[:, 1] + 5000.0, "label": y}).to_csv(work / "wide.csv", index=False)
    x, y = make_circles(3000, noise=0.1, factor=0.5, random_state=0)
    rng = np.random.default_rng(0)
    for name, minority in (("imbalanced", 1 / 9), ("imbalanced95", 1 / 19)):  # class 1 cut to 10% and 5% of the set
        keep = (y == 0) | (rng.random(len(y)) < minority)
        pd.DataFrame({"a": x[keep, 0], "b": x[keep, 1], "label": y[keep]}).to_csv(work / f"{name}.csv", index=False)


def overrides(setup: Setup, work: Path) -> list[str]:
    """The setup's run-config overrides, on top of BASE, with {work} filled in."""
    return [o.replace("{work}", str(work)) for o in (*BASE, *setup.overrides)]
