"""Train an image classifier on a dataset artifact and log it as a model artifact.

    python app/pipelines/train.py --dataset digits --epochs 15          # baseline
    python app/pipelines/train.py --dataset digits --tune --max_sweep 6 # Bayesian sweep -> "candidate"
    python app/pipelines/train.py --dataset digits --retrain --epochs 15  # candidate -> "to_evaluate"

Hyperparameters, the architectures' own settings included, default to TrainConfig's values
(app/recipe/config.py); `--help` lists each with its default.
"""
from __future__ import annotations

import os
import sys

from app import names
from app.cli import Parser, non_negative_int, positive_int
from app.errors import UserError, exits_cleanly, speak_on_rank_0_only
from app.jobs import TrainRequest
from app.recipe.config import (AUGMENTED_STEP_BUDGET, PRECISIONS, STEP_BUDGET, CheckpointOptions, DeviceOptions,
                               TrainConfig, add_flags, hyperparameter_names, stream_workers)


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=names.dataset_name, default=None,
                   help="dataset the model is for (default: that of the newest dataset artifact; --retrain: "
                        "the registry collection with 'candidate')")
    p.add_argument("--arch", choices=names.ARCHITECTURES, default=None,
                   help=f"architecture, app/models/ (default: {TrainConfig.arch}; --retrain: the candidate's)")
    p.add_argument("--data", metavar="REF", help="dataset artifact ref (default: <dataset>-split:latest)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs to train (default: about {STEP_BUDGET} optimizer steps' worth, {AUGMENTED_STEP_BUDGET} with "
                        "augmentation, from the training split's size; "
                        "--retrain: that full budget for the candidate's batch size, at least its own count)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--precision", choices=PRECISIONS, default=DeviceOptions.precision,
                   help="auto: bf16 autocast (and channels_last for convolutions) on a CUDA GPU, fp32 on the CPU")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile (minutes of compiling first; on the CPU a C++ compiler)")
    p.add_argument("--stream", nargs="?", type=non_negative_int, const=stream_workers(), default=None,
                   metavar="WORKERS",
                   help="read the split from its files batch by batch in WORKERS DataLoader processes (default "
                        f"{stream_workers()}) instead of holding it in memory: for a split larger than memory")
    add_flags(p.add_argument_group("hyperparameters (default: TrainConfig in app/recipe/config.py)"))
    saving = p.add_argument_group("checkpoints (resumable training state, W&B artifacts checkpoint-<run id>)")
    saving.add_argument("--checkpoint-every", type=non_negative_int, default=CheckpointOptions.every, metavar="N",
                        help="save the training state every N epochs and after the last; 0: never")
    saving.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="K",
                        help=f"keep the newest K checkpoint versions (and the best epoch's) after the run too (default: "
                             f"{CheckpointOptions.keep} while it trains, none once it has logged its model)")
    saving.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_ID",
                        help="continue a stopped run (baseline or --retrain) from its newest checkpoint, in the same "
                             "W&B run (default: the newest run that did not finish)")
    flow = p.add_argument_group("tuning and retraining")
    flow.add_argument("--tune", action="store_true", help="run a Bayesian sweep over sweep.yaml")
    flow.add_argument("--max-sweep", type=positive_int, default=None,
                      help="--tune: the sweep's size in trials (its run_cap), fixed when it is created and kept "
                           "when agents join or resume it (default: the sweep file's run_cap, else 30)")
    flow.add_argument("--count", type=positive_int, default=None,
                      help="--tune: trials this agent runs at most, as `wandb agent --count` (default: until the "
                           "sweep has its size)")
    flow.add_argument("--sweep-id", help="--tune: join this sweep instead of creating one")
    flow.add_argument("--sweep-config", default=None,
                      help=f"--tune: the sweep definition (default: sweep.yaml for {TrainConfig.arch}, sweep-<arch>.yaml for the "
                           "others)")
    flow.add_argument("--no-link", action="store_true", help="--tune: do not link the best trial as 'candidate'")
    flow.add_argument("--retrain", action="store_true",
                      help="retrain the registry's candidate with its own recipe to the full budget and link it as "
                           "'to_evaluate' (a candidate already trained so is linked itself, without training again)")
    flow.add_argument("--model", metavar="REF", help="--retrain: model ref (default: WANDB_MODEL_RETRAIN, "
                      "else wandb-registry-model/<dataset>-<arch>:candidate)")
    flow.add_argument("--warm-start", action="store_true",
                      help="--retrain: start from the candidate's weights instead of from scratch")
    args = p.parse_args(argv)
    if sum(map(bool, (args.tune, args.retrain, args.resume is not None))) > 1:
        p.error("--tune, --retrain and --resume are separate steps; run one at a time")
    return args


def request_of(args) -> TrainRequest:
    """The job's request: the flags, typed (the jobs in app/jobs never see argparse)."""
    return TrainRequest(
        arch=args.arch, dataset=args.dataset, data=args.data, epochs=args.epochs,
        hyperparameters={k: getattr(args, k) for k in hyperparameter_names()}, device=args.device,
        options=DeviceOptions(precision=args.precision, compile=args.compile, stream=args.stream),
        checkpoints=CheckpointOptions(every=args.checkpoint_every, keep=args.keep_checkpoints or CheckpointOptions.keep,
                                      keep_after=args.keep_checkpoints is not None),
        model=args.model, warm_start=args.warm_start, resume=args.resume)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    speak_on_rank_0_only()
    from app.tracking.settings import load_settings

    settings = load_settings()
    if (args.retrain or args.tune or args.resume is not None) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--retrain, --tune and --resume run as one process; under torchrun, run plain training "
                        "(a sweep's trials can be torchrun jobs: see the README's torchrun section).")
    if args.retrain:
        from app.jobs.retrain import retrain_candidate

        return retrain_candidate(request_of(args), settings)
    if args.resume is not None:
        from app.jobs.resume import resume_stopped_run

        return resume_stopped_run(request_of(args))
    from app.jobs.baseline import dataset_of, train_baseline

    args.arch = args.arch or TrainConfig.arch
    args.dataset = args.dataset or dataset_of(args.data)
    if args.tune:
        from app.tuning.run import tune

        return tune(args, settings)
    return train_baseline(request_of(args))


if __name__ == "__main__":
    sys.exit(main())
