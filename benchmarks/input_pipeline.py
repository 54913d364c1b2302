"""Input pipeline throughput: images per second for one pass over real C-NMC cells at 224 x 224 with augmentation.

Compares
  (a) bloodcancer.preprocess.make_dataset (training: decode, median denoise, resize, cache, shuffle, augment),
      first epoch (decode + cache fill, including the build and the file check) and cached epochs;
  (b) the typical notebook's `ImageDataGenerator(...).flow_from_directory` with its augmentation;
  (c) the limit: decode + resize only, on all cores (tf.data with TensorFlow's decoders, and OpenCV in a thread
      pool; the faster of the two is the limit).
Targets: cached epochs >= 5x (b); first epoch >= 0.8x (c). The files are read once before timing so that every
method finds them in the page cache. The measurements are repeated (`--repeats`, interleaved) and the best rate of
each method counts, with the spread shown. Rates are wall-clock; the CPU column (all threads of the process, best
repeat) shows the work per image, which is steadier than the rates on a shared machine: the ratio of the CPU costs
(limit / first epoch) is printed too, as the figure other processes on the machine disturb least. The machine's load
(1-minute average) is printed and recorded with every figure. Ends with one line
`cached_vs_imagedatagenerator=<x> first_epoch_vs_raw=<y>`, and appends its rows to
benchmarks/results/input_pipeline-<hardware>.csv.

The cells default to $BLOODCANCER_DEV_CELLS, else ../shared/data/cnmc-dev beside the repository; without them the
script explains and exits. `--smoke` checks the script in seconds: tiny synthetic cells at 32 pixels, one repeat,
rows to `--out` or a temporary folder.

The ImageDataGenerator settings are those of the typical C-NMC notebook: rescale 1/255, rotation 20 degrees, shifts
and zoom 0.1, horizontal and vertical flips, constant (black) fill.

Usage: python benchmarks/input_pipeline.py [--data PATH] [--image-size 224] [--batch-size 40] [--epochs 3]
       [--repeats 3] [--out CSV]
       python benchmarks/input_pipeline.py --smoke [--out CSV]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (append_rows, cells_folder, git_commit, load, output_csv, parse_with_smoke, run_stamp,  # noqa: E402
                     smoke_cells)

COLUMNS = ["run", "hardware", "data", "image_size", "batch", "method", "images", "images_per_s", "images_per_s_spread",
           "cpu_ms_per_image", "ratio", "target", "load_1min", "note", "commit"]
SMOKE = dict(image_size=32, batch_size=8, epochs=2, repeats=1)  # --smoke's defaults: seconds on any machine


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells (all/ and hem/ subfolders); relative paths are "
                        "resolved from the repository root. Defaults to $BLOODCANCER_DEV_CELLS or "
                        "../shared/data/cnmc-dev")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3,
                        help="Epochs of our pipeline per repeat: the first, then cached ones")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Every measurement is repeated, interleaved; the best counts")
    parser.add_argument("--model", default="ResNetRS50", help="Decides the input scaling only; no model is built")
    parser.add_argument("--out", default=None,
                        help="CSV to append to. Defaults to benchmarks/results/input_pipeline-<hardware>.csv")
    args = parse_with_smoke(parser, argv, SMOKE)
    return args


def timed(run) -> tuple[float, float, float]:
    "(wall seconds, CPU seconds of all threads of this process, the machine's load before) of `run()`."
    before = load()
    start, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - start, time.process_time() - cpu, before


def consume(dataset) -> int:
    "Iterate over a tf.data dataset of batches; return the number of images."
    n = 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        n += int(images.shape[0])
    return n


def raw_tf(paths, size):
    import tensorflow as tf
    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, (size, size), method="area")  # float32 out; the uint8 input needs no cast
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(40)
    return lambda: consume(dataset.prefetch(tf.data.AUTOTUNE))


def raw_opencv(paths, size):
    import cv2
    cv2.setNumThreads(1)  # the thread pool is the parallelism; OpenCV's own threads on top only contend
    def decode(path):
        return cv2.resize(cv2.imread(path, cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
    def run():
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool: list(pool.map(decode, paths))
    return run


def image_data_generator(folder, frame, size, batch_size):
    """The pattern of the typical C-NMC notebook: Keras' ImageDataGenerator with on-the-fly augmentation, reading
    `folder`'s all/ and hem/ subfolders (`flow_from_directory`), or the rows of `frame` where the folder has another
    layout (a Kaggle download: `flow_from_dataframe`, the same decoding and augmentation). (images, run, how)."""
    from tf_keras.preprocessing.image import ImageDataGenerator
    generator = ImageDataGenerator(rescale=1 / 255, rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
                                   zoom_range=0.1, horizontal_flip=True, vertical_flip=True, fill_mode="constant",
                                   cval=0)
    options = dict(target_size=(size, size), batch_size=batch_size, class_mode="categorical", classes=["hem", "all"],
                   shuffle=True, seed=42)
    if (Path(folder)/"all").is_dir() and (Path(folder)/"hem").is_dir():
        flow, how = generator.flow_from_directory(str(folder), **options), "flow_from_directory"
    else:
        rows = frame.assign(path=frame["path"].astype(str))
        flow = generator.flow_from_dataframe(rows, x_col="path", y_col="label", validate_filenames=False, **options)
        how = "flow_from_dataframe"
    def run():
        for _ in range(len(flow)): next(flow)
    return flow.n, run, how


def main(argv=None):
    args = parse_args(argv)
    data = smoke_cells() if args.smoke and args.data is None else cells_folder(args.data)
    import tensorflow as tf
    from bloodcancer.data import index_dataset
    from bloodcancer.preprocess import InputContract, make_dataset

    index = index_dataset(data)
    frame = index[index["label"].isin(["all", "hem"]) & index["problem"].eq("")].reset_index(drop=True)
    paths = frame["path"].astype(str).tolist()
    n = len(paths)
    for path in paths: Path(path).read_bytes()  # page cache warm for every method
    print(f"{n} images from {data} ({', '.join(sorted(set(index['dataset'])))}), {args.image_size} x "
          f"{args.image_size}, batch {args.batch_size}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")

    raw_tf_run, raw_opencv_run = raw_tf(paths, args.image_size), raw_opencv(paths, args.image_size)
    images, generator_run, flow = image_data_generator(data, frame, args.image_size, args.batch_size)
    names = {"tf": "(c) decode + resize, tf.data, all cores",
             "opencv": "(c) decode + resize, OpenCV threads, all cores",
             "first": "(a) ours, first epoch (build + check + decode + cache)", "cached": "(a) ours, cached epochs",
             "generator": f"(b) ImageDataGenerator.{flow}"}
    counts = {key: n for key in names} | {"generator": images}
    runs = {key: [] for key in names}  # (wall, cpu) of every repeat, interleaved so that load changes hit all methods
    for _ in range(args.repeats):
        runs["tf"].append(timed(raw_tf_run))
        runs["opencv"].append(timed(raw_opencv_run))
        built = {}
        def first_epoch():
            built["dataset"] = make_dataset(frame, InputContract(args.model, args.image_size),
                                            batch_size=args.batch_size, training=True)
            assert consume(built["dataset"]) == n
        runs["first"].append(timed(first_epoch))
        runs["cached"] += [timed(lambda: consume(built["dataset"])) for _ in range(max(1, args.epochs - 1))]
        runs["generator"].append(timed(generator_run))

    rates = {key: [counts[key] / wall for wall, _, _ in timings] for key, timings in runs.items()}
    best = {key: max(r) for key, r in rates.items()}
    loads = [l for timings in runs.values() for _, _, l in timings] + [load()]
    print(f"\nbest of {args.repeats} repeats ({args.epochs - 1} cached epochs each); spread = slowest-fastest "
          f"images/s; machine load (1-minute average) {min(loads):.2f}-{max(loads):.2f} during the measurements")
    print(f"{'method':<55} {'images':>6} {'images/s':>9} {'spread':>12} {'CPU ms/image':>13}")
    cpu = {key: 1000 * min(c for _, c, _ in runs[key]) / counts[key] for key in names}
    hardware = f"cpu-{os.cpu_count()}cores" + ("-smoke" if args.smoke else "")
    described = f"{n} {'/'.join(sorted(set(index['dataset'])))} cells from {data}"
    common = dict(run=run_stamp(), hardware=hardware, data=described, image_size=args.image_size,
                  batch=args.batch_size, load_1min=f"{min(loads):.2f}-{max(loads):.2f}", commit=git_commit())
    rows = []
    for key, name in names.items():
        spread = f"{min(rates[key]):.0f}-{max(rates[key]):.0f}"
        print(f"{name:<55} {counts[key]:>6} {best[key]:>9.0f} {spread:>12} {cpu[key]:>13.2f}")
        rows.append(common | dict(method=name, images=counts[key], images_per_s=round(best[key], 1),
                                  images_per_s_spread=spread, cpu_ms_per_image=round(cpu[key], 3),
                                  note=f"best of {len(runs[key])}"))
    raw_key = max(("tf", "opencv"), key=best.get)
    raw = best[raw_key]
    cached_vs_generator, first_vs_raw = best["cached"] / best["generator"], best["first"] / raw
    first_vs_raw_cpu = cpu[raw_key] / cpu["first"]
    print(f"\ntargets: cached epochs >= 5x (b): {cached_vs_generator:.1f}x; first epoch >= 0.8x (c): "
          f"{first_vs_raw:.2f}x (by CPU work per image: {first_vs_raw_cpu:.2f}x)")
    rows += [common | dict(method="ratio: cached epochs / (b)", ratio=round(cached_vs_generator, 2), target=">= 5x"),
             common | dict(method="ratio: first epoch / limit (c)", ratio=round(first_vs_raw, 2), target=">= 0.8x",
                           note=f"limit: {names[raw_key]}; wall-clock rates, best of each"),
             common | dict(method="ratio: first epoch / limit (c), CPU work per image",
                           ratio=round(first_vs_raw_cpu, 2), target=">= 0.8x",
                           note="limit's CPU ms per image / first epoch's: what the first epoch adds to decoding and "
                                "resizing, least disturbed by other processes")]
    out = append_rows(output_csv("input_pipeline", hardware, args.out, args.smoke), rows, COLUMNS)
    print(f"rows appended to {out}")
    print(f"cached_vs_imagedatagenerator={cached_vs_generator:.2f} first_epoch_vs_raw={first_vs_raw:.2f}")


if __name__ == "__main__":
    main()
