"""`bloodcancer reproduce` end to end on the demo profile: it finishes, resumes after a kill, and reports a failing
model."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOODCANCER = str(Path(sys.executable).with_name("bloodcancer"))


def reproduce(tmp_path, *args, **popen):
    env = dict(os.environ, BLOODCANCER_DATA=str(tmp_path/"data"), BLOODCANCER_OUTPUTS=str(tmp_path/"outputs"))
    return subprocess.Popen([BLOODCANCER, "reproduce", "--profile", "demo", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **popen)


def wait_for_step(state_file: Path, key: str, process, timeout=400):
    "Poll pipeline.json until `key` is done."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_file.exists():
            try: steps = json.loads(state_file.read_text())["steps"]
            except (json.JSONDecodeError, KeyError): steps = {}
            if steps.get(key, {}).get("status") == "done": return steps
        if process.poll() is not None: raise AssertionError(f"reproduce ended before {key}:\n{process.stdout.read()}")
        time.sleep(0.5)
    raise AssertionError(f"{key} not done after {timeout} s")


def test_demo_resumes_after_kill_writes_table_and_figures_and_reports_failures(tmp_path):
    run = tmp_path/"outputs"/"demo"
    first = reproduce(tmp_path, "--models", "AlexNet,EfficientNetB0")
    wait_for_step(run/"pipeline.json", "03_train-paper-AlexNet", first)
    os.killpg(first.pid, signal.SIGKILL)  # the pipeline and its notebook kernel, mid-way
    first.wait(timeout=30)
    steps_before = json.loads((run/"pipeline.json").read_text())["steps"]
    done_before = {k for k, v in steps_before.items() if v["status"] == "done"}

    time.sleep(3)  # the orphaned kernel notices its parent is gone and exits, releasing its run folder
    second = reproduce(tmp_path, "--models", "AlexNet,EfficientNetB0")
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output
    # The console: a line per step, a line per epoch, an estimate; no TensorFlow C++ log, no kernel warnings.
    assert "estimate: about" in output and re.search(r"^    epoch 1/\d+: loss [\d.]+", output, re.M), output
    for noise in ("external/local_xla", "cuda_platform", "oneDNN", "TCP without encryption", "Traceback"):
        assert noise not in output, noise
    assert (run/"logs"/"kernels.log").stat().st_size > 0  # where those went
    for key in done_before: assert f"{key}: done earlier, skipped" in output
    steps = json.loads((run/"pipeline.json").read_text())["steps"]
    assert all(v["status"] == "done" for v in steps.values()), steps
    assert "05_figures" in steps and "03_train-subject-AlexNet" in steps
    tables = list(run.glob("**/table1*.md"))
    assert tables, output
    table = tables[0].read_text()
    assert "AlexNet" in table and "EfficientNet" in table and "synthetic" in table.lower()
    figures = [p for p in run.glob("**/*.png") if p.stat().st_size > 0]
    assert len(figures) >= 4
    assert (run/"notebooks"/"05_figures.ipynb").exists() and (run/"notebooks"/"03_train-paper-AlexNet.ipynb").exists()
    # The record holds only the run: in every executed notebook, output only in the step's own cells.
    for notebook in sorted((run/"notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and cell.get("outputs"):
                tags = cell.get("metadata", {}).get("tags", [])
                assert source.startswith("#| run") or "injected-parameters" in tags, (notebook.name, source[:100])
    for config in run.glob("*/*/config.json"):  # every run folder holds its executed notebook
        assert (config.parent/"notebook.ipynb").is_file(), config.parent
    assert (run/"report"/"index.html").is_file() and f"report: {run/'report'/'index.html'}" in output

    # Every setting is checked before the first step: a model that cannot take the size asked for stops the
    # reproduction at once, with one line and nothing run.
    third = reproduce(tmp_path, "--models", "AlexNet,InceptionV3", "--image-size", "32")
    output, _ = third.communicate(timeout=300)
    assert third.returncode == 2 and "InceptionV3 needs inputs of at least 75x75" in output, output
    assert "[1/" not in output and "Traceback" not in output

    # A model failing at run time (weights that fit AlexNet only) is reported, its evaluation skipped, the others
    # complete, the report is built, and the exit status says something failed.
    weights = run/"paper"/"AlexNet"/"model.keras"
    fourth = reproduce(tmp_path, "--models", "AlexNet,EfficientNetB0", "--weights", str(weights), "--run-name", "mixed")
    output, _ = fourth.communicate(timeout=900)
    assert fourth.returncode == 1, output
    steps = json.loads((tmp_path/"outputs"/"mixed"/"pipeline.json").read_text())["steps"]
    assert steps["03_train-paper-EfficientNetB0"]["status"] == "failed", steps
    assert "does not fit EfficientNetB0" in steps["03_train-paper-EfficientNetB0"]["error"]
    assert steps["04_evaluate-paper-EfficientNetB0"]["status"] == "skipped"
    for key in ("03_train-paper-AlexNet", "04_evaluate-paper-AlexNet", "05_figures"):
        assert steps[key]["status"] == "done", key
    assert "FAILED 03_train-paper-EfficientNetB0" in output
