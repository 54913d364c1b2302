"""Prediction, test-time augmentation, ensembles, thresholds, safe loading and Grad-CAM (bloodcancer.predict and
bloodcancer.explain), on the session's `tiny_run` (AlexNet trained by `bloodcancer.train.train` on synthetic cells)
and, for the Grad-CAM localisation test, a small CNN with fine feature maps trained on synthetic cells."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("tf_keras")

from bloodcancer.core import seed_everything
from bloodcancer.data import CLASSES, index_dataset, load_split, make_split, make_synthetic_cnmc, save_split
from bloodcancer.explain import feature_layer, grad_cam, save_gradcam_figure
from bloodcancer.predict import (Predictor, UnsafeModelError, calibrate_threshold, choose_threshold, dihedral_views,
                                 load_keras_model, load_predictor, predict_images, predict_probabilities, soft_vote)
from bloodcancer.preprocess import background_mask, make_dataset

pytestmark = pytest.mark.filterwarnings("ignore:.*trained on synthetic cells")


def _config(run):
    return json.loads((Path(run)/"config.json").read_text())


def _dataset(run, frame, batch_size=16):
    "The run's evaluation pipeline, built here from config.json independently of bloodcancer.predict."
    config = _config(run)
    return make_dataset(frame, config["model"], config["image_size"], batch_size, labels=False,
                        denoise=config["denoise"], input_mode=config["input_mode"])


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    "A private copy of the session's run, for tests that write into the run folder."
    return Path(shutil.copytree(tiny_run, tmp_path/"outputs"/tiny_run.parent.name/tiny_run.name))


@pytest.fixture(scope="module")
def test_cells(tiny_run):
    split = load_split(tiny_run)
    return split[split["split"].eq("test")].reset_index(drop=True)


def test_predict_equals_model_predict(tiny_run, test_cells):
    from bloodcancer.train import load_model
    expected = load_model(tiny_run/"model.keras").predict(_dataset(tiny_run, test_cells), verbose=0)[:, 1]
    table = predict_images(test_cells["path"].tolist(), tiny_run, batch_size=5)
    assert table["path"].tolist() == [str(Path(p).resolve()) for p in test_cells["path"]]
    np.testing.assert_allclose(table["probability_all"].to_numpy(), expected, atol=1e-6)
    assert table["label"].tolist() == np.where(expected >= 0.5, "all", "hem").tolist()
    assert table["problem"].eq("").all()


def test_bad_files_listed_rest_predicted(tiny_run, test_cells, tmp_path):
    for i, path in enumerate(test_cells["path"].head(3)): shutil.copy(path, tmp_path/f"cell{i}.bmp")
    (tmp_path/"empty.png").write_bytes(b"")
    (tmp_path/"broken.jpg").write_text("not an image")
    table = predict_images(tmp_path, tiny_run, out=tmp_path/"out"/"predictions.csv")
    rows = {Path(p).name: row for p, row in zip(table["path"], table.to_dict("records"))}
    assert rows["empty.png"]["problem"].startswith("empty file") and rows["empty.png"]["label"] == ""
    assert rows["broken.jpg"]["problem"].startswith("not an image") and np.isnan(rows["broken.jpg"]["probability_all"])
    assert all(rows[f"cell{i}.bmp"]["label"] in CLASSES for i in range(3))
    assert (tmp_path/"out"/"predictions.csv").is_file()
    meta = json.loads((tmp_path/"out"/"predictions.json").read_text())
    assert meta["trained_on"] == ["synthetic"] and meta["threshold"] == 0.5 and meta["tta"] is False


def test_tta_changes_nothing_for_an_invariant_model(test_cells):
    inputs = keras.Input((32, 32, 3))
    pointwise = keras.layers.Conv2D(4, 1, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(pointwise)))
    predictor = Predictor(model, "AlexNet", 32, 0.5, "default", "in memory")
    np.testing.assert_allclose(predict_probabilities(predictor, test_cells, tta=True),
                               predict_probabilities(predictor, test_cells), atol=1e-6)


def test_tta_averages_the_eight_views(tiny_run, test_cells):
    predictor = load_predictor(tiny_run)
    data = _dataset(tiny_run, test_cells)
    by_hand = np.mean([predictor.model.predict(data.map(lambda x, k=k: dihedral_views(x)[k]), verbose=0)[:, 1]
                       for k in range(8)], axis=0)
    np.testing.assert_allclose(predict_probabilities(predictor, test_cells, tta=True, batch_size=12), by_hand, atol=1e-6)


def test_dihedral_views_are_the_group_d4():
    import tensorflow as tf
    image = tf.random.stateless_uniform((1, 6, 6, 1), seed=(3, 4))
    views = {v.numpy().tobytes() for v in dihedral_views(image)}
    assert len(views) == 8
    for view in dihedral_views(image): assert {w.numpy().tobytes() for w in dihedral_views(view)} == views


def test_ensemble_arithmetic(tiny_run, test_cells):
    np.testing.assert_allclose(soft_vote([[0.2, 0.9], [0.4, 0.5]]), [0.3, 0.7])
    np.testing.assert_allclose(soft_vote([[0.2, 0.9], [0.4, 0.5]], weights=[3, 1]), [0.25, 0.8])
    with pytest.raises(ValueError, match="one weight per member"): soft_vote([[0.2], [0.4]], weights=[1])
    with pytest.raises(ValueError, match="not all zero"): soft_vote([[0.2], [0.4]], weights=[0, 0])
    paths = test_cells["path"].head(8).tolist()
    constant = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros", bias_initializer="zeros")])
    half = Predictor(constant, "AlexNet", 32, 0.5, "default", "constant 0.5")
    single = predict_images(paths, tiny_run)["probability_all"].to_numpy()
    ensemble = predict_images(paths, [tiny_run, half], weights=[1, 3])
    np.testing.assert_allclose(ensemble["probability_all"].to_numpy(), (single + 3 * 0.5) / 4, atol=1e-6)
    assert ensemble.attrs["models"] == [str(tiny_run), "constant 0.5"] and ensemble.attrs["weights"] == [1.0, 3.0]
    np.testing.assert_allclose(predict_images(paths, [tiny_run, tiny_run])["probability_all"].to_numpy(), single, atol=1e-6)


def test_threshold_search_finds_the_known_optimum():
    assert choose_threshold([0, 0, 0, 1, 1, 1], [0.1, 0.3, 0.4, 0.6, 0.8, 0.95])["threshold"] == pytest.approx(0.5)
    labels, scores = [1, 1, 1, 1, 0, 0, 0, 0, 0], [0.9, 0.8, 0.7, 0.35, 0.1, 0.2, 0.3, 0.4, 0.75]
    youden = choose_threshold(labels, scores)
    assert youden["threshold"] == pytest.approx(0.325) and youden["youden_j"] == pytest.approx(0.6)
    target = choose_threshold(labels, scores, "sensitivity", target_sensitivity=0.75)
    assert target["threshold"] == pytest.approx(0.55) and (target["sensitivity"], target["specificity"]) == (0.75, 0.8)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500); s = rng.normal(0.3 + 0.4 * y, 0.25)
    best = max((s[y == 1] >= t).mean() + (s[y == 0] < t).mean() - 1 for t in np.unique(s))
    assert choose_threshold(y, s)["youden_j"] == pytest.approx(best, abs=1e-12)


def test_threshold_stored_with_the_run_and_used(run_copy, test_cells):
    record = calibrate_threshold(run_copy, "sensitivity", target_sensitivity=0.9)
    stored = json.loads((run_copy/"threshold.json").read_text())
    assert stored["threshold"] == record["threshold"] and stored["method"] == "sensitivity" and stored["dataset"] == "synthetic"
    assert record["sensitivity"] >= 0.9
    table = predict_images(test_cells["path"].tolist(), run_copy)
    assert table.attrs["threshold"] == record["threshold"]
    assert table["label"].tolist() == np.where(table["probability_all"] >= record["threshold"], "all", "hem").tolist()
    assert predict_images(test_cells["path"].tolist(), run_copy, threshold=0.0)["label"].eq("all").all()


def test_bare_model_file_needs_its_model_name(tiny_run, test_cells, tmp_path):
    bare = Path(shutil.copy(tiny_run/"model.keras", tmp_path/"model.keras"))
    with pytest.raises(ValueError, match="pass model_name"): load_predictor(bare)
    config = _config(tiny_run)
    assert (config["denoise"], config["input_mode"]) == ("median", "rgb")  # make_dataset's defaults, all a bare file can get
    paths = test_cells["path"].head(4).tolist()
    from_file = predict_images(paths, bare, model_name=config["model"])
    from_run = predict_images(paths, tiny_run)
    np.testing.assert_allclose(from_file["probability_all"].to_numpy(), from_run["probability_all"].to_numpy(), atol=1e-6)


def test_unsafe_model_file_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda images: images * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path/"lambda.keras")
    with pytest.raises(UnsafeModelError, match="lambda.keras was refused"): load_keras_model(tmp_path/"lambda.keras")
    with pytest.raises(UnsafeModelError, match="lambda.keras was refused"):
        predict_images(tmp_path, tmp_path/"lambda.keras", model_name="AlexNet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp_path/"lambda.h5")
    with pytest.raises(UnsafeModelError, match="not a .keras model file"): load_keras_model(tmp_path/"lambda.h5")


def test_convnext_layers_load(tmp_path):
    "TF-Keras cannot read its own ConvNeXt LayerScale back from .keras unless told the class; the loader is."
    from tf_keras.src.applications import convnext
    inputs = keras.Input((4, 4, 8))
    x = convnext.LayerScale(1e-6, 8)(inputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))).save(tmp_path/"c.keras")
    assert type(load_keras_model(tmp_path/"c.keras").layers[1]).__name__ == "LayerScale"


@pytest.fixture(scope="module")
def localising_run(tmp_path_factory):
    "A run folder of a small CNN with fine feature maps (16 x 16 at 32 px), trained 30 epochs on synthetic cells."
    folder = tmp_path_factory.mktemp("gradcam")
    data = make_synthetic_cnmc(folder/"data", image_size=64, class_separation=3.0, seed=0)
    split = make_split(index_dataset(data), "subject", seed=0)
    run = folder/"outputs"/"synthetic-subject-seed0"/"AlexNet"
    save_split(split, run)
    seed_everything(0, tensorflow=True)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(keras.optimizers.Adam(3e-3), "categorical_crossentropy")
    model.fit(make_dataset(split[split["split"].eq("train")], "AlexNet", 32, 32, training=True, seed=0), epochs=30, verbose=0)
    model.save(run/"model.keras")
    (run/"config.json").write_text(json.dumps(dict(model="AlexNet", split="subject", image_size=32, dataset="synthetic",
                                                   class_names=list(CLASSES), positive_class="all", status="complete",
                                                   note="small stand-in CNN with AlexNet's input contract")))
    return run


def test_grad_cam_size_and_weight_inside_the_cell(localising_run):
    predictor = load_predictor(localising_run)
    split = load_split(localising_run)
    cells = split[split["split"].eq("test")]
    images = np.concatenate(list(make_dataset(cells, "AlexNet", 32, 64, labels=False)))
    maps = grad_cam(predictor.model, images)
    assert maps.shape == (len(cells), 32, 32)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    cell = np.array([~background_mask(image) for image in images])
    inside = np.array([m[c].mean() for m, c in zip(maps, cell)])
    outside = np.array([m[~c].mean() for m, c in zip(maps, cell)])
    assert inside.mean() > 2 * outside.mean()
    assert (inside > outside).mean() >= 0.9


def test_grad_cam_of_the_registry_model(tiny_run, test_cells):
    predictor = load_predictor(tiny_run)
    images = np.concatenate(list(_dataset(tiny_run, test_cells.head(4))))
    maps = grad_cam(predictor.model, images, class_index=None)
    assert maps.shape == (4, predictor.image_size, predictor.image_size) and np.isfinite(maps).all()
    assert len(feature_layer(predictor.model).get_output_shape_at(0)) == 4


def test_grad_cam_nested_application():
    inputs = keras.Input((64, 64, 3))
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(64, 64, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(backbone(inputs))))
    assert feature_layer(model).name == "top_activation"
    batch = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    before = model.predict(batch, verbose=0)
    maps = grad_cam(model, batch, class_index=None)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    np.testing.assert_allclose(model.predict(batch, verbose=0), before, atol=1e-6)


def test_gradcam_figure_saved_with_the_run(run_copy):
    figure = save_gradcam_figure(run_copy, n=4)
    assert figure == run_copy/"gradcam.png" and figure.stat().st_size > 0


def test_temperature_fitted_stored_and_applied(run_copy, test_cells):
    from bloodcancer.evaluate import (apply_temperature, expected_calibration_error, fit_temperature,
                                      negative_log_likelihood)
    from bloodcancer.preprocess import labels_of
    record = calibrate_threshold(run_copy)
    stored = json.loads((run_copy/"threshold.json").read_text())
    assert stored["temperature"] == record["temperature"] > 0 and stored["temperature_fitted"] is True
    # the record's numbers are those of the run's own validation predictions, recomputed here independently
    split = load_split(run_copy)
    validation = split[split["split"].eq("val")]
    raw = load_model_probabilities(run_copy, validation)
    labels = labels_of(validation)
    assert record["temperature"] == pytest.approx(fit_temperature(labels, raw), rel=1e-4)
    assert record["ece_before"] == pytest.approx(expected_calibration_error(labels, raw), abs=1e-6)
    scaled = apply_temperature(raw, record["temperature"])
    assert record["ece_after"] == pytest.approx(expected_calibration_error(labels, scaled), abs=1e-4)
    assert record["nll_after"] <= record["nll_before"] == pytest.approx(negative_log_likelihood(labels, raw), abs=1e-6)
    # every later prediction of the run is the model's P(all) scaled by that temperature; the threshold applies to it
    predictor = load_predictor(run_copy)
    assert (predictor.temperature, predictor.threshold) == (record["temperature"], record["threshold"])
    expected = apply_temperature(load_model_probabilities(run_copy, test_cells), record["temperature"])
    table = predict_images(test_cells["path"].tolist(), run_copy)
    np.testing.assert_allclose(table["probability_all"].to_numpy(), expected, atol=1e-6)
    assert table["label"].tolist() == np.where(expected >= record["threshold"], "all", "hem").tolist()
    assert table.attrs["temperatures"] == [record["temperature"]]
    # the threshold is chosen on the recalibrated validation probabilities, the ones it is applied to
    assert record["threshold"] == pytest.approx(choose_threshold(labels, scaled)["threshold"], abs=1e-6)
    # given values win over the stored ones
    assert load_predictor(run_copy, temperature=1).temperature == 1.0


def test_threshold_files_without_a_temperature_still_work(run_copy, test_cells):
    (run_copy/"threshold.json").write_text(json.dumps({"threshold": 0.3, "method": "youden", "sensitivity": 1.0}))
    predictor = load_predictor(run_copy)
    assert (predictor.threshold, predictor.temperature, predictor.temperature_source) == (0.3, 1.0, "none")
    expected = load_model_probabilities(run_copy, test_cells)
    np.testing.assert_allclose(predict_probabilities(predictor, test_cells), expected, atol=1e-6)
    record = calibrate_threshold(run_copy, temperature=False)
    assert (record["temperature"], record["temperature_fitted"]) == (1.0, False)
    assert record["ece_before"] == record["ece_after"]


def load_model_probabilities(run, frame):
    "P(all) straight from the run's model and its evaluation pipeline, without bloodcancer.predict."
    from bloodcancer.train import load_model
    return load_model(Path(run)/"model.keras").predict(_dataset(run, frame), verbose=0)[:, 1].astype(np.float64)
