"""The stain- and patient-robust training augmentations of bloodcancer.preprocess on real development cells (skipped
where they are absent) and on constructed images: seeded, background kept black, stain channels changed as
specified, mixup's labels mixed by the images' weights, and their place in make_dataset."""
import numpy as np
import pytest
from PIL import Image

from bloodcancer.data import index_dataset
from bloodcancer.preprocess import (AUGMENTATIONS, InputContract, PAPER_AUGMENTATIONS, STAIN_SCALE_RANGE, augment_batch,
                                    augment_images, augmentation_figure, augmentation_names, background_mask,
                                    load_image, make_dataset, mixup, preprocess_image, shift_stains, stain_channels,
                                    stain_jitter)

SIZE = 64 # Input size of the pipeline tests
CACHED = 224 # Size of the cells the augmentations are tested on (the blur's sigma is given at 224 px)
IMAGE_STEPS = [n for n in AUGMENTATIONS if n != "mixup"]
COLOUR_STEPS = ("stain", "brightness", "blur")  # move no pixel: every background pixel comes out as it went in


@pytest.fixture(scope="module")
def real_index(dev_cells):
    index = index_dataset(dev_cells)
    return index.groupby("subject").head(1).head(12).reset_index(drop=True)  # one cell each of 12 patients


@pytest.fixture(scope="module")
def real_batch(real_index):
    return np.stack([preprocess_image(load_image(p), CACHED) for p in real_index["path"]])


@pytest.mark.parametrize("name", IMAGE_STEPS)
def test_each_augmentation_is_seeded_and_keeps_the_background_black(real_batch, name):
    first, again, other = (augment_batch(real_batch, seed, [name]) for seed in ((4, 1), (4, 1), (4, 2)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(first, real_batch)
    assert first.dtype == np.uint8 and first.shape == real_batch.shape
    assert first[:, :4, :4].max() == 0 and first[:, -4:, -4:].max() == 0  # corners
    if name in COLOUR_STEPS:
        background = np.stack([background_mask(c) for c in real_batch])
        np.testing.assert_array_equal(first[background], real_batch[background])
        assert first[(real_batch == 0).all(-1)].max() == 0


@pytest.mark.parametrize("stain", [0, 1])
def test_scaling_one_stain_scales_its_density_and_leaves_the_other(real_batch, stain):
    s = 1.12
    factors = np.ones((len(real_batch), 2)); factors[:, stain] = s
    jittered = shift_stains(real_batch, factors, np.zeros((len(real_batch), 2)))
    cells = np.stack([~background_mask(c) for c in real_batch])
    before = np.stack([stain_channels(c) for c in real_batch])[cells]
    after = np.stack([stain_channels(c) for c in jittered])[cells]
    dense = before[:, stain] > 0.2
    assert dense.sum() > 1000
    assert np.median(after[dense, stain] / before[dense, stain]) == pytest.approx(s, abs=0.02)
    other = 1 - stain
    assert np.median(np.abs(after[dense, other] - before[dense, other])) < 0.01
    # a shift adds optical density to that stain only
    shifts = np.zeros((len(real_batch), 2)); shifts[:, stain] = 0.05
    shifted_batch = shift_stains(real_batch, np.ones((len(real_batch), 2)), shifts)
    shifted = np.stack([stain_channels(c) for c in shifted_batch])[cells]
    assert np.median(shifted[dense, stain] - before[dense, stain]) == pytest.approx(0.05, abs=0.01)
    assert np.median(np.abs(shifted[dense, other] - before[dense, other])) < 0.01


def test_random_stain_jitter_stays_within_its_ranges(real_batch):
    jittered = stain_jitter(real_batch, seed=11, shift_range=(0, 0))
    for original, changed in zip(real_batch, jittered):
        cell = ~background_mask(original)
        before, after = stain_channels(original)[cell], stain_channels(changed)[cell]
        for stain in (0, 1):
            dense = before[:, stain] > 0.2
            ratio = np.median(after[dense, stain] / before[dense, stain])
            assert STAIN_SCALE_RANGE[0] - 0.02 <= ratio <= STAIN_SCALE_RANGE[1] + 0.02


def test_mixup_mixes_labels_by_the_images_weights():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 5, 5, 3)).astype(np.uint8)
    labels = np.eye(16, dtype=np.float32)  # one class per image: the label says who was mixed with whom, and how much
    mixed, soft = mixup(images, labels, seed=3, alpha=0.4)
    assert mixed.dtype == np.float32 and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(1), 1, atol=1e-6)
    for i in range(16):
        weights = soft[i]
        expected = np.tensordot(weights, images.astype(np.float32), axes=1)  # the same weights blend the images
        np.testing.assert_allclose(mixed[i], expected, atol=1e-3)
        assert (weights > 0).sum() <= 2
    assert (np.sort(soft, 1)[:, -2] > 0.01).any()  # some images really are mixed
    np.testing.assert_array_equal(mixup(images, labels, 3, 0.4)[0], mixed)
    assert not np.array_equal(mixup(images, labels, 4, 0.4)[0], mixed)


