"""In the sweep's driver: the scheduler that stops trials early (ASHA, PBT or none), the searcher that draws them,
and the tag that says, on the run of each trial ASHA stops, at which epoch and against which cutoff.

ASHA's reason is read from Ray's own bookkeeping (`AsyncHyperBandScheduler`'s brackets and rungs, private
fields of ray 2.60, pinned in pyproject.toml) in `asha_rung` alone; tests/tracking/sweep/test_scheduler.py
fails when Ray changes them.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler

from tracking.layout import STOPPED_TAG
from tracking.reader import find_trial_run
from tracking.store import client_for
from tracking.sweep.space import to_tune
from tracking.sweep.trial import TrialJob
from tracking.sweep_config import SweepConfig
from tracking.writer import set_tags


def make_scheduler(job: TrialJob) -> TrialScheduler:
    """The sweep's `scheduler`: ASHA (tagging the runs it stops), PBT, or FIFO (none)."""
    sweep = job.sweep
    if sweep.scheduler == "asha":
        return RecordingASHA(StopTags(job), time_attr="training_iteration", max_t=sweep.base.train.max_epochs,
                             grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor,
                             stop_last_trials=False)  # a trial that reaches max_epochs ends by itself
    if sweep.scheduler == "pbt":
        mutations = {key: to_tune(dist) for key, dist in sweep.space.items() if dist.kind != "grid"}
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=sweep.perturbation_interval,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def make_searcher(sweep: SweepConfig) -> Any:
    """Random draws crossed with the grid keys (Tune's BasicVariantGenerator), seeded by base.train.seed so
    that two schedulers compared on one sweep see the same trials; or Optuna's TPE."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if sweep.search != "tpe":
        return BasicVariantGenerator(random_state=sweep.base.train.seed, max_concurrent=sweep.max_concurrent)
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(OptunaSearch(seed=sweep.base.train.seed), max_concurrent=sweep.max_concurrent)


class StopTags:
    """Tags a trial's run when a scheduler stops it (in the driver, as the decision is made)."""

    def __init__(self, job: TrialJob) -> None:
        self.job = job

    def __call__(self, trial_id: str, why: str) -> None:
        client = client_for(self.job.tracking_uri)
        run_id = find_trial_run(client, self.job.experiment_id, self.job.parent_run_id, trial_id)
        if run_id is not None:
            set_tags(client, run_id, {STOPPED_TAG: why})


def asha_rung(scheduler: AsyncHyperBandScheduler, trial_id: str, result: dict) -> tuple[float, float, int] | None:
    """The rung that `result` of trial `trial_id` meets, before ASHA records it there: (milestone, cutoff, number of
    trials already recorded at it); None when the result meets no new rung. The cutoff is in ASHA's own sign (the
    metric times its mode's sign), as `AsyncHyperBandScheduler` compares it."""
    bracket = scheduler._trial_info.get(trial_id)
    if bracket is None or scheduler._time_attr not in result:
        return None
    for milestone, recorded in bracket._rungs:
        if result[scheduler._time_attr] >= milestone and trial_id not in recorded:
            return milestone, bracket.cutoff(recorded), len(recorded)
    return None


class RecordingASHA(AsyncHyperBandScheduler):
    """ASHA that says, for each trial it stops, at which epoch and against which cutoff."""

    def __init__(self, on_stop: StopTags, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_stop = on_stop

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        rung = asha_rung(self, trial.trial_id, result)
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and rung is not None:
            milestone, cutoff, others = rung
            self.on_stop(trial.trial_id, stop_reason(self, result, milestone, cutoff, others))
        return action


def stop_reason(scheduler: AsyncHyperBandScheduler, result: dict, milestone: float, cutoff: float,
                others: int) -> str:
    """The STOPPED_TAG text of a trial ASHA stopped at `milestone`."""
    return (f"ASHA stopped it after epoch {result[scheduler._time_attr]} (rung {milestone:g}): {scheduler._metric} "
            f"{result[scheduler._metric]:.4f} is worse than {scheduler._metric_op * cutoff:.4f}, the cutoff of the "
            f"best 1/{scheduler._reduction_factor:g} of the {others} trials that reached the rung before it")
