"""benchmarks/subject_cv.py (issue 13): `--smoke` cross-validates both recipes on tiny synthetic data, writes one CSV
row per recipe with pooled out-of-fold metrics and their intervals, resumes without retraining, and ends with the
`paper_recipe_wf1=<x> robust_recipe_wf1=<y>` line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bloodcancer.config import RECIPES

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT/"benchmarks"/"subject_cv.py"
LAST_LINE = re.compile(r"paper_recipe_wf1=(\d\.\d{4}) robust_recipe_wf1=(\d\.\d{4})")


def run_script(*args) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subject-cv")
    done = run_script("--smoke", "--outputs", folder/"runs", "--out", folder/"cv.csv")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done.stdout


def test_smoke_writes_one_row_per_recipe_with_pooled_metrics(smoke):
    folder, _ = smoke
    table = pd.read_csv(folder/"cv.csv")
    assert list(table["name"]) == ["paper", "robust"]
    for metric in ("weighted_f1", "balanced_accuracy", "roc_auc", "subject_accuracy"):
        assert {metric, f"{metric}_low", f"{metric}_high", f"{metric}_fold_mean", f"{metric}_fold_sd"} <= set(table)
        assert table[metric].between(0, 1).all()
        assert (table[f"{metric}_low"] <= table[metric] + 1e-9).all()
        assert (table[metric] <= table[f"{metric}_high"] + 1e-9).all()
    assert {"hardware", "train_s", "best_epochs", "model", "image_size", "epochs", "folds", "data"} <= set(table)
    # Every labelled training-fold cell of the tiny data set (6 patients x 8 cells) scored once, out-of-fold
    assert table["n_images"].tolist() == [48, 48] and table["n_subjects"].tolist() == [6, 6]
    assert (table["model"].eq("AlexNet") & table["image_size"].eq(32) & table["folds"].eq(3)).all()
    assert table["data"].str.contains("SYNTHETIC").all()  # never shown as C-NMC
    for recipe in ("paper", "robust"):  # each row trained with its recipe's resolved settings
        row = table.set_index("name").loc[recipe]
        for name, value in RECIPES[recipe].items(): assert str(row[name]) == str(value), (recipe, name)


def test_last_line_reports_both_recipes_weighted_f1(smoke):
    folder, stdout = smoke
    last = stdout.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match, last
    table = pd.read_csv(folder/"cv.csv").set_index("name")
    assert float(match[1]) == pytest.approx(table.loc["paper", "weighted_f1"], abs=5e-5)
    assert float(match[2]) == pytest.approx(table.loc["robust", "weighted_f1"], abs=5e-5)
    assert "pooled out-of-fold" in stdout and "patients called right" in stdout


def test_rerun_resumes_without_training_again(smoke):
    folder, _ = smoke
    again = run_script("--smoke", "--outputs", folder/"runs", "--out", folder/"again.csv", "--recipes", "paper")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("complete, skipped") == 3 and "epoch 1/" not in again.stdout
    before, after = pd.read_csv(folder/"cv.csv"), pd.read_csv(folder/"again.csv")
    assert after.loc[0, "weighted_f1"] == before.loc[0, "weighted_f1"]
    assert again.stdout.strip().splitlines()[-1].startswith("paper_recipe_wf1=")


def test_missing_data_is_one_clear_line(tmp_path):
    done = run_script("--data", tmp_path/"nowhere", "--outputs", tmp_path/"runs")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "nowhere: no such folder" in done.stderr


def test_candidate_screen_smoke_writes_one_row_per_candidate(tmp_path):
    "The screen behind the robust recipe: each candidate is the paper recipe plus its changes, one row each."
    script = ROOT/"benchmarks"/"subject_cv_candidates.py"
    env = os.environ | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), "--smoke", "--only", "paper", "stain+brightness",
                           "--outputs", str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    written = list(tmp_path.glob("subject_cv-candidates-*.csv"))
    assert len(written) == 1, "with --smoke the CSV goes to the outputs folder, never to benchmarks/results/"
    table = pd.read_csv(written[0]).set_index("name")
    assert list(table.index) == ["paper", "stain+brightness"]
    assert table.loc["stain+brightness", "augmentations"] == "paper,stain,brightness"
    assert table.loc["paper", "augmentations"] == "paper" and table["data"].str.contains("SYNTHETIC").all()
    assert table["weighted_f1"].between(0, 1).all() and table["n_images"].eq(48).all()
