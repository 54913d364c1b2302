"""Cost of each training augmentation of bloodcancer.preprocess, in milliseconds per image, on real C-NMC cells.

Prepares a batch of real cells as the pipeline caches them (224 x 224, median denoised), then times
`augment_batch(batch, seed, [name])` for every name of `AUGMENTATIONS` but mixup, all of them together, and `mixup`
on the float batch and its one-hot labels. OpenCV runs on one thread, as inside the tf.data pipeline. Each
measurement is repeated (`--repeats`, new seeds each time) and the best time counts; the spread is shown. Prints a
table and writes it to benchmarks/results/augmentations.csv. Without the real cells (`--data` missing) it uses
synthetic cells and says so. `--smoke` checks the script in seconds: 4 tiny synthetic cells at 32 pixels, one repeat,
the table to `--out` or a temporary folder.

Usage: python benchmarks/augmentations.py [--data PATH] [--image-size 224] [--batch-size 40] [--repeats 5] [--out CSV]
       python benchmarks/augmentations.py --smoke [--out CSV]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/"benchmarks"))
from _common import parse_with_smoke, smoke_cells  # noqa: E402

SMOKE = dict(image_size=32, batch_size=4, repeats=1)  # --smoke's defaults: seconds on any machine


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells (all/ and hem/ subfolders); relative to the "
                        "repository root. Defaults to ../shared/data/cnmc-dev (tiny synthetic cells with --smoke)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="CSV to write. Defaults to benchmarks/results/augmentations.csv "
                        "(with --smoke: one in a temporary folder)")
    args = parse_with_smoke(parser, argv, SMOKE, rows="")
    if args.out is None:
        folder = Path(tempfile.mkdtemp(prefix="augmentations-smoke-")) if args.smoke else ROOT/"benchmarks"/"results"
        args.out = str(folder/"augmentations.csv")
    return args


def cells(data: Path | None, size: int, n: int) -> tuple[np.ndarray, str]:
    "A batch of `n` cells prepared as the pipeline caches them, and where they came from (None: tiny synthetic ones)."
    from bloodcancer.data import DATASET_LABELS, index_dataset, make_synthetic_cnmc
    from bloodcancer.preprocess import load_image, preprocess_image
    if data is None: data, why = smoke_cells(), "--smoke"
    elif data.is_dir(): why = ""
    else: data, why = make_synthetic_cnmc(Path(tempfile.mkdtemp()), seed=0), f"no cells at {data}"
    index = index_dataset(data)
    kind = str(index["dataset"].iloc[0])
    label = DATASET_LABELS.get(kind, kind)
    source = f"{f'real {label} cells' if kind == 'C-NMC' else label} from {data}"
    if why: source += f" ({why})"
    index = index[index["label"].ne("") & index["problem"].eq("")]
    chosen = index.sample(n=min(n, len(index)), random_state=0)
    return np.stack([preprocess_image(load_image(p), size) for p in chosen["path"]]), source


def best_ms_per_image(function, batch, repeats: int) -> tuple[float, float]:
    "Best and median milliseconds per image of `function(batch, seed)` over `repeats` runs with new seeds."
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        function(batch, (seed, 7))
        times.append((time.perf_counter() - start) * 1000 / len(batch))
    return min(times), float(np.median(times))


def main(argv=None):
    import cv2
    from bloodcancer.preprocess import AUGMENTATIONS, augment_batch, mixup
    args = parse_args(argv)
    cv2.setNumThreads(1)
    data = Path(args.data or ROOT.parent/"shared"/"data"/"cnmc-dev") if args.data or not args.smoke else None
    data = data if data is None or data.is_absolute() else (ROOT/data).resolve()
    batch, source = cells(data, args.image_size, args.batch_size)
    labels = np.eye(2, dtype=np.float32)[np.arange(len(batch)) % 2]
    as_float = batch.astype(np.float32)
    steps = {name: (lambda b, s, name=name: augment_batch(b, s, [name])) for name in AUGMENTATIONS if name != "mixup"}
    steps["all but mixup"] = lambda b, s: augment_batch(b, s, [n for n in AUGMENTATIONS if n != "mixup"])
    steps["mixup"] = lambda b, s: mixup(as_float, labels, s)
    augment_batch(batch, 0, list(AUGMENTATIONS))  # warm up (imports, OpenCV)
    rows = []
    for name, function in steps.items():
        best, median = best_ms_per_image(function, batch, args.repeats)
        rows.append(dict(augmentation=name, ms_per_image_best=round(best, 3), ms_per_image_median=round(median, 3),
                         image_size=args.image_size, batch_size=len(batch), repeats=args.repeats, source=source,
                         machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                 "OpenCV 1 thread"))
    table = pd.DataFrame(rows)
    print(f"Augmentation cost per {args.image_size}-pixel image, batches of {len(batch)} {source}; "
          f"best (median) of {args.repeats}:")
    for row in table.itertuples():
        print(f"  {row.augmentation:14s} {row.ms_per_image_best:7.3f} ms ({row.ms_per_image_median:.3f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
