"""Training (issue 4): a papermill run leaves every artefact and an executed notebook holding only the run, a run killed
with SIGKILL inside an epoch resumes and trains exactly the planned steps, one process at a time trains a run folder,
and MirroredStrategy / MultiWorkerMirroredStrategy train. The slow parts run in subprocesses."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bloodcancer.data import make_synthetic_cnmc

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
ENV.pop("TF_CONFIG", None)

@pytest.fixture(scope="module")
def small_cnmc(tmp_path_factory) -> Path:
    "A small synthetic C-NMC (64-pixel cells) that the subprocesses below decode quickly."
    return make_synthetic_cnmc(tmp_path_factory.mktemp("small-cnmc"), subjects_all=3, subjects_hem=3,
                               cells_per_subject=6, prelim_subjects=(1, 1), prelim_cells_per_subject=2, final_cells=2,
                               image_size=64, seed=0)


def tiny_arguments(data: Path, outputs: Path, **changes) -> dict:
    return dict(model="AlexNet", data=str(data), image_size=32, batch_size=8, epochs=2, weights="none", seed=0,
                outputs=str(outputs), denoise="none", verbose=2) | changes


def run_python(script: str, *args, env=None, timeout=240) -> subprocess.CompletedProcess:
    found = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env or ENV, capture_output=True,
                           text=True, timeout=timeout)
    assert found.returncode == 0, f"exit {found.returncode}\n{found.stdout[-3000:]}\n{found.stderr[-3000:]}"
    return found


TRAIN = """
import json, sys, time
import tf_keras as keras
from bloodcancer.train import train

class PauseInside(keras.callbacks.Callback):
    "Stops for a long while at batch `batch` of epoch `epoch` (0-based), so that the test can kill the process there."
    def __init__(self, epoch, batch): super().__init__(); self.at = (epoch, batch)
    def on_epoch_begin(self, epoch, logs=None): self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at: print("PAUSED", flush=True); time.sleep(600)

