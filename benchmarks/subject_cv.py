"""Paper recipe against robust recipe under subject 3-fold cross-validation (issue 13), on real C-NMC cells.

Trains every fold of a subject cross-validation (`bloodcancer.train.train_folds`: every patient is held out once, the
validation patients are class-balanced) for each recipe of `--recipes` with the same budget (model, input size, epochs,
seed, random start), pools the out-of-fold predictions (`bloodcancer.evaluate.evaluate_folds`: every cell is scored
once, by a model that never saw its patient) and prints, per recipe, the pooled weighted F1, balanced accuracy, AUROC
and patient-level accuracy with their subject-bootstrap 95% intervals, and the spread over the folds. Writes one row
per recipe to benchmarks/results/subject_cv-<hardware>.csv and ends with one line
`paper_recipe_wf1=<x> robust_recipe_wf1=<y>`.

Runs live outside the repository (`--outputs`, default `<tmp>/bloodcancer-subject-cv`) under names that hold every
setting and a hash of the resolved recipe, so an interrupted benchmark resumes (complete folds are skipped, an
unfinished fold resumes from its last epoch) and a changed recipe never reuses another recipe's folds.
`--smoke` runs the same code on a tiny synthetic data set (`bloodcancer.demo.tiny_cnmc`, AlexNet, 32 px, 2 epochs) in
seconds; its rows say SYNTHETIC and go to the outputs folder, never to benchmarks/results/.

Usage: python benchmarks/subject_cv.py [--data PATH] [--folds 3] [--image-size 96] [--epochs 12]
       [--model EfficientNetB0] [--recipes paper robust] [--outputs DIR] [--seed 42] [--smoke]
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
REPORTED = ("weighted_f1", "balanced_accuracy", "roc_auc") # Pooled metrics with a subject-bootstrap interval
SETTINGS = ("batch_size", "input_mode") # Settings of a row besides the recipe fields (`RECIPES`)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells with subject ids in their names (default: "
                        "bloodcancer.core.dev_cells(), the real development cells)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--model", default="EfficientNetB0")
    parser.add_argument("--weights", default="none", help="none (from scratch, the benchmark's setting) or imagenet")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--recipes", nargs="+", default=["paper", "robust"])
    parser.add_argument("--outputs", default=str(Path(tempfile.gettempdir())/"bloodcancer-subject-cv"),
                        help="Folder of the runs (outside the repository)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-boot", type=int, default=1000, help="Subject-bootstrap replicates of the intervals")
    parser.add_argument("--out", default=None,
                        help="CSV to write (default: benchmarks/results/subject_cv-<hardware>.csv"
                        "; with --smoke: <outputs>/subject_cv-smoke-<hardware>.csv)")
    parser.add_argument("--smoke", action="store_true", help="Tiny synthetic data, AlexNet, 32 px, 2 epochs: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.epochs, args.batch_size, args.n_boot = "AlexNet", 32, 2, 8, 200
    return args


def hardware() -> str:
    "`gpu-<n>x<name>` or `cpu-<n>cores`: the part of the CSV's name that says where it was measured."
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        return f"gpu-{len(gpus)}x" + "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu-{cores}cores"


def data_folder(args) -> tuple[Path, str]:
    "The cells to cross-validate on and how to describe them; exits with a clear message when they are absent."
    from bloodcancer.core import dev_cells
    from bloodcancer.demo import tiny_cnmc
    if args.smoke: return tiny_cnmc(), "SYNTHETIC cells (bloodcancer.demo.tiny_cnmc, not C-NMC)"
    if args.data is None:
        found = dev_cells()
        if found is None:
            sys.exit("The real C-NMC development cells were not found (../shared/data/cnmc-dev beside the project, or "
                     "$BLOODCANCER_DEV_CELLS): pass --data PATH (a folder of cells whose names carry subject ids), "
                     "or --smoke for a synthetic check.")
        return found, f"real C-NMC cells ({found.name})"
    folder = Path(args.data).expanduser().resolve()
    if not folder.is_dir(): sys.exit(f"--data {args.data}: no such folder; pass a folder of cells (all/ and hem/ "
                                     "subfolders, or a C-NMC download) whose file names carry subject ids")
    return folder, f"cells of {folder.name}"


def base_config(args, data:Path):
    "The settings every candidate shares (the budget): model, size, epochs, seed, random start, subject folds."
    from bloodcancer.config import TrainConfig
    return TrainConfig(model=args.model, data=str(data), split="subject", folds=args.folds, image_size=args.image_size,
                       epochs=args.epochs, batch_size=args.batch_size, weights=args.weights, seed=args.seed,
                       outputs=str(Path(args.outputs).expanduser().resolve()), verbose=2,
                       denoise="none" if args.smoke else "median")


def run_name(name:str, config) -> str:
    "A folder name that holds the budget and a hash of every resolved setting: runs of other settings never mix."
    resolved = config.resolved().to_dict()
    settings = {k: v for k, v in resolved.items() if k not in ("outputs", "run_name", "verbose", "fold", "strategy")}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return (f"subject_cv-{name}-{config.model}-{config.image_size}px-{config.epochs}ep-{config.folds}folds-"
            f"seed{config.seed}-{key}")


def patient_interval(calls:list[dict], n_boot:int, seed:int, confidence:float=0.95) -> tuple[float, float]:
    "Bootstrap interval of the share of patients called right, resampling patients within their class."
    import numpy as np
    from bloodcancer.metrics import resample_weights
    pure = [c for c in calls if c["pure"]]
    if not pure: return float("nan"), float("nan")
    weights = resample_weights([c["subject"] for c in pure], n_boot, seed, [c["label"] for c in pure])
    correct = np.array([bool(c["correct"]) for c in pure], float)
    shares = weights @ correct / weights.sum(1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return float(low), float(high)


def cross_validate(name:str, # Row name: a recipe, or a candidate of the screening
                   config, # A `TrainConfig` with folds, the recipe and any explicit settings
                   source:str, # How the data is described in the row
                   n_boot:int=1000, # Subject-bootstrap replicates
                  ) -> dict:
    "Train the folds that are not complete yet, pool their out-of-fold predictions, and return the CSV row."
    from bloodcancer.config import RECIPES
    from bloodcancer.evaluate import evaluate_folds
    from bloodcancer.train import train_folds
    config = config.replace(run_name=run_name(name, config))
    started = time.time()
    folds = train_folds(config)
    trained_s = time.time() - started
    evaluation = evaluate_folds(folds[0].parent, n_boot=n_boot, seed=config.seed, figures=False)
    m = evaluation.metrics
    configs = [json.loads((f/"config.json").read_text()) for f in folds]
    low, high = patient_interval(m["subject_calls"], n_boot, config.seed)
    resolved = config.resolved()
    settings = {k: getattr(resolved, k) for k in (*RECIPES[config.recipe], *SETTINGS)}
    row = dict(name=name, recipe=config.recipe, **settings,
               model=configs[0]["model"], image_size=config.image_size, epochs=config.epochs, folds=config.folds,
               seed=config.seed, weights=config.weights, data=source, n_images=m["n_images"],
               n_subjects=m["n_subjects_scored"])
    for key in REPORTED:
        row |= {key: m[key], f"{key}_low": m["intervals"][key][0], f"{key}_high": m["intervals"][key][1]}
    row |= dict(subject_accuracy=m["subject_accuracy"], subject_accuracy_low=low, subject_accuracy_high=high,
                subjects_right=sum(bool(c["correct"]) for c in m["subject_calls"] if c["pure"]))
    for key in (*REPORTED, "subject_accuracy"):
        spread = m["fold_spread"].get(key, {})
        row |= {f"{key}_fold_mean": spread.get("mean"), f"{key}_fold_sd": spread.get("sd")}
    row |= dict(epochs_trained=sum(c.get("epochs_completed") or 0 for c in configs),
                best_epochs=" ".join(str(c.get("best_epoch")) for c in configs),
                train_s=round(sum(c.get("duration_s") or 0 for c in configs), 1), wall_s_this_call=round(trained_s, 1),
                hardware=hardware(), git_commit=configs[0].get("git_commit"), run=str(folds[0].parent),
                finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    return row


def summary(row:dict) -> str:
    "The printed lines of one row: pooled metrics with intervals, patients, and the spread over the folds."
    from bloodcancer.config import RECIPES
    interval = lambda k: f"{row[k]:.3f} [{row[k + '_low']:.3f}, {row[k + '_high']:.3f}]"
    spread = lambda k: f"{row[k + '_fold_mean']:.3f} +- {row[k + '_fold_sd']:.3f}"
    return "\n".join([
        f"{row['name']}: {row['model']} {row['image_size']} px, {row['epochs']} epochs, {row['folds']} subject folds, "
        f"seed {row['seed']}, weights {row['weights']}, on {row['data']}",
        "  settings: " + " ".join(f"{k}={row[k]}" for k in (*RECIPES["paper"], *SETTINGS) if k in row),
        f"  pooled out-of-fold ({row['n_images']} cells, 95% subject-bootstrap intervals): weighted F1 "
        f"{interval('weighted_f1')}, balanced accuracy {interval('balanced_accuracy')}, AUROC {interval('roc_auc')}",
        f"  patients called right: {row['subjects_right']} of {row['n_subjects']} = {interval('subject_accuracy')}",
        f"  per fold (mean +- sd over {row['folds']}): weighted F1 {spread('weighted_f1')}, balanced accuracy "
        f"{spread('balanced_accuracy')}, AUROC {spread('roc_auc')}, patients {spread('subject_accuracy')}",
        f"  best epochs {row['best_epochs']}; training {row['train_s']:.0f} s in all ({row['hardware']})"])


def main(argv=None):
    args = parse_args(argv)
    import pandas as pd
    from bloodcancer.config import RECIPES
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown: sys.exit(f"--recipes {' '.join(unknown)}: unknown; the recipes are {', '.join(RECIPES)}")
    data, source = data_folder(args)
    base = base_config(args, data)
    rows = []
    for recipe in args.recipes:
        print(f"== recipe {recipe} ==", flush=True)
        rows.append(cross_validate(recipe, base.replace(recipe=recipe), source, args.n_boot))
    suffix = "smoke-" if args.smoke else ""
    default = (Path(args.outputs) if args.smoke else ROOT/"benchmarks"/"results")/f"subject_cv-{suffix}{hardware()}.csv"
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print()
    for row in rows: print(summary(row))
    print(f"written to {out}")
    wf1 = {row["name"]: row["weighted_f1"] for row in rows}
    print(" ".join(f"{r}_recipe_wf1={wf1[r]:.4f}" for r in ("paper", "robust") if r in wf1))


if __name__ == "__main__":
    main()
