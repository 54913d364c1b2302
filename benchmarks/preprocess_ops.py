"""Cost per image of each preprocessing operation on one CPU core, on real C-NMC cells at 224 x 224.

The figures that notebooks/02_preprocess quotes (the denoisers, the augmentation, the file check) come from here:
every operation of `bloodcancer.preprocess` that the input pipeline runs per image, timed alone on one thread
(OpenCV and TensorFlow limited to one thread), on `--images` cells, repeated `--repeats` times; the median repeat
counts and the spread is shown. The figure is the CPU time of the process per image (on one thread, the work the
operation costs), which other processes on a shared machine disturb far less than the wall-clock time; the
wall-clock time is recorded beside it, and the machine's load (1-minute average) with both.

Operations: the file check (`_check_file`, as `check_readable` calls it), decoding (OpenCV `load_image`; TensorFlow
`decode_image`, the pipeline's route for PNG and BMP), the resize to 224 (OpenCV area; TensorFlow area, as the
pipeline), each denoiser at 224 (`denoise_image`), the stain input mode (`to_input_mode`), and the training
augmentation (`augment_images` on batches of 40).

Rows are appended to benchmarks/results/preprocess_ops-<hardware>.csv. The cells default to $BLOODCANCER_DEV_CELLS,
else ../shared/data/cnmc-dev beside the repository; without them the script explains and exits. `--smoke` checks the
script in seconds: 8 tiny synthetic cells at 32 pixels, one repeat, rows to `--out` or a temporary folder.

Usage: python benchmarks/preprocess_ops.py [--data PATH] [--images 300] [--repeats 3] [--image-size 224] [--out CSV]
       python benchmarks/preprocess_ops.py --smoke [--out CSV]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (append_rows, cells_folder, git_commit, load, output_csv, parse_with_smoke, run_stamp,  # noqa: E402
                     smoke_cells)

COLUMNS = ["run", "hardware", "data", "operation", "images", "cpu_ms_per_image", "cpu_ms_spread", "wall_ms_per_image",
           "load_1min", "note", "commit"]
SMOKE = dict(images=8, repeats=1, image_size=32, batch_size=4)  # --smoke's defaults: seconds on any machine


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells (all/ and hem/ subfolders). Defaults to "
                        "$BLOODCANCER_DEV_CELLS or ../shared/data/cnmc-dev")
    parser.add_argument("--images", type=int, default=300, help="Cells timed per operation (a tenth for wavelet)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224, help="Side the cells are resized to")
    parser.add_argument("--batch-size", type=int, default=40, help="Images per batch of the augmentation")
    parser.add_argument("--out", default=None,
                        help="CSV to append to. Defaults to benchmarks/results/preprocess_ops-<hardware>.csv")
    args = parse_with_smoke(parser, argv, SMOKE)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data = smoke_cells() if args.smoke and args.data is None else cells_folder(args.data)
    size = args.image_size
    import cv2
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    from bloodcancer.data import index_dataset
    from bloodcancer.preprocess import (_check_file, augment_images, denoise_image, load_image, resize_image,
                                        to_input_mode)
    cv2.setNumThreads(1)
    index = index_dataset(data)
    frame = index[index["label"].isin(["all", "hem"])]
    frame = frame.sample(n=min(args.images, len(frame)), random_state=0)
    paths = frame["path"].astype(str).tolist()
    contents = [Path(p).read_bytes() for p in paths]  # from the page cache from here on
    originals = [load_image(p) for p in paths]
    resized = [resize_image(image, size) for image in originals]
    batch = min(args.batch_size, len(resized))
    batches = [np.stack(resized[i:i + batch]) for i in range(0, len(resized) - batch + 1, batch)]
    described = f"{len(paths)} {'/'.join(sorted(set(index['dataset'])))} cells from {data}"
    shape = "x".join(str(s) for s in originals[0].shape[:2])

    decode = tf.function(lambda raw: tf.io.decode_image(raw, channels=3, expand_animations=False))
    resize_tf = tf.function(lambda image: tf.cast(tf.round(tf.image.resize(image, (size, size), method="area")),
                                                  tf.uint8))
    raw_tensors = [tf.constant(c) for c in contents]
    decoded = [decode(r) for r in raw_tensors]

    few = resized[:max(1, len(paths) // 10)]  # wavelet denoising is slow: a tenth of the cells
    n = len(paths)
    operations = {  # name: (images, run)
        "file check (_check_file, as check_readable calls it)": (n, lambda: [_check_file(p) for p in paths]),
        f"decode, OpenCV (load_image, {shape})": (n, lambda: [load_image(p) for p in paths]),
        f"decode, TensorFlow (decode_image, {shape})": (n, lambda: [decode(r) for r in raw_tensors]),
        f"resize {shape} to {size}, OpenCV area (resize_image)": (n, lambda: [resize_image(i, size)
                                                                             for i in originals]),
        f"resize {shape} to {size}, TensorFlow area (the pipeline)": (n, lambda: [resize_tf(i) for i in decoded]),
        f"denoise gaussian at {size}": (n, lambda: [denoise_image(i, "gaussian") for i in resized]),
        f"denoise median at {size}": (n, lambda: [denoise_image(i, "median") for i in resized]),
        f"denoise wavelet at {size}": (len(few), lambda: [denoise_image(i, "wavelet") for i in few]),
        f"input mode stain at {size} (to_input_mode)": (n, lambda: [to_input_mode(i, "stain") for i in resized]),
        f"augment at {size} (augment_images, batches of {batch})":
            (batch * len(batches), lambda: [augment_images(b, k) for k, b in enumerate(batches)]),
    }
    for _, run in operations.values(): run()  # warm: tracing, first calls, caches
    timings, walls, loads = {name: [] for name in operations}, {name: [] for name in operations}, []
    for _ in range(args.repeats):
        for name, (images, run) in operations.items():  # interleaved: a change of load hits every operation
            loads.append(load())
            start, cpu = time.perf_counter(), time.process_time()
            run()
            timings[name].append(1000 * (time.process_time() - cpu) / images)
            walls[name].append(1000 * (time.perf_counter() - start) / images)
    loads.append(load())
    hardware = f"cpu-{os.cpu_count()}cores" + ("-smoke" if args.smoke else "")
    common = dict(run=run_stamp(), hardware=hardware, data=described,
                  load_1min=f"{min(loads):.2f}-{max(loads):.2f}", commit=git_commit())
    print(f"{described}; one thread; median of {args.repeats} repeats; load {min(loads):.2f}-{max(loads):.2f}")
    print(f"{'operation':<58} {'images':>6} {'CPU ms/image':>12} {'spread':>13} {'wall ms':>8}")
    rows = []
    for name, values in timings.items():
        images, median, wall = operations[name][0], statistics.median(values), statistics.median(walls[name])
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"{name:<58} {images:>6} {median:>12.3f} {spread:>13} {wall:>8.3f}")
        rows.append(common | dict(operation=name, images=images, cpu_ms_per_image=round(median, 4),
                                  cpu_ms_spread=spread, wall_ms_per_image=round(wall, 4),
                                  note=f"one thread, median of {args.repeats}"))
    out = append_rows(output_csv("preprocess_ops", hardware, args.out, args.smoke), rows, COLUMNS)
    print(f"rows appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