pause = [PauseInside(*map(int, sys.argv[2].split(",")))] if len(sys.argv) > 2 else []
print("RUN", train(**json.loads(sys.argv[1]), callbacks=pause), flush=True)
"""


def start_training(arguments: str, pause_at: str, cwd=ROOT) -> subprocess.Popen:
    "A training process that stops inside epoch/batch `pause_at` (\"epoch,batch\"), once it printed PAUSED."
    process = subprocess.Popen([sys.executable, "-c", TRAIN, arguments, pause_at], cwd=cwd, env=ENV, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    for line in process.stdout:
        if line.startswith("PAUSED"): return process
        assert time.time() < deadline, "the training did not reach the pause in time"
    raise AssertionError(f"the training ended before its pause (exit {process.wait()})")


# --- the run folder, from papermill -----------------------------------------------------------------------------------

def test_papermill_run_writes_every_artefact(small_cnmc, tmp_path):
    outputs = tmp_path/"outputs"
    options = [("model", "AlexNet"), ("data", small_cnmc), ("image_size", 32), ("epochs", 2), ("weights", "none"),
               ("outputs", outputs), ("batch_size", 8), ("denoise", "none"), ("verbose", 2), ("seed", 3)]
    command = [sys.executable, "-m", "papermill", "nbs/03_train.ipynb", str(tmp_path/"out.ipynb"), "--no-progress-bar",
               "--inject-output-path"]
    for name, value in options: command += ["-p", name, str(value)]
    found = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-4000:]
    run = outputs/"synthetic-paper-seed3"/"AlexNet"
    for name in ("config.json", "model.keras", "checkpoints/best.weights.h5", "history.csv", "split.csv",
                 "leakage.json", "training_curves.png", "notebook.ipynb", "logs"):
        assert (run/name).exists(), name
    assert not (run/"backup").exists()
    config = json.loads((run/"config.json").read_text())
    described = (config["status"], config["epochs_completed"], config["model"], config["image_size"])
    assert described == ("complete", 2, "AlexNet", 32)
    assert (config["weights"], config["dataset"], config["split"], config["seed"]) == (None, "synthetic", "paper", 3)
    for key in ("data_fingerprint", "versions", "paper_config", "created", "input_scaling", "class_names",
                "git_commit"):
        assert key in config, key
    history = pd.read_csv(run/"history.csv")
    assert history["epoch"].tolist() == [0, 1] and history["steps"].nunique() == 1 and history["steps"].iloc[0] > 0
    executed = json.loads((run/"notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["model"] == "AlexNet"
    outputs_of_cells = [output for cell in executed["cells"] for output in cell.get("outputs", [])]
    assert not any(output.get("output_type") == "error" for output in outputs_of_cells)
    # Only the run's own cells ran: no example, test or fixture output in the record.
    with_output = [cell for cell in executed["cells"] if cell["cell_type"] == "code" and cell.get("outputs")]
    assert with_output and all("#| run" in "".join(cell["source"]) for cell in with_output), \
        [("".join(cell["source"])[:80]) for cell in with_output if "#| run" not in "".join(cell["source"])]
    printed = "".join("".join(o.get("text", "")) for cell in with_output for o in cell["outputs"])
    assert "epoch 1/2: loss" in printed and "epoch 2/2: loss" in printed


# --- resume after a kill ----------------------------------------------------------------------------------------------

def test_run_killed_inside_an_epoch_resumes_and_trains_exactly_the_planned_steps(small_cnmc, tmp_path):
    arguments = json.dumps(tiny_arguments(small_cnmc, tmp_path/"killed", epochs=3))
    run = tmp_path/"killed"/"synthetic-paper-seed0"/"AlexNet"
    first = start_training(arguments, "1,2")  # inside the second epoch, after three of its batches
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert json.loads((run/"config.json").read_text())["status"] == "running"
    assert not (run/"model.keras").exists()

    resumed = run_python(TRAIN, arguments)
    assert "Resuming" in resumed.stdout and "took over the lock of process" in resumed.stdout
    assert "epoch 1/3:" not in resumed.stdout and "epoch 2/3:" in resumed.stdout  # epoch 2 is trained again, whole
    config = json.loads((run/"config.json").read_text())
    assert (config["status"], config["epochs_completed"], config["resumes"]) == ("complete", 3, 1)
    planned = -(-config["n_images"]["train"] // 8)
    history = pd.read_csv(run/"history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert history["steps"].tolist() == [planned] * 3 and config["steps_trained"] == 3 * planned

    # The same run never interrupted ends with the same model: the resumed epochs saw the same batches.
    run_python(TRAIN, json.dumps(tiny_arguments(small_cnmc, tmp_path/"whole", epochs=3)))
    whole = pd.read_csv(tmp_path/"whole"/"synthetic-paper-seed0"/"AlexNet"/"history.csv")
    np.testing.assert_array_equal(history[["loss", "accuracy", "val_loss"]], whole[["loss", "accuracy", "val_loss"]])
    with pytest.raises(subprocess.CalledProcessError):  # complete: never trained over
        subprocess.run([sys.executable, "-c", TRAIN, arguments], cwd=ROOT, env=ENV, capture_output=True, check=True,
                       timeout=240)


def test_a_second_process_on_a_run_folder_is_refused_naming_the_first(small_cnmc, tmp_path):
    arguments = tiny_arguments(small_cnmc, tmp_path, epochs=2)
    first = start_training(json.dumps(arguments), "0,1")
    try:
        options = [f"--{k.replace('_', '-')}={v}" for k, v in arguments.items()]
        second = subprocess.run([str(Path(sys.executable).with_name("bloodcancer")), "train", *options], env=ENV,
                                capture_output=True, text=True, timeout=120)
    finally:
        first.kill(); first.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"is in use by process {first.pid}" in second.stderr and "training AlexNet" in second.stderr
    assert "Traceback" not in second.stderr
    history = tmp_path/"synthetic-paper-seed0"/"AlexNet"/"history.csv"
    assert not history.exists()  # the second process trained nothing


# --- several devices, several workers ---------------------------------------------------------------------------------

MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bloodcancer.train import train
print("RUN", train(**json.loads(sys.argv[1])))
"""


def test_mirrored_strategy_over_two_logical_cpus_trains(small_cnmc, tmp_path):
    run_python(MIRRORED, json.dumps(tiny_arguments(small_cnmc, tmp_path, epochs=1, strategy="mirrored")))
    config = json.loads((tmp_path/"synthetic-paper-seed0"/"AlexNet"/"config.json").read_text())
    described = (config["status"], config["strategy_used"], config["replicas"], config["global_batch_size"])
    assert described == ("complete", "mirrored", 2, 16)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets: s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets: s.close()
    return ports


def test_multiworker_strategy_with_two_workers_trains_one_epoch(small_cnmc, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    arguments = json.dumps(tiny_arguments(small_cnmc, tmp_path, epochs=1))  # strategy "auto" sees TF_CONFIG
    def worker_env(index: int) -> dict:
        return ENV | {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
    workers = [subprocess.Popen([sys.executable, "-c", TRAIN, arguments], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=worker_env(i))
               for i in range(2)]
    try:
        logs = [worker.communicate(timeout=180)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None: worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(log[-2000:] for log in logs)
    config = json.loads((tmp_path/"synthetic-paper-seed0"/"AlexNet"/"config.json").read_text())
    described = (config["status"], config["strategy_used"], config["replicas"], config["epochs_completed"])
    assert described == ("complete", "multiworker", 2, 1)
