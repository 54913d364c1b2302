"""The GPU check script runs end to end at smoke sizes and records what it promises (no timing is asserted)."""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/"benchmarks"/"results"
sys.path.insert(0, str(ROOT/"benchmarks"))


@pytest.fixture(scope="module")
def smoke_rows(tmp_path_factory):
    "The rows `benchmarks/gpu_check.py --smoke` appends to its CSV (a temporary file here, not benchmarks/results)."
    out = tmp_path_factory.mktemp("gpu-check")/"smoke.csv"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    # A generous budget: on a machine shared with other work the sections run slowly, and a section cut short by the
    # budget is recorded as an error (a quiet machine needs about 90 s)
    done = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"gpu_check.py"), "--smoke", "--budget", "1800",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=2400)
    assert out.is_file(), f"no CSV written; output:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    with out.open() as handle: rows = list(csv.DictReader(handle))
    return done, rows


def test_smoke_run_succeeds_and_prints_a_summary(smoke_rows):
    done, rows = smoke_rows
    errors = [(r["section"], r["model"], r["error"]) for r in rows if r["error"]]
    assert done.returncode == 0 and not errors, f"{errors}\n{done.stdout[-3000:]}"
    assert "targets (issue 'Performance', for an H100/H200)" in done.stdout
    assert "rows appended to" in done.stdout


def test_csv_has_the_promised_columns_and_sections(smoke_rows):
    from gpu_check import COLUMNS, SMOKE_MODELS
    _, rows = smoke_rows
    assert list(rows[0]) == COLUMNS
    sections = {"environment", "throughput", "input_pipeline", "input_pipeline_fed", "smoke_models", "targets"}
    assert sections <= {r["section"] for r in rows}
    assert len({r["run"] for r in rows}) == 1 and rows[0]["hardware"].endswith("-smoke")
    throughput = [r for r in rows if r["section"] == "throughput" and r["images_per_s"]]
    # float32 and mixed precision + XLA, each at the first batch and at least one doubled batch
    for precision, xla in (("float32", "False"), ("mixed_float16", "True")):
        batches = sorted(int(r["batch"]) for r in throughput if r["precision"] == precision and r["xla"] == xla)
        assert len(batches) >= 2 and batches[1] == 2 * batches[0], (precision, batches)
    smoke = {r["model"]: r for r in rows if r["section"] == "smoke_models"}
    assert set(smoke) == set(SMOKE_MODELS)
    assert all("1 epoch on" in r["note"] and "loss" in r["note"] for r in smoke.values())


def test_throughputs_are_finite_and_positive(smoke_rows):
    _, rows = smoke_rows
    timed = ("throughput", "input_pipeline", "input_pipeline_fed")
    measured = [r for r in rows if r["section"] in timed and r["images_per_s"]]
    assert len(measured) >= 7
    for row in measured:
        value = float(row["images_per_s"])
        assert math.isfinite(value) and value > 0, row
        assert float(row["seconds"]) > 0, row
    pipeline_notes = [r["note"] for r in rows if r["section"] == "input_pipeline"]
    assert {"first epoch", "cached epochs"} <= {note.split(" (")[0] for note in pipeline_notes}
    assert all("synthetic" in n for n in pipeline_notes)  # the data source is named


def test_targets_are_ratios_of_the_recorded_figures(smoke_rows):
    _, rows = smoke_rows
    targets = [r for r in rows if r["section"] == "targets"]
    assert [r["target"] for r in targets][:3] == [">= 2000 images/s", ">= 2.5x", ">= 2.5x"]
    best = lambda precision: max(float(r["images_per_s"]) for r in rows
                                 if r["section"] == "throughput" and r["precision"] == precision and r["images_per_s"])
    assert float(targets[0]["ratio"]) == pytest.approx(best("mixed_float16"), rel=0.01)
    assert float(targets[1]["ratio"]) == pytest.approx(best("mixed_float16") / best("float32"), rel=0.01)
    assert all("this is not one" in r["note"] for r in targets if r["ratio"])  # CPU figures never pass for GPU ones


def test_hardware_names_and_results_files():
    import tempfile
    from _common import hardware_slug, output_csv, results_file
    assert hardware_slug("NVIDIA H200") == "nvidia-h200"
    assert hardware_slug("NVIDIA H100 80GB HBM3", gpus=2) == "2x-nvidia-h100-80gb-hbm3"
    assert hardware_slug(None) == f"cpu-{os.cpu_count()}cores"
    assert results_file("gpu_check", "nvidia-h200") == ROOT/"benchmarks"/"results"/"gpu_check-nvidia-h200.csv"
    # --smoke never writes to benchmarks/results: --out, else a new temporary folder
    smoke = output_csv("input_pipeline", "cpu-2cores-smoke", None, smoke=True)
    assert smoke.name == "input_pipeline-cpu-2cores-smoke.csv" and smoke.parent.is_dir()
    assert smoke.parent.parent == Path(tempfile.gettempdir()) and smoke.parent != RESULTS
    smoke.parent.rmdir()
    assert output_csv("input_pipeline", "cpu-2cores", "x/y.csv", smoke=True) == Path("x/y.csv")
    assert output_csv("input_pipeline", "cpu-2cores", None, smoke=False) == RESULTS/"input_pipeline-cpu-2cores.csv"


def test_missing_cells_are_explained(tmp_path):
    env = dict(os.environ, BLOODCANCER_DEV_CELLS=str(tmp_path/"absent"))
    done = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"input_pipeline.py")], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert done.returncode != 0
    assert str(tmp_path/"absent") in done.stderr and "BLOODCANCER_DEV_CELLS" in done.stderr and "--data" in done.stderr
