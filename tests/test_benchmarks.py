"""The benchmarks run and print every figure the README quotes (on tiny inputs; no timing is asserted)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import offline_env

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str, tmp_path) -> str:
    # every W&B directory under tmp_path: W&B's staged copies of logged files default to ~/.local/share/wandb
    env = offline_env(tmp_path, WANDB_MODE="offline", WANDB_SILENT="true")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_train_prints_rates_ratios_peak_share_and_accuracies(tmp_path):
    out = run_benchmark("bench_train.py", "--samples", "256", "--rounds", "1", "--colour-images", "60",
                        "--max-epochs", "2", "--test-images", "500", tmp_path=tmp_path)
    for arch in ("cnn", "mlp"):
        assert re.search(rf"^{arch}: reference \d+ samples/s, engine \d+ samples/s, ratio [\d.]+x", out, re.M), out
    assert re.search(r"engine: \d+ GFLOP/s = \d+% of the median peak", out), out
    assert len(re.findall(r"accuracy after the same 4 steps, mean of the rounds: reference 0\.\d+, engine 0\.\d+", out)) == 2
    assert re.search(r"W&B logging once per epoch: [\d.]+% of a CNN epoch", out), out
    # the default architecture beside the original's on coloured shapes: speed and time to 95%
    for arch in ("convnet", "cnn"):
        assert re.search(rf"^{arch}: \d+ samples/s, 95% (validation accuracy after [\d.]+ s \(epoch [12]\)|not reached "
                         rf"in 2 epochs \(best [01]\.\d{{4}}\))$", out, re.M), out


def test_bench_eval_prints_the_ratio_and_predict_throughput(tmp_path):
    out = run_benchmark("bench_eval.py", "--examples", "200", "--naive-examples", "5", tmp_path=tmp_path)
    assert re.search(r"200 examples: project [\d.]+ s, naive \(extrapolated\) [\d.]+ s, ratio [\d.]+x", out), out
    assert re.search(r"predict.py path .*: \d+ images/s", out), out


def test_bench_quality_prints_the_recipe_beside_both_classical_baselines(tmp_path):
    # every W&B directory under tmp_path: W&B's staged copies of logged files default to ~/.local/share/wandb
    env = offline_env(tmp_path, WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run([sys.executable, str(REPO / "app" / "pipelines" / "data_prep.py"), "--dataset", "digits"],
                   env=env, cwd=tmp_path, capture_output=True, check=True, timeout=300)
    out = run_benchmark("bench_quality.py", "--epochs", "1", tmp_path=tmp_path)
    assert re.search(r"^this project: convnet, default recipe, 1 epochs, augment none +0\.\d{4} +[\d.]+$", out, re.M), out
    assert re.search(r"^logistic regression \(pixels\) +0\.\d{4}", out, re.M), out
    assert re.search(r"^RBF SVC \(pixels\) +0\.\d{4}", out, re.M), out
    assert re.search(r"recipe minus the best classical baseline: [+-]\d+\.\d\d points", out), out


def test_bench_stream_prints_both_rates_and_their_ratio(tmp_path):
    out = run_benchmark("bench_stream.py", "--images", "64", "--rounds", "1", "--workers", "1", "--memory-images",
                        "3000", "--reference-images", "300", tmp_path=tmp_path)
    assert re.search(r"^a split of 300 referenced 64x64 JPEGs into memory: decoded here [\d.]+ s, by \d+ workers "
                     r"[\d.]+ s, speed-up [\d.]+x$", out, re.M), out
    for shape in ("28x28", "64x64x3"):
        assert re.search(rf"^{shape}: in memory \d+ samples/s, streamed \d+ samples/s, ratio [\d.]+$", out, re.M), out
    peaks = re.search(r"^peak RSS, one epoch on 3000 64x64 colour images \(35 MiB as uint8\): in memory (\d+) MiB; "
                      r"streamed (\d+) MiB \(its largest worker \d+ MiB\)$", out, re.M)
    assert peaks and int(peaks[1]) > int(peaks[2]), out  # the float copy of 3,000 images alone is 141 MiB


def test_bench_buckets_prints_threads_against_one_reader_at_each_latency(tmp_path):
    out = run_benchmark("bench_buckets.py", "--images", "40", "--latency-ms", "0", "5", tmp_path=tmp_path)
    assert re.search(r"^header scan of the folder on local disk: [\d.]+ s$", out, re.M), out
    for latency in ("0", "5"):
        for step in (r"header scan \(data_prep\)", r"read \+ decode \(train, evaluate\)"):
            assert re.search(rf"^\| {latency} ms \| {step} \| [\d.]+ \| [\d.]+ \| [\d.]+x \|$", out, re.M), out
        assert re.search(rf"^at {latency} ms, W&B's add_reference of the 40 objects: [\d.]+ s \(\d+ objects/s\)$",
                         out, re.M), out


# the reference layout through the scripts: test_shards.py; its benchmark run is in make test-slow
@pytest.mark.parametrize("layout", ["shards", pytest.param("reference", marks=pytest.mark.slow)])
def test_bench_large_runs_the_three_scripts_on_a_sharded_folder_and_prints_their_peaks(tmp_path, layout):
    flags = ["--shard-size", "100"] if layout == "shards" else ["--reference"]
    out = run_benchmark("bench_large.py", "--images", "400", *flags, "--workdir", str(tmp_path / "w"), tmp_path=tmp_path)
    for stage in ("data_prep", r"train \(1 epoch, --stream\)", "evaluate"):
        assert re.search(rf"^\| {stage} \| \d+ \| [\d,]+ \| [\d.]+ GiB \| [\d.]+ GiB \|$", out, re.M), out
    assert re.search(r"^peak memory of any stage: [\d.]+ GiB \(below 3 GiB\)$", out, re.M), out
    assert "big-convnet-evaluation:v0" in out
    assert ("training split: 3 shard file(s)" if layout == "shards" else "training split: references to the JPEGs") in out


def test_bench_quality_writes_and_prepares_a_colour_kind(tmp_path):
    out = run_benchmark("bench_quality.py", "--kind", "objects", "--per-class", "12", "--epochs", "1", "--lr", "0.003",
                        "--resize", "pad", "--split", "50", "25", "25", tmp_path=tmp_path)
    assert "images written and prepared (--resize pad)" in out
    assert re.search(r"^data: objects-split:v0 \(30 train, 15 val, 15 test, shape \[48, 48, 3\], 5 classes\)", out,
                     re.M), out
    assert re.search(r"^this project: convnet, lr=0.003 \(else default\), 1 epochs, augment crop-flip-grey +0\.\d{4}", out,
                     re.M), out
    assert re.search(r"^RBF SVC \(pixels\) +0\.\d{4}", out, re.M), out


@pytest.mark.slow
def test_bench_sweep_prints_both_sweeps_and_the_measurement_side_by_side(tmp_path):
    out = run_benchmark("bench_sweep.py", "--per-class", "10", "--split", "70", "20", "10", "--trials", "3",
                        "--epochs", "2", tmp_path=tmp_path)
    for label in ("with early termination", "without"):
        assert re.search(rf"^{label} +\d+ +\d +\d+ +[01]\.\d{{4}} +[01]\.\d{{4}}$", out, re.M), out
    assert re.search(r"^early termination: [\d.]+x faster, best test accuracy [+-][\d.]+ points", out, re.M), out
    assert re.search(r"^  epoch 1: Spearman rho ([+-][\d.]+|[+-]?nan)$", out, re.M), out
    assert re.search(r"^  min_iter 1, eta 2: stops trials .*, \d+ epochs \(-?\d+% saved\), best trial (STOPPED|kept)$",
                     out, re.M), out


@pytest.mark.slow
def test_bench_sweep_ranking_only_runs_the_sweep_without_stopping_alone_on_digits(tmp_path):
    """--ranking-only: one sweep (none stopped), no side-by-side line; on a file without early_terminate too."""
    config = yaml.safe_load((REPO / "sweep-mlp.yaml").read_text())
    del config["early_terminate"]
    sweep_file = tmp_path / "no-stopping.yaml"
    sweep_file.write_text(yaml.safe_dump(config))
    out = run_benchmark("bench_sweep.py", "--kind", "digits", "--split", "70", "20", "10", "--trials", "2",
                        "--epochs", "2", "--sweep-config", str(sweep_file), "--ranking-only", tmp_path=tmp_path)
    assert "data: digits (seed 0), 1,797 images, 8x8" in out and "early_terminate: none" in out, out
    assert re.search(r"^without +\d+ +0 +4 +[01]\.\d{4} +[01]\.\d{4}$", out, re.M), out
    assert "with early termination" not in out and "x faster" not in out
    assert re.search(r"^  min_iter 1, eta 2: stops trials ", out, re.M), out
    refused = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_sweep.py"), "--sweep-config",
                              str(sweep_file)], capture_output=True, text=True)
    assert refused.returncode and "--ranking-only measures the ranking" in refused.stderr


def test_bench_near_duplicates_prints_recall_and_precision_per_set_and_the_cost_beside_no_check(tmp_path):
    quality = run_benchmark("bench_near_duplicates.py", "quality", "--count", "100", "--thresholds", "0.3",
                            tmp_path=tmp_path)
    assert "objects 64 colour" in quality and "signature recall/precision 0.30:" in quality and "| phash 8:" in quality
    assert re.search(r"\| at 0.30: recall [01].\d\d, self-test [01].\d\d; precision [01].\d\d, "
                     r"self-test ([01].\d\d|none)", quality), quality
    cost = run_benchmark("bench_near_duplicates.py", "cost", "--images", "300", tmp_path=tmp_path)
    assert "data_prep without the check:" in cost and "data_prep with the check:" in cost
    assert "its time without, on 300 images" in cost and "index of 300 signatures" in cost
    found, every = re.search(r"(\d+) pairs; the index found (\d+) of them", cost).groups()[::-1]
    assert found == every  # on a small set the graph finds every pair all pairs hold
