"""Training (issue 4): every registry model builds and trains a step, a papermill run leaves every artefact, a run killed
with SIGKILL resumes, and MirroredStrategy / MultiWorkerMirroredStrategy train. The slow parts run in subprocesses."""
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
ENV.pop("BLOODCANCER_NOTEBOOK", None)

# Parameter counts of the backbones (include_top=False), from Keras's documentation of its applications; AlexNet's is
# ours: the five convolutions and the two batch normalisations that stand in for LRN.
BACKBONE_PARAMETERS = {"ResNetRS50": 33_696_288, "RegNetX016": 8_320_640, "ConvNeXtTiny": 27_820_128,
                       "EfficientNetB0": 4_049_571, "InceptionV3": 21_802_784, "Xception": 20_861_480,
                       "VGG19": 20_024_384, "AlexNet": 3_748_608}


@pytest.fixture(scope="module")
def small_cnmc(tmp_path_factory) -> Path:
    "A small synthetic C-NMC (64-pixel cells) that the subprocesses below decode quickly."
    return make_synthetic_cnmc(tmp_path_factory.mktemp("small-cnmc"), subjects_all=3, subjects_hem=3, cells_per_subject=6,
                               prelim_subjects=(1, 1), prelim_cells_per_subject=2, final_cells=2, image_size=64, seed=0)


def tiny_arguments(data: Path, outputs: Path, **changes) -> dict:
    return dict(model="AlexNet", data=str(data), image_size=32, batch_size=8, epochs=2, weights="none", seed=0,
                outputs=str(outputs), denoise="none", verbose=2) | changes


def run_python(script: str, *args, env=None, timeout=240) -> subprocess.CompletedProcess:
    found = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert found.returncode == 0, f"exit {found.returncode}\n{found.stdout[-3000:]}\n{found.stderr[-3000:]}"
    return found


TRAIN = """
import json, sys, time
import tf_keras as keras
from bloodcancer.train import train

class Pause(keras.callbacks.Callback):
    "Makes every epoch last a while, so that the test can kill the process between two epochs."
    def on_epoch_end(self, epoch, logs=None): time.sleep(float(sys.argv[2]))

print("RUN", train(**json.loads(sys.argv[1]), callbacks=[Pause()] if len(sys.argv) > 2 else []))
"""


# --- the registry -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ResNetRS50", "RegNetX016", "AlexNet", "ConvNeXtTiny", "EfficientNetB0", "InceptionV3",
                                  "Xception", "VGG19", "EfficientNetV2B0"])
def test_model_builds_and_trains_one_step(name):
    "At its smallest input, from random weights; the step runs eagerly (tracing the big graphs costs minutes on a CPU)."
    import tf_keras as keras
    from bloodcancer.train import MODELS, backbone_of, build_model
    size = MODELS[name].min_size
    model = build_model(name, size, weights=None, seed=0)
    if name in BACKBONE_PARAMETERS: assert backbone_of(model).count_params() == BACKBONE_PARAMETERS[name]
    assert model.output_shape == (None, 2)
    model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", run_eagerly=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    before = model.get_layer("predictions").kernel.numpy().copy()
    loss = model.train_on_batch(images, np.eye(2, dtype="float32"))
    assert np.isfinite(loss)
    assert not np.array_equal(before, model.get_layer("predictions").kernel.numpy())


def test_every_selectable_size_exists_in_keras():
    import tf_keras as keras
    from bloodcancer.train import MODELS
    for spec in MODELS.values():
        if spec.family.from_keras: assert hasattr(keras.applications, spec.name), spec.name


# --- the run folder, from papermill ------------------------------------------------------------------------------------

def test_papermill_run_writes_every_artefact(small_cnmc, tmp_path):
    outputs = tmp_path/"outputs"
    options = [("model", "AlexNet"), ("data", small_cnmc), ("image_size", 32), ("epochs", 2), ("weights", "none"),
               ("outputs", outputs), ("batch_size", 8), ("denoise", "none"), ("verbose", 2), ("seed", 3)]
    command = [sys.executable, "-m", "papermill", "nbs/03_train.ipynb", str(tmp_path/"out.ipynb"), "--no-progress-bar"]
    for name, value in options: command += ["-p", name, str(value)]
    found = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-4000:]
    run = outputs/"synthetic-paper-seed3"/"AlexNet"
    for name in ("config.json", "model.keras", "checkpoints/best.keras", "history.csv", "split.csv", "leakage.json",
                 "training_curves.png", "notebook.ipynb", "logs"):
        assert (run/name).exists(), name
    assert not (run/"backup").exists()
    config = json.loads((run/"config.json").read_text())
    assert (config["status"], config["epochs_completed"], config["model"], config["image_size"]) == ("complete", 2, "AlexNet", 32)
    assert (config["weights"], config["dataset"], config["split"], config["seed"]) == (None, "synthetic", "paper", 3)
    for key in ("data_fingerprint", "versions", "paper_config", "created", "input_scaling", "class_names", "git_commit"):
        assert key in config, key
    assert pd.read_csv(run/"history.csv")["epoch"].tolist() == [0, 1]
    executed = json.loads((run/"notebook.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["model"] == "AlexNet"
    assert not any(output.get("output_type") == "error" for cell in executed["cells"] for output in cell.get("outputs", []))


# --- resume after a kill ----------------------------------------------------------------------------------------------

def test_run_killed_with_sigkill_resumes_to_the_planned_epochs(small_cnmc, tmp_path):
    arguments = json.dumps(tiny_arguments(small_cnmc, tmp_path, epochs=4))
    run = tmp_path/"synthetic-paper-seed0"/"AlexNet"
    first = subprocess.Popen([sys.executable, "-c", TRAIN, arguments, "4"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while not ((run/"history.csv").is_file() and len((run/"history.csv").read_text().splitlines()) >= 3):
            assert first.poll() is None, "the first training process ended before it could be killed"
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.2)
        time.sleep(1.5)  # the backup of the second epoch is written before the pause
        assert first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None: first.kill()
        first.wait()
    assert json.loads((run/"config.json").read_text())["status"] == "running"
    assert not (run/"model.keras").exists()

    second = run_python(TRAIN, arguments)
    assert "Resuming" in second.stdout and "Epoch 1/4" not in second.stdout and "Epoch 3/4" in second.stdout
    config = json.loads((run/"config.json").read_text())
    assert (config["status"], config["epochs_completed"], config["resumes"]) == ("complete", 4, 1)
    assert pd.read_csv(run/"history.csv")["epoch"].tolist() == [0, 1, 2, 3]
    assert (run/"model.keras").is_file()
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, "-c", TRAIN, arguments], cwd=ROOT, env=ENV, capture_output=True, check=True, timeout=240)


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
    assert (config["status"], config["strategy_used"], config["replicas"], config["global_batch_size"]) == ("complete", "mirrored", 2, 16)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets: s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets: s.close()
    return ports


def test_multiworker_strategy_with_two_workers_trains_one_epoch(small_cnmc, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    arguments = json.dumps(tiny_arguments(small_cnmc, tmp_path, epochs=1))  # strategy "auto" sees TF_CONFIG
    workers = [subprocess.Popen([sys.executable, "-c", TRAIN, arguments], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=ENV | {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    try:
        logs = [worker.communicate(timeout=180)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None: worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(log[-2000:] for log in logs)
    config = json.loads((tmp_path/"synthetic-paper-seed0"/"AlexNet"/"config.json").read_text())
    assert (config["status"], config["strategy_used"], config["replicas"], config["epochs_completed"]) == ("complete", "multiworker", 2, 1)
