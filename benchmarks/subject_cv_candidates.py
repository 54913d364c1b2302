"""Screening of the robust recipe's candidate settings by subject cross-validation on the development cells (issue 13).

Each candidate is the paper recipe with some settings changed (`CANDIDATES`: augmentations, the validation monitor,
label smoothing, the learning-rate schedule, the learning rate, the batch size, the input mode, the head's
penalties). Each is cross-validated exactly as `benchmarks/subject_cv.py` does (same code: `train_folds`, pooled
out-of-fold `evaluate_folds`), by default cheaply: AlexNet at 64 px, 10 epochs, 3 subject folds, from scratch. Rows
are added to (or replaced in) benchmarks/results/subject_cv-candidates-<hardware>.csv, keyed by candidate, model,
size and epochs, so a screen at another setting (e.g. the benchmark's own, EfficientNetB0 96 px 12 epochs) adds its
rows beside the cheap ones. Only development cells are used: the recipe is judged later on patients nobody here has.

Usage: python benchmarks/subject_cv_candidates.py [--only NAME ...] [--model AlexNet] [--image-size 64] [--epochs 10]
       [--folds 3] [--outputs DIR] [--data PATH] [--seed 42] [--list] [--smoke]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subject_cv import ROOT, base_config, cross_validate, data_folder, hardware, summary  # noqa: E402

ALL_NEW = "paper,stain,brightness,blur,scale" # Every new image augmentation but mixup
ROBUST = dict(augmentations="paper,stain,brightness", learning_rate=3e-3) # The robust recipe's changes
CANDIDATES = { # name -> settings changed from the paper recipe (the other recipe fields keep the paper's values)
    "paper": {},
    "first-guess": dict(augmentations=ALL_NEW, monitor="balanced_val_loss", label_smoothing=0.1, schedule="cosine"),
    "stain": dict(augmentations="paper,stain"),
    "brightness": dict(augmentations="paper,brightness"),
    "blur": dict(augmentations="paper,blur"),
    "scale": dict(augmentations="paper,scale"),
    "mixup": dict(augmentations="paper,mixup"),
    "all-augmentations": dict(augmentations=ALL_NEW),
    "all-augmentations+mixup": dict(augmentations=ALL_NEW + ",mixup"),
    "balanced-monitor": dict(monitor="balanced_val_loss"),
    "smoothing": dict(label_smoothing=0.1),
    "cosine": dict(schedule="cosine"),
    # Combinations with stain jitter, the single change that helped most in the first screen
    "stain+brightness": dict(augmentations="paper,stain,brightness"),
    "stain+smoothing": dict(augmentations="paper,stain", label_smoothing=0.1),
    "stain+balanced-monitor": dict(augmentations="paper,stain", monitor="balanced_val_loss"),
    "stain+cosine": dict(augmentations="paper,stain", schedule="cosine"),
    "stain+brightness+smoothing": dict(augmentations="paper,stain,brightness", label_smoothing=0.1),
    # The robust recipe's runs all picked their last epoch (still learning): more steps or larger ones, same epochs
    "robust+lr3e-3": dict(augmentations="paper,stain,brightness", learning_rate=3e-3),
    "robust+batch16": dict(augmentations="paper,stain,brightness", batch_size=16),
    "robust+lr1e-2": dict(augmentations="paper,stain,brightness", learning_rate=1e-2),
    "robust+lr3e-3+cosine": dict(augmentations="paper,stain,brightness", learning_rate=3e-3, schedule="cosine"),
    # On top of the robust recipe (ROBUST). Patients still differ in brightness and stain strength: remove them
    "robust+grayworld": ROBUST | dict(input_mode="rgb-grayworld"),
    # The paper's head penalties make up most of the loss from scratch (7.6 at the start, 1.5 after 12 epochs)
    "robust+head-reg-0.1": ROBUST | dict(head_regularization=0.1),
    "robust+head-reg-0": ROBUST | dict(head_regularization=0.0),
    # Validation in inference mode read moving batch-norm statistics that lag the weights (val_accuracy stuck at 0.20)
    "robust+recalibrated-validation": ROBUST | dict(recalibrate_bn=True),
    "robust+head-reg-0.1+recalibrated-validation": ROBUST | dict(head_regularization=0.1, recalibrate_bn=True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", default=None,
                        help=f"Candidates to run (default: all): {', '.join(CANDIDATES)}")
    parser.add_argument("--data", default=None, help="Cells (default: the real development cells)")
    parser.add_argument("--model", default="AlexNet")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--outputs", default=str(Path(tempfile.gettempdir())/"bloodcancer-subject-cv-candidates"))
    parser.add_argument("--out", default=None,
                        help="CSV (default: benchmarks/results/subject_cv-candidates-<hardware>.csv)")
    parser.add_argument("--list", action="store_true", help="Print the candidates and exit")
    parser.add_argument("--smoke", action="store_true", help="Tiny synthetic data, AlexNet, 32 px, 2 epochs: seconds; "
                        "the CSV goes to the outputs folder, never to benchmarks/results/")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.epochs, args.batch_size, args.n_boot = "AlexNet", 32, 2, 8, 200
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for name, settings in CANDIDATES.items(): print(f"{name}: {settings or 'the paper recipe'}")
        return
    import pandas as pd
    names = args.only or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown: sys.exit(f"--only {' '.join(unknown)}: unknown; the candidates are {', '.join(CANDIDATES)}")
    data, source = data_folder(args)
    base = base_config(args, data).replace(recipe="paper")
    folder = Path(args.outputs) if args.smoke else ROOT/"benchmarks"/"results"
    default = folder/f"subject_cv-candidates-{hardware()}.csv"
    out = Path(args.out) if args.out else default
    key = ["name", "model", "image_size", "epochs", "folds", "seed"]
    for name in names:
        print(f"== candidate {name}: {CANDIDATES[name] or 'the paper recipe'} ==", flush=True)
        row = cross_validate(name, base.replace(**CANDIDATES[name]), source, args.n_boot)
        del row["recipe"]  # every candidate is the paper recipe with the changes its settings columns show
        print(summary(row), flush=True)
        table = pd.read_csv(out, keep_default_na=False) if out.is_file() else pd.DataFrame(columns=list(row))
        same = pd.Series(True, index=table.index)
        for k in key: same &= table[k].astype(str).eq(str(row[k]))
        table = pd.concat([table[~same], pd.DataFrame([row])], ignore_index=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        print(f"written to {out}", flush=True)


if __name__ == "__main__":
    main()
