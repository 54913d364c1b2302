"""Trust under faults, the training side (issue 11): each case caused for real, through the `bloodcancer` command as a
user runs it, asserting on what matters (exit status, one line, nothing written, the run that follows). The kill
inside an epoch and two processes on one run folder are in tests/test_train.py; the data side (bombs, archives) in
tests/test_faults_data.py; crafted model files and mismatched models in tests/test_predict.py."""
import json, os, resource, signal, subprocess, sys
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def bloodcancer(*args, cwd=None, preexec_fn=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("bloodcancer")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd,
                          preexec_fn=preexec_fn, timeout=600)


def one_line(result, command: str) -> str:
    "The single line a refused command prints (exit status 2, no traceback)."
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr[-3000:])
    assert lines[0].startswith(f"bloodcancer {command}: ")
    return lines[0]


def tiny(tmp_path, **changes) -> list[str]:
    from bloodcancer.demo import tiny_cnmc
    options = dict(model="AlexNet", data=tiny_cnmc(), image_size=32, batch_size=8, epochs=1, weights="none",
                   outputs=tmp_path/"outputs", denoise="none", verbose=0) | changes
    return ["train"] + [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def test_an_image_size_too_large_is_refused_before_anything_is_written(tmp_path):
    line = one_line(bloodcancer(*tiny(tmp_path, image_size=100_000)), "train")
    assert "image_size=100000 is larger than 1024" in line
    assert not (tmp_path/"outputs").exists()  # no unfinished run folder left to block the next run
    assert bloodcancer(*tiny(tmp_path)).returncode == 0  # the default run name is free


def test_a_run_that_failed_before_its_first_epoch_restarts_with_other_settings(tmp_path):
    failed = bloodcancer(*tiny(tmp_path, weights=tmp_path/"missing.weights.h5"))
    assert failed.returncode == 2 and "neither 'imagenet'" in failed.stderr
    run = tmp_path/"outputs"/"synthetic-paper-seed42"/"AlexNet"
    run.mkdir(parents=True)  # a run killed while building its model: config written, no epoch done
    (run/"config.json").write_text(json.dumps(dict(status="running", epochs_completed=0, weights="imagenet")))
    retried = bloodcancer(*tiny(tmp_path))
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert "Restarting" not in retried.stdout  # quiet run
    config = json.loads((run/"config.json").read_text())
    assert (config["status"], config["weights"], config["epochs_completed"]) == ("complete", None, 1)


def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path):
    assert bloodcancer(*tiny(tmp_path)).returncode == 0
    run = tmp_path/"outputs"/"synthetic-paper-seed42"/"AlexNet"
    (run/"config.json").write_text("[1, 2, 3]")
    assert "holds a JSON list, not the object" in one_line(bloodcancer("evaluate", run), "evaluate")
    assert "holds a JSON list, not the object" in one_line(bloodcancer(*tiny(tmp_path)), "train")


def test_an_outputs_path_under_a_file_is_one_line(tmp_path):
    (tmp_path/"a-file").write_text("not a folder")
    line = one_line(bloodcancer(*tiny(tmp_path, outputs=tmp_path/"a-file"/"outputs")), "train")
    assert "a-file" in line and "is a file, not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: see the full-disk case instead")
def test_a_read_only_outputs_folder_is_one_line(tmp_path):
    (tmp_path/"ro").mkdir(); (tmp_path/"ro").chmod(0o500)
    line = one_line(bloodcancer(*tiny(tmp_path, outputs=tmp_path/"ro"/"outputs")), "train")
    assert "choose a folder you can write to" in line


def test_a_disk_filling_up_while_training_is_one_line(tmp_path):
    def small_disk():  # a file-size limit makes the writes fail part-way as a full disk does, for root too
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    line = one_line(bloodcancer(*tiny(tmp_path), preexec_fn=small_disk), "train")
    assert "free space or choose another disk" in line
