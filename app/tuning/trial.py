"""A training process that runs as one trial of a sweep (local controller or `wandb agent`)."""
from __future__ import annotations

import os
from dataclasses import dataclass

# Set by the local controller for each trial process it starts.
SWEEP_ID_ENV = "PIPELINE_SWEEP_ID"
TRIAL_ENV = "PIPELINE_SWEEP_TRIAL"
RESUME_ENV = "PIPELINE_SWEEP_RESUME_RUN"  # a killed trial's run, re-run from its newest checkpoint


@dataclass
class Trial:
    sweep_id: str
    number: int | None  # local trials are numbered; W&B's agent names its runs itself
    local: bool
    resume_run: str | None = None  # the run this trial continues (local controller), else a new one

    @property
    def group(self) -> str | None:
        """Local trials share a W&B run group; online, W&B groups a sweep's runs itself."""
        return f"sweep-{self.sweep_id}" if self.local else None

    def metadata(self) -> dict:
        return {"sweep_id": self.sweep_id, "trial": self.number}

    def _controller(self):
        from app.tracking.settings import load_settings
        from app.tracking.store import Store
        from app.tracking.sweep_controller import LocalSweeps

        return LocalSweeps(Store(load_settings().store_dir))

    def report_epoch(self, record: dict) -> bool:
        """Hand the epoch to the controller; True when hyperband stops this trial."""
        if not self.local:
            return False  # online, W&B's server stops the run through its agent
        return self._controller().report_epoch(self.sweep_id, self.number, record)

    def started(self, run_id: str) -> None:
        """Tell the controller this trial's run, so a killed trial can be re-run from its checkpoints."""
        if self.local:
            self._controller().set_run(self.sweep_id, self.number, run_id)

    def finish(self, model_ref: str | None) -> None:
        if self.local:
            self._controller().finish(self.sweep_id, self.number, model_ref)


def current_trial() -> Trial | None:
    if os.environ.get(SWEEP_ID_ENV):
        return Trial(os.environ[SWEEP_ID_ENV], int(os.environ[TRIAL_ENV]), local=True,
                     resume_run=os.environ.get(RESUME_ENV) or None)
    if os.environ.get("WANDB_SWEEP_ID"):
        return Trial(os.environ["WANDB_SWEEP_ID"], None, local=False)
    return None
