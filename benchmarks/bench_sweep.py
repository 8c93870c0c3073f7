"""Early termination measured: the same sweep with and without Hyperband, on a colour folder.

    python benchmarks/bench_sweep.py [--kind patterns] [--per-class 480] [--split 18 5 77] [--data-seed 0] [--trials 8]
                                     [--sweep-config sweep.yaml] [--epochs N] [--method random]
                                     [--impute best] [--image-size 48] [--ranking-only] [--save trials.json]

Writes a colour folder (benchmarks/colour_sets.py), prepares it as `data_prep.py --dataset
imagefolder --image-size 48` does, with a large test split (by default 432 training, 120 validation
and 1,848 test images: the trials train on as much as a 600-image folder's 70/20/10 split gives
them, and one test image is 0.05 points, so "at most 1 point" is not decided by one image), then
runs `train.py --tune --max-sweep N` twice on it, each in a fresh offline store: once with the sweep
file's `early_terminate`, once without. The search seed comes from the sweep's method, metric and
parameters (sweep_controller.search_seed), so both draw the same first trials; with `--method
random` they draw the same trials throughout, and the difference is early termination's alone (a
Bayesian search learns from a stopped trial's score, so its later trials go elsewhere). Printed side
by side: the wall time of each sweep, the trials stopped and the epochs trained, the best trial's
validation accuracy and its model's test accuracy (`evaluate.py`).

Then the measurement the Hyperband settings rest on, from the sweep without early termination
(every trial trained to its end): how well each epoch's validation accuracy ranks the trials by
their final best (Spearman's rho), and, replaying W&B's own Hyperband rule (`sweeps.stop_runs`)
on those histories in the order the trials ran, what each (min_iter, eta) would have stopped,
the epochs it would have saved, and whether it would have stopped the best trial.

`--ranking-only` runs only the sweep without early termination (that measurement, at half the
cost). `--kind digits` runs on the bundled 8x8 digits instead of a folder: ResNet-18 (adapted to
small inputs, so it keeps the image's size through its stages) learns nothing in 12 epochs on a
CPU-sized folder at 32x32 (four trials, best validation accuracy 0.24-0.36, chance 0.20), and digits
is where it can be measured here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

import colour_sets
from offline_runs import offline_env

REPO = Path(__file__).resolve().parents[1]

METRIC = "val/best_accuracy"
SETTINGS = ((1, 2), (2, 2), (2, 3), (3, 3), (4, 2), (4, 3), (6, 3), (8, 2), (8, 3), (10, 3))  # (min_iter, eta) replayed


def script(workdir: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = offline_env(workdir, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "app" / "pipelines" / f"{name}.py"), *args], cwd=workdir,
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{name}.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def run_sweep(root: Path, label: str, data_args: list[str], config: dict, trials: int, epochs: int | None) -> dict:
    """data_prep, then --tune in a store of its own; the sweep's trials and the best's test accuracy."""
    workdir = root / label
    workdir.mkdir()
    sweep_file = workdir / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(config))
    script(workdir, "data_prep", *data_args)
    started = time.perf_counter()
    arch = config["parameters"].get("arch", {}).get("value", "convnet")  # the architecture the file searches
    script(workdir, "train", "--tune", "--arch", arch, "--max-sweep", str(trials), "--sweep-config", str(sweep_file),
           "--no-link", *(["--epochs", str(epochs)] if epochs else []))
    seconds = time.perf_counter() - started
    [state_file] = (workdir / "artifact-store" / "sweeps").glob("*.json")
    ran = sorted(json.loads(state_file.read_text())["trials"], key=lambda t: t["number"])
    best = max((t for t in ran if t.get("model_ref")), key=lambda t: t["summary"][METRIC])
    out = script(workdir, "evaluate", "--model", best["model_ref"], "--no-generate-images").stdout
    test = float(out.split("test accuracy ")[1].split(",")[0])
    return {"seconds": seconds, "trials": ran, "best": best, "test": test}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def replay(trials: list[dict], min_iter: int, eta: int, config: dict) -> tuple[list[int], int]:
    """W&B's Hyperband rule on recorded histories, trial after trial as one agent runs them:
    (the numbers of the trials it stops, the epochs it trains in all)."""
    import sweeps

    config = {**config, "early_terminate": {"type": "hyperband", "min_iter": min_iter, "eta": eta}}
    done, stopped, epochs = [], [], 0
    for trial in trials:
        history = []
        for record in trial["history"]:
            history.append(record)
            epochs += 1
            runs = [*done, sweeps.SweepRun(name=trial["name"], state="running", history=history)]
            if any(r.name == trial["name"] for r in sweeps.stop_runs(config, runs)):
                stopped.append(trial["number"])
                break
        done.append(sweeps.SweepRun(name=trial["name"], state="finished", history=list(history)))
    return stopped, epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=(*colour_sets.KINDS, "digits"), default="patterns",
                   help="the colour folder, or the bundled digits (8x8 grey: cheap enough for ResNet-18 on a CPU)")
    p.add_argument("--per-class", type=int, default=480, help="images per class (5 classes)")
    p.add_argument("--split", type=int, nargs=3, default=[18, 5, 77], metavar=("TRAIN", "VAL", "TEST"),
                   help="data_prep's --train_val_test_size (default: 18 5 77, most of the folder to measure the "
                        "best trial's test accuracy on)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="the folder's draw: another seed, another folder of the same kind (a repetition)")
    p.add_argument("--trials", type=int, default=8, help="trials of each sweep")
    p.add_argument("--sweep-config", type=Path, default=REPO / "sweep.yaml", help="the sweep file measured")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every trial (default: train.py's step budget for each trial's batch size)")
    p.add_argument("--method", choices=("bayes", "random"), default=None,
                   help="search method of both sweeps (default: the file's). random draws the same trials in both, "
                        "so the difference is early termination's alone; bayes learns from the stopped trials' "
                        "scores, so its later trials differ")
    p.add_argument("--impute", choices=("best", "latest", "worst"), default=None,
                   help="metric.impute of both sweeps (default: the file's, else W&B's worst): how a Bayesian "
                        "search scores a stopped trial")
    p.add_argument("--image-size", type=int, default=48,
                   help="data_prep's --image-size (default 48; 32 makes a ResNet-18 epoch 2.7x cheaper on a CPU)")
    p.add_argument("--ranking-only", action="store_true",
                   help="run only the sweep without early termination: the ranking and the replayed Hyperband "
                        "settings, at half the cost (to choose a file's min_iter and eta)")
    p.add_argument("--save", type=Path, help="write both sweeps' trials (params, per-epoch histories) to this JSON file")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    with_stopping = yaml.safe_load(args.sweep_config.read_text())
    with_stopping["method"] = args.method or with_stopping["method"]
    if args.impute:
        with_stopping["metric"] = {**with_stopping["metric"], "impute": args.impute}
    if "early_terminate" not in with_stopping and not args.ranking_only:
        sys.exit(f"{args.sweep_config} has no early_terminate to measure; --ranking-only measures the ranking "
                 f"its settings would rest on")
    without = {k: v for k, v in with_stopping.items() if k != "early_terminate"}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        split = ["--train_val_test_size", *map(str, args.split)]
        if args.kind == "digits":
            data_args, size = ["--dataset", "digits", *split], "1,797 images, 8x8"
        else:
            colour_sets.write(args.kind, root / args.kind, args.per_class, seed=args.data_seed)
            data_args = ["--dataset", "imagefolder", "--data-dir", str(root / args.kind), "--image-size",
                         str(args.image_size), *split]
            size = f"{5 * args.per_class} images, {args.image_size}x{args.image_size}"
        print(f"data: {args.kind} (seed {args.data_seed}), {size}, split "
              f"{'/'.join(map(str, args.split))}; {args.trials} trials of "
              f"{args.sweep_config.name} each, method {with_stopping['method']}, impute "
              f"{with_stopping['metric'].get('impute', 'worst')} "
              f"(early_terminate: {with_stopping.get('early_terminate', 'none')})", flush=True)
        arms = (("without", without),) if args.ranking_only else (("with early termination", with_stopping),
                                                                    ("without", without))
        results = {label: run_sweep(root, label, data_args, config, args.trials, args.epochs) for label, config in arms}
    if args.save:
        args.save.write_text(json.dumps({label: r["trials"] for label, r in results.items()}, indent=1))
    print(f"{'sweep':24}  {'seconds':>7}  {'stopped':>7}  {'epochs':>6}  {'best val':>8}  {'its test':>8}")
    for label, r in results.items():
        stopped = sum(t["state"] == "stopped" for t in r["trials"])
        epochs = sum(len(t["history"]) for t in r["trials"])
        print(f"{label:24}  {r['seconds']:7.0f}  {stopped:7d}  {epochs:6d}  {r['best']['summary'][METRIC]:8.4f}  "
              f"{r['test']:8.4f}")
    full, stop = results["without"], results.get("with early termination")
    if stop:
        print(f"early termination: {full['seconds'] / stop['seconds']:.2f}x faster, best test accuracy "
              f"{100 * (stop['test'] - full['test']):+.1f} points, best validation "
              f"{100 * (stop['best']['summary'][METRIC] - full['best']['summary'][METRIC]):+.1f} points")

    trials = full["trials"]
    final = [t["summary"][METRIC] for t in trials]
    print("how well epoch k's validation accuracy ranks the trials by their final best (sweep without stopping):")
    for k in (1, 2, 3, 4, 6, 8, 10, 12, 15):
        if all(len(t["history"]) >= k for t in trials):
            rho = spearman([t["history"][k - 1]["val/accuracy"] for t in trials], final)
            print(f"  epoch {k}: Spearman rho {rho:+.2f}")
    best = max(trials, key=lambda t: t["summary"][METRIC])["number"]
    total = sum(len(t["history"]) for t in trials)
    print(f"W&B's Hyperband rule replayed on those histories (best trial: {best}, {total} epochs in all):")
    for min_iter, eta in SETTINGS:
        stopped, epochs = replay(trials, min_iter, eta, without)
        print(f"  min_iter {min_iter}, eta {eta}: stops trials {stopped or 'none'}, {epochs} epochs "
              f"({100 * (1 - epochs / total):.0f}% saved), best trial {'STOPPED' if best in stopped else 'kept'}")


if __name__ == "__main__":
    main()
