"""Preprocessing and the tf.data input pipeline on real development cells and the synthetic C-NMC.

The notebook 02_preprocess tests each operation on small made-up images; these tests run them on real cells, through
the whole pipeline, on every accepted file format, and on broken files. Images are 32 to 64 pixels to stay fast.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bloodcancer.data import DataValidationError, index_dataset, make_split
from bloodcancer.preprocess import (DENOISE_METHODS, INPUT_MODES, OD_MAX, InputContract, augment_images, check_readable,
                                    class_weights, denoise_image, load_image, make_dataset, preprocess_image,
                                    preprocessing_figure, stain_channels, to_input_mode)

SIZE = 32

# One model of every family, with the value range its input must have.
FAMILY_RANGES = {"ResNetRS50": (0, 255), "RegNetX016": (0, 255), "ConvNeXtTiny": (0, 255), "EfficientNetV2B0": (0, 255),
                 "AlexNet": (0, 255), "InceptionV3": (-1, 1), "Xception": (-1, 1), "VGG19": (-123.68, 255 - 103.939)}


@pytest.fixture(scope="module")
def real_cells(dev_cells):
    "Twelve real cells, both classes, several subjects."
    index = index_dataset(dev_cells)
    return index.groupby("label").head(6).reset_index(drop=True)


@pytest.fixture(scope="module")
def synthetic_index(synthetic_cnmc):
    return index_dataset(synthetic_cnmc)


def batches(dataset):
    "All batches of a dataset as NumPy (images, labels)."
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("model", list(FAMILY_RANGES))
def test_shape_dtype_range_per_family(real_cells, model):
    images, labels = batches(make_dataset(real_cells, InputContract(model, SIZE), batch_size=5))
    low, high = FAMILY_RANGES[model]
    assert images.shape == (len(real_cells), SIZE, SIZE, 3) and images.dtype == np.float32
    assert low - 1e-3 <= images.min() and images.max() <= high + 1e-3
    assert labels.shape == (len(real_cells), 2) and labels.dtype == np.float32
    assert labels.argmax(1).tolist() == real_cells["label"].map({"hem": 0, "all": 1}).tolist()


def test_caffe_is_bgr_minus_mean(real_cells):
    rgb, _ = batches(make_dataset(real_cells.head(4), InputContract("ResNetRS50", SIZE)))
    caffe, _ = batches(make_dataset(real_cells.head(4), InputContract("VGG19", SIZE)))
    np.testing.assert_allclose(caffe, rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32), atol=1e-4)
    assert InputContract("VGG19", SIZE).input_scaling == "caffe"


def test_evaluation_is_ordered_unaugmented_and_matches_numpy(real_cells):
    images, _ = batches(make_dataset(real_cells, InputContract("ResNetRS50", SIZE), batch_size=4))
    again, _ = batches(make_dataset(real_cells, InputContract("ResNetRS50", SIZE), batch_size=7))
    expected = np.stack([preprocess_image(load_image(p), SIZE) for p in real_cells["path"]]).astype(np.float32)
    np.testing.assert_array_equal(images, again)
    assert np.abs(images - expected).max() <= 1 and (images != expected).mean() < 0.001


def test_augmentation_is_seeded_and_not_identity(real_cells):
    train = lambda seed, augment=None: make_dataset(real_cells, InputContract("ResNetRS50", SIZE), batch_size=12,
                                                    training=True, seed=seed, augment=augment)
    (x1, y1), (x2, y2) = batches(train(3)), batches(train(3))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, batches(train(4))[0])
    plain, plain_labels = batches(train(3, augment=False))  # same seed: same order, no augmentation
    np.testing.assert_array_equal(plain_labels, y1)
    assert not np.allclose(plain, x1)
    # every epoch gets a new shuffle and new variants, reproducibly
    dataset = train(3)
    first, second = batches(dataset)[0], batches(dataset)[0]
    assert not np.array_equal(first, second)
    replay = train(3)
    batches(replay)
    np.testing.assert_array_equal(batches(replay)[0], second)


def test_augmentation_on_real_cells_keeps_black_background(real_cells):
    cells = np.stack([load_image(p, 64) for p in real_cells["path"]])
    augmented = augment_images(cells, seed=0)
    assert augmented.shape == cells.shape and augmented.dtype == np.uint8
    assert augmented[:, :3, :3].max() == 0 and augmented[:, -3:, -3:].max() == 0  # corners stay black
    np.testing.assert_array_equal(augmented, augment_images(cells, seed=0))
    # rotation and flips move pixels but keep the cell's size (within interpolation and contrast jitter)
    area = lambda images: (images.max(-1) > 10).sum(axis=(1, 2))
    np.testing.assert_allclose(area(augmented), area(cells), rtol=0.15)


def test_stain_channels_background_zero_cell_not(real_cells):
    for path in real_cells["path"].head(4):
        cell = load_image(path)
        density = stain_channels(cell)
        assert density.shape == cell.shape and density.dtype == np.float32
        black = cell.max(-1) == 0
        assert black.any() and density[black].max() == 0
        centre = density[200:250, 200:250]
        assert (centre[..., :2].max(-1) > 0.1).mean() > 0.9  # cell pixels carry methyl blue or eosin
        assert density.max() <= 2 * OD_MAX


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_input_modes_through_the_pipeline(real_cells, mode):
    contract = InputContract("ResNetRS50", SIZE, input_mode=mode)
    images = np.concatenate([x.numpy() for x in make_dataset(real_cells.head(4), contract, labels=False)])
    assert images.shape == (4, SIZE, SIZE, 3) and 0 <= images.min() and images.max() <= 255
    assert images[:, 0, 0].max() == 0  # background corner: black in RGB, zero density in the stain modes
    expected = np.stack([preprocess_image(load_image(p), SIZE, input_mode=mode) for p in real_cells["path"].head(4)])
    assert np.abs(images - expected).max() <= 2


@pytest.fixture(scope="module")
def noisy_cell(real_cells):
    "A real cell, the same with Gaussian noise (sigma 10), and with 2% salt-and-pepper impulses."
    rng = np.random.default_rng(1)
    clean = load_image(real_cells["path"].iloc[0], 128)
    gaussian = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
    impulse = clean.copy()
    hit = rng.random(clean.shape[:2]) < 0.02
    impulse[hit] = rng.choice([0, 255], (int(hit.sum()), 1))
    return clean, gaussian, impulse


def rms_error(image, clean):
    return float(np.sqrt(np.mean((image.astype(float) - clean) ** 2)))


@pytest.mark.parametrize("method", [m for m in DENOISE_METHODS if m != "none"])
def test_each_denoiser_lowers_gaussian_noise(noisy_cell, method):
    clean, noisy, _ = noisy_cell
    assert rms_error(denoise_image(noisy, method), clean) < 0.8 * rms_error(noisy, clean)


def test_median_removes_impulses(noisy_cell):
    clean, _, noisy = noisy_cell
    errors = {m: rms_error(denoise_image(noisy, m), clean) for m in DENOISE_METHODS}
    assert errors["median"] < 0.3 * errors["gaussian"] < errors["none"]


def corrupt_copies(folder: Path, good: Path) -> dict[str, Path]:
    "One file of every kind that cannot be read, named like C-NMC cells."
    data = good.read_bytes()
    files = {"truncated": folder/"all"/"UID_1_1_1_all.png", "empty": folder/"all"/"UID_1_1_2_all.png",
             "not an image": folder/"hem"/"UID_H1_1_1_hem.png", "bit flip": folder/"hem"/"UID_H1_1_2_hem.png"}
    for path in files.values(): path.parent.mkdir(parents=True, exist_ok=True)
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    files["not an image"].write_bytes(b"this is text, not pixels")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    files["bit flip"].write_bytes(bytes(flipped))
    return files


def test_corrupt_files_raise_the_data_layers_error_before_any_epoch(real_cells, tmp_path):
    broken = corrupt_copies(tmp_path, Path(real_cells["path"].iloc[0]))
    missing = tmp_path/"all"/"UID_1_1_3_all.png"
    for kind, path in [*broken.items(), ("missing", missing)]:
        frame = real_cells.head(3).copy()
        frame.loc[frame.index[1], "path"] = str(path)
        for training in (False, True):
            with pytest.raises(DataValidationError) as raised:
                make_dataset(frame, InputContract("ResNetRS50", SIZE), training=training)
            message = str(raised.value)
            assert str(path) in message and "validate_images" in message, kind
            assert "1 of 3 images cannot be read" in message


def test_truncated_bmp_is_caught_by_its_header(real_cells, tmp_path):
    "C-NMC as Kaggle ships it is BMP: no checksums, so the check compares the file size with what the header promises."
    good = tmp_path/"all"/"UID_1_1_1_all.bmp"
    good.parent.mkdir()
    Image.open(real_cells["path"].iloc[0]).save(good)
    cut = tmp_path/"all"/"UID_1_1_2_all.bmp"
    cut.write_bytes(good.read_bytes()[:-450])
    frame = pd.DataFrame({"path": [str(good), str(cut)], "label": "all"})
    with pytest.raises(DataValidationError, match="header promises"):
        make_dataset(frame, InputContract("ResNetRS50", SIZE))
    assert len(batches(make_dataset(frame.head(1), InputContract("ResNetRS50", SIZE)))[0]) == 1


def test_corrupt_index_lists_every_bad_file(real_cells, tmp_path):
    broken = corrupt_copies(tmp_path, Path(real_cells["path"].iloc[0]))
    frame = pd.concat([real_cells.head(2), pd.DataFrame({"path": [str(p) for p in broken.values()], "label": "all"})])
    with pytest.raises(DataValidationError, match="4 of 6 images cannot be read") as raised:
        check_readable(frame)
    for path in broken.values(): assert str(path) in str(raised.value)


def test_every_accepted_format_decodes_alike(real_cells, tmp_path):
    "TensorFlow decodes PNG and RGB/grayscale BMP, OpenCV the rest (JPEG, TIFF, palette BMP): same pixels either way."
    cell = Image.open(real_cells["path"].iloc[0])
    variants = {"cell.png": cell, "cell.bmp": cell, "cell.tif": cell, "cell.jpg": cell, "gray.bmp": cell.convert("L"),
                "palette.bmp": cell.convert("P"), "rgba.png": cell.convert("RGBA"), "palette.png": cell.convert("P")}
    for name, image in variants.items(): image.save(tmp_path/name)
    frame = pd.DataFrame({"path": [str(tmp_path/name) for name in variants]})
    decoders = dict(zip(variants, check_readable(frame)["decoder"]))
    assert decoders["cell.png"] == "tensorflow"
    assert decoders["palette.bmp"] == "opencv" and decoders["cell.jpg"] == "opencv"
    dataset = make_dataset(frame, InputContract("ResNetRS50", 48, denoise="none"), labels=False)
    images = np.concatenate([x.numpy() for x in dataset])
    for image, name in zip(images, variants):
        expected = preprocess_image(load_image(tmp_path/name), 48, denoise="none")
        assert np.abs(image - expected).max() <= 1, name


def test_file_cache_is_keyed_by_settings_and_survives_a_killed_run(real_cells, tmp_path):
    frame = real_cells.head(5)
    first, _ = batches(make_dataset(frame, InputContract("ResNetRS50", SIZE), cache=str(tmp_path)))
    assert len(list(tmp_path.glob("*.index"))) == 1
    again, _ = batches(make_dataset(frame, InputContract("ResNetRS50", SIZE), cache=str(tmp_path)))
    np.testing.assert_array_equal(first, again)
    stain, _ = batches(make_dataset(frame, InputContract("ResNetRS50", SIZE, input_mode="stain"), cache=str(tmp_path)))
    assert len(list(tmp_path.glob("*.index"))) == 2 and not np.array_equal(first, stain)
    # leftovers of a run killed during its first epoch (lock file, partial shard) do not block the next run
    other = tmp_path/"killed"
    other.mkdir()
    batches(make_dataset(frame.head(2), InputContract("ResNetRS50", SIZE), cache=str(other)))
    cache_name = next(other.glob("*.index")).name[: -len(".index")]
    for leftover in other.iterdir(): leftover.unlink()
    (other/f"{cache_name}_0.lockfile").write_text("")
    (other/f"{cache_name}_0.data-00000-of-00001.tempstate123").write_text("")
    resumed, _ = batches(make_dataset(frame.head(2), InputContract("ResNetRS50", SIZE), cache=str(other)))
    np.testing.assert_array_equal(resumed, first[:2])


def test_class_weights_from_the_training_split(synthetic_index):
    split = make_split(synthetic_index, "subject", seed=0)
    train = split[split["split"].eq("train")]
    weights = class_weights(train)
    counts = train["label"].value_counts()
    assert weights[1] < 1 < weights[0]  # `all` is the larger class
    assert weights[0] * counts["hem"] == pytest.approx(weights[1] * counts["all"])


def test_prediction_without_labels(synthetic_index):
    final = synthetic_index[synthetic_index["source_split"].eq("final")]
    images = list(make_dataset(final, InputContract("Xception", SIZE), batch_size=4, labels=False))
    assert sum(len(x) for x in images) == len(final) and images[0].shape[1:] == (SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="labels=False"):
        make_dataset(final.drop(columns="label"), InputContract("Xception", SIZE))


def test_figure_says_which_data(synthetic_index, real_cells, tmp_path):
    synthetic = preprocessing_figure(synthetic_index["path"].head(2).tolist(), tmp_path/"synthetic.png")
    assert "synthetic cells (not real cells)" in Image.open(synthetic).text["Title"]
    real = preprocessing_figure(real_cells["path"].head(2).tolist(), tmp_path)
    assert real == tmp_path/"preprocessing_steps.png"
    assert "2 C-NMC cells" in Image.open(real).text["Title"]


def test_numpy_ops_reject_wrong_inputs():
    with pytest.raises(ValueError, match="RGB uint8"): denoise_image(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="choose one of"): to_input_mode(np.zeros((8, 8, 3), np.uint8), "lab")
    with pytest.raises(ValueError, match="batch of RGB uint8"): augment_images(np.zeros((8, 8, 3), np.uint8), 0)
