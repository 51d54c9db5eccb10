"""The scheduler's stop tags read ASHA's own bookkeeping, private fields of Ray's AsyncHyperBandScheduler (its
brackets, their rungs and cutoffs, its metric and sign): a real scheduler of the pinned Ray, fed results as Tune
feeds them, so this fails when Ray renames or changes what `asha_rung` and `stop_reason` read."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from ray.tune.schedulers import TrialScheduler

from tracking.sweep.scheduler import RecordingASHA, asha_rung


def test_the_stop_reason_names_the_rung_and_the_cutoff_asha_decided_on() -> None:
    stopped: list[tuple[str, str]] = []
    asha = RecordingASHA(lambda trial_id, why: stopped.append((trial_id, why)), time_attr="training_iteration",
                         metric="dev/error", mode="min", max_t=9, grace_period=1, reduction_factor=3,
                         stop_last_trials=False)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(4)]
    for trial in trials:
        asha.on_trial_add(None, trial)
    actions = {}
    errors = (0.3, 0.2, 0.1, 0.9)  # each better than those before it, but the last
    for trial, error in zip(trials, errors, strict=True):
        result = {"training_iteration": 1, "dev/error": error}
        rung = asha_rung(asha, trial.trial_id, result)
        recorded = [-e for e in errors[: int(trial.trial_id[1:])]]  # ASHA keeps -error for mode min
        want_cutoff = np.nanpercentile(recorded, (1 - 1 / 3) * 100) if recorded else None
        assert rung is not None and rung[0] == 1 and rung[2] == len(recorded)
        assert (rung[1] is None) == (want_cutoff is None) and (want_cutoff is None or rung[1] == want_cutoff)
        actions[trial.trial_id] = asha.on_trial_result(None, trial, result)
    # the three better trials continue; the worst is stopped, and its run is told why
    assert actions == {"t0": TrialScheduler.CONTINUE, "t1": TrialScheduler.CONTINUE, "t2": TrialScheduler.CONTINUE,
                       "t3": TrialScheduler.STOP}
    cutoff = -np.nanpercentile([-0.3, -0.2, -0.1], 100 * 2 / 3)
    assert stopped == [("t3", f"ASHA stopped it after epoch 1 (rung 1): dev/error 0.9000 is worse than {cutoff:.4f}, "
                              "the cutoff of the best 1/3 of the 3 trials that reached the rung before it")]
    # a result that meets no new rung (the rung of epoch 1 already has it, the next is at 3) has no reason
    assert asha_rung(asha, "t0", {"training_iteration": 2, "dev/error": 0.1}) is None
    assert asha_rung(asha, "unknown", {"training_iteration": 1, "dev/error": 0.1}) is None