def test_names_and_defaults():
    assert PAPER_AUGMENTATIONS == ("paper",) and AUGMENTATIONS[0] == "paper" and AUGMENTATIONS[-1] == "mixup"
    assert augmentation_names("mixup,blur,paper") == ("paper", "blur", "mixup")
    with pytest.raises(ValueError, match="unknown: choose from"): augmentation_names(["hue"])
    batch = np.zeros((2, 16, 16, 3), np.uint8); batch[:, 4:12, 5:11] = (90, 50, 120)
    np.testing.assert_array_equal(augment_batch(batch, (1, 2)), augment_images(batch, (1, 2)))


def test_make_dataset_applies_the_named_augmentations(real_index):
    frame = real_index.head(8)
    def first_batch(**kwargs):
        x, y = next(iter(make_dataset(frame, InputContract("ResNetRS50", SIZE), batch_size=8, training=True, seed=5,
                                      cache=False, **kwargs)))
        return x.numpy(), y.numpy()
    default, explicit = first_batch(), first_batch(augmentations=PAPER_AUGMENTATIONS)
    np.testing.assert_array_equal(default[0], explicit[0])  # the default is the paper's set
    stain_only = first_batch(augmentations=["stain"])
    plain = first_batch(augment=False)
    assert not np.array_equal(stain_only[0], plain[0]) and not np.array_equal(stain_only[0], default[0])
    background = np.stack([background_mask(c.astype(np.uint8)) for c in plain[0]])
    np.testing.assert_array_equal(stain_only[0][background], plain[0][background])  # same order, background untouched
    mixed_x, mixed_y = first_batch(augmentations=list(AUGMENTATIONS))
    np.testing.assert_array_equal(first_batch(augmentations=list(AUGMENTATIONS))[0], mixed_x)
    np.testing.assert_allclose(mixed_y.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(plain[1], default[1])
    evaluation = next(iter(make_dataset(frame, InputContract("ResNetRS50", SIZE), batch_size=8, cache=False,
                                        augmentations=list(AUGMENTATIONS))))
    np.testing.assert_array_equal(evaluation[1].numpy().max(1), 1)  # evaluation never augments, whatever is named
    with pytest.raises(ValueError, match="needs labels=True"):
        make_dataset(frame, InputContract("ResNetRS50"), training=True, labels=False, augmentations="mixup")


def test_augmentation_figure_says_which_data(synthetic_cnmc, tmp_path):
    index = index_dataset(synthetic_cnmc)
    cells = index[index["label"].ne("")].groupby("label").head(1)
    figure = augmentation_figure(cells["path"].tolist(), tmp_path)
    title = Image.open(figure).text["Title"]
    assert figure.name == "augmentations.png" and "synthetic cells (not real cells)" in title
