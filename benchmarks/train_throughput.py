"""Training throughput (images/s) of registry models with the paper's head, on synthetic in-memory batches.

Measures what the accelerator and the model can do, without the input pipeline: one batch of random 0-255 pixels is
fed again and again through `model.fit` (Adamax, categorical cross-entropy, as `bloodcancer.train.train` compiles).
The first `--warmup` steps (tracing, XLA compilation) are not timed.

    python benchmarks/train_throughput.py --models AlexNet VGG19 --image-size 64 --steps 10
    python benchmarks/train_throughput.py --models ResNetRS50 --image-size 224 --batch-size 40 256 --compare   # on a GPU

`--compare` runs each model three ways: float32, mixed precision, and mixed precision with XLA. Prints one table row
per run; `--json PATH` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def device_name() -> str:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    return f"CPU ({os.cpu_count()} cores)"


def measure(model_name: str, image_size: int, batch_size: int, steps: int, warmup: int, mixed_precision: bool,
            jit_compile: bool) -> dict:
    "Images per second of `steps` training steps after `warmup` untimed ones."
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from bloodcancer.train import build_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        model = build_model(model_name, image_size, weights=None, seed=0)
        model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        images = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32"))
        labels = tf.one_hot(rng.integers(0, 2, batch_size), 2)
        batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
        model.fit(batches, steps_per_epoch=warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    except (tf.errors.ResourceExhaustedError, MemoryError) as error:
        return dict(model=model_name, image_size=image_size, batch_size=batch_size, mixed_precision=mixed_precision,
                    jit_compile=jit_compile, images_per_s=None, step_ms=None, note=f"out of memory ({type(error).__name__})")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return dict(model=model_name, image_size=image_size, batch_size=batch_size, mixed_precision=mixed_precision,
                jit_compile=jit_compile, images_per_s=round(steps * batch_size / seconds, 1),
                step_ms=round(1000 * seconds / steps, 1), note="")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ResNetRS50"], help="registry names. Defaults to ResNetRS50.")
    parser.add_argument("--image-size", type=int, default=224, help="input side in pixels. Defaults to 224.")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[40], help="one or more batch sizes. Defaults to 40.")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps. Defaults to 20.")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, compilation). Defaults to 3.")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute (float32 variables)")
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--compare", action="store_true", help="run float32, mixed precision, and mixed precision + XLA")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    variants = [(False, False), (True, False), (True, True)] if args.compare else [(args.mixed_precision, args.jit_compile)]
    device = device_name()
    print(f"training throughput on {device}; synthetic batches, {args.steps} timed steps after {args.warmup} warm-up steps")
    header = f"{'model':<16} {'size':>5} {'batch':>6} {'precision':<10} {'XLA':<4} {'images/s':>10} {'ms/step':>9}  note"
    print(header)
    print("-" * len(header))
    rows = []
    for model_name in args.models:
        for batch_size in args.batch_size:
            for mixed, xla in variants:
                row = measure(model_name, args.image_size, batch_size, args.steps, args.warmup, mixed, xla) | dict(device=device)
                rows.append(row)
                speed = "-" if row["images_per_s"] is None else f"{row['images_per_s']:.1f}"
                step = "-" if row["step_ms"] is None else f"{row['step_ms']:.1f}"
                print(f"{model_name:<16} {args.image_size:>5} {batch_size:>6} {'mixed' if mixed else 'float32':<10} "
                      f"{'yes' if xla else 'no':<4} {speed:>10} {step:>9}  {row['note']}", flush=True)
    if args.json:
        with open(args.json, "w") as handle: json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
