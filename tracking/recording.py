"""One MLflow run around a piece of work (a fit, a gradient check): created after the config is
checked, params and config.yaml logged, and closed as FINISHED, FAILED (with the error) or KILLED
(Ctrl-C, SIGTERM), with every point measured before a failure kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightning_modules.config import RunConfig
from tracking.config import config_to_dict, dump_yaml, flatten
from tracking.layout import ARCH_TAG, CONFIG_FILE, DATASET_TAG, REFERENCE_ERROR_TAG
from tracking.reader import stored_steps
from tracking.signals import sigterm_raises_terminated
from tracking.store import client_for, tracking_uri
from tracking.writer import RunWriter, create_run, end_run, experiment_id, log_text, reopen_run

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.tracking import MlflowClient


@dataclass
class Recording:
    """The run being recorded."""

    client: MlflowClient
    tracking_uri: str
    experiment_id: str
    run_id: str
    writer: RunWriter


@contextmanager
def recorded_run(
    cfg: RunConfig, uri: str | None, tags: Mapping[str, str], extra_params: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
) -> Iterator[Recording]:
    """Create the run of `cfg` in experiment cfg.experiment, log its params and config.yaml, and
    close it when the block ends; SIGTERM inside the block raises `Terminated`.

    With `resume_run_id` (a retried or resumed sweep trial) that run is reopened instead: its params
    and config are already there, and metric points at steps it already holds are not sent again.
    """
    uri = tracking_uri(uri)
    client = client_for(uri)
    exp_id = experiment_id(client, cfg.experiment)
    if resume_run_id is None:
        run_id = create_run(client, exp_id, cfg.run_name or default_run_name(cfg), tags)
        writer = RunWriter(client, run_id)
    else:
        run_id = resume_run_id
        reopen_run(client, run_id)
        writer = RunWriter(client, run_id, stored_steps=stored_steps(client, run_id))
    try:
        with sigterm_raises_terminated():
            if resume_run_id is None:
                writer.log_params({**flatten(config_to_dict(cfg)), **(extra_params or {})})
                log_text(client, run_id, dump_yaml(cfg), CONFIG_FILE)
            yield Recording(client, uri, exp_id, run_id, writer)
    except BaseException as err:
        writer.close()  # what was measured before the failure stays in the run
        # Ctrl-C, SystemExit and SIGTERM (BaseExceptions all) mean the user stopped it: KILLED, not FAILED.
        killed = not isinstance(err, Exception)
        end_run(client, run_id, "KILLED" if killed else "FAILED", None if killed else f"{type(err).__name__}: {err}")
        raise
    writer.close()
    end_run(client, run_id, "FINISHED")


def config_tags(cfg: RunConfig) -> dict[str, str]:
    """The tags every run of `cfg` has: its data set, its architecture (or module) and, when the config gives one,
    its reference error."""
    tags = {DATASET_TAG: cfg.data.name, ARCH_TAG: cfg.module or cfg.model.arch}
    if cfg.data.reference_error is not None:
        tags[REFERENCE_ERROR_TAG] = str(cfg.data.reference_error)
    return tags


def default_run_name(cfg: RunConfig) -> str:
    """What the run is, and a random suffix from the OS: MLflow's own generator draws from `random`,
    which the fit's seed has just fixed, so every run of a seed would get the same name."""
    what = cfg.module.rpartition(":")[2] if cfg.module else cfg.model.arch
    return f"{what}-{cfg.data.name.rpartition(':')[2]}-{uuid.uuid4().hex[:6]}"

