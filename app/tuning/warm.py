"""Imported once by the local sweep's warm process (trial_runner.WARM_MODULES): one AdamW step
on a one-element parameter, so torch.optim's lazy imports on its first step (torch's compiler
stack, about 1.6 s here) happen there, once, and not in every trial forked from it. The step
is too small to start torch's thread pool, so the forked trials start from a clean one."""
from app.training.optimizer import warm_up

warm_up()
