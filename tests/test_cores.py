"""Trainings on one machine share its cores (app/training/cores.py): two trainings at once, each
with a thread per core, ran 2-3x slower on the 2-core VM than with a core each (docs/performance.md,
"Trainings on one machine"). The machine's core count is given (8 here, 2 in the training test), so
the arithmetic does not depend on the machine the tests run on."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from app.processes import process_identity
from app.recipe.config import from_flags
from app.training import cores, engine, workflow
from test_engine import separable


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A registry folder of its own, no OMP_NUM_THREADS (the suite sets one), torch's count restored."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cores, "trainings_folder", lambda: tmp_path / "trainings")
    before = torch.get_num_threads()
    sleepers = []

    def other_training(threads: int | None = None, alive: bool = True) -> subprocess.Popen:
        """A process registered as a training (with a fixed count, or sharing), alive or gone."""
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        record = {**process_identity(proc.pid), "threads": threads}
        if not alive:
            proc.kill()
            proc.wait()
        (tmp_path / "trainings").mkdir(exist_ok=True)
        (tmp_path / "trainings" / f"{proc.pid}-test.json").write_text(json.dumps(record))
        sleepers.append(proc)
        return proc

    yield other_training
    for proc in sleepers:
        proc.kill()
        proc.wait()
    torch.set_num_threads(before)


def test_a_training_takes_the_cores_the_others_leave_and_gives_them_back(machine, monkeypatch, capsys):
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    torch.set_num_threads(8)  # torch's own count on an 8-core machine
    sharing = machine()
    machine(threads=2)  # OMP_NUM_THREADS=2: it keeps its two
    gone = machine(alive=False)  # killed without unregistering
    (cores.trainings_folder() / "stray.json").write_text('["not a record"]')  # ignored
    with cores.CoreShare() as share:
        assert torch.get_num_threads() == 3  # (8 - 2) // (it and the other sharing one)
        assert not any(str(gone.pid) in p.name for p in share.folder.iterdir())  # a gone one's record removed
        assert "3 trainings on this machine: it uses 3 of the 8 cores now" in capsys.readouterr().err
        sharing.kill()
        sharing.wait()
        share.adjust()  # within CHECK_SECONDS of the last look: nothing looked at
        assert torch.get_num_threads() == 3
        share.adjust(force=True)
        assert torch.get_num_threads() == 6  # what the fixed one leaves
        assert "2 trainings on this machine: it uses 6 of the 8 cores now" in capsys.readouterr().err
        share.adjust(force=True)
        assert capsys.readouterr().err == ""  # said once per change
    assert torch.get_num_threads() == 8 and not share.entry.exists()


def test_omp_num_threads_fixes_a_trainings_count_and_others_count_it(machine, monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    torch.set_num_threads(8)
    machine()
    machine()
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    with cores.CoreShare() as fixed:
        fixed.adjust(force=True)
        assert torch.get_num_threads() == 8  # its choice stands (torch's count here), whoever else trains
        assert json.loads(fixed.entry.read_text())["threads"] == 5  # what the others count


def test_a_training_gives_up_cores_while_another_trains_and_takes_them_back_when_it_ends(machine, monkeypatch):
    """Through workflow.train, the one training call of every script: the count each epoch trained with."""
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(cores, "CHECK_SECONDS", 0.0)
    torch.set_num_threads(2)
    other = machine()
    x, y = separable(n=200)
    data = workflow.TrainingData(engine.to_tensors(x[:150], y[:150], torch.device("cpu")),
                                 engine.to_tensors(x[150:], y[150:], torch.device("cpu")), 10)
    threads = []

    def on_epoch(record):
        threads.append(torch.get_num_threads())
        if record["epoch"] == 1:  # the other training ends
            other.kill()
            other.wait()
        return False

    workflow.train(from_flags("mlp", 2, {}), data, on_epoch=on_epoch, progress=False)
    assert threads == [1, 2]
    assert torch.get_num_threads() == 2 and list((cores.trainings_folder()).glob("*.json")) == []


def test_without_a_writable_temp_folder_a_training_keeps_torchs_count(machine, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(cores, "trainings_folder", lambda: tmp_path / "a-file" / "trainings")
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    torch.set_num_threads(3)
    with cores.CoreShare() as share:
        share.adjust(force=True)
        assert torch.get_num_threads() == 3
