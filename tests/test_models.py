"""The model registry (issue 4, issue 12): every registry model builds and trains a step, its backbone has Keras's
documented parameter count, and reading the registry (the contract) imports no TensorFlow."""
import subprocess
import sys

import numpy as np
import pytest

# Parameter counts of the backbones (include_top=False), from Keras's documentation of its applications; AlexNet's is
# ours: the five convolutions and the two batch normalisations that stand in for LRN.
BACKBONE_PARAMETERS = {"ResNetRS50": 33_696_288, "RegNetX016": 8_320_640, "ConvNeXtTiny": 27_820_128,
                       "EfficientNetB0": 4_049_571, "InceptionV3": 21_802_784, "Xception": 20_861_480,
                       "VGG19": 20_024_384, "AlexNet": 3_748_608, "EfficientNetV2B0": 5_919_312}


@pytest.mark.parametrize("name", list(BACKBONE_PARAMETERS))
def test_model_builds_and_trains_one_step(name):
    "At its smallest input, from random weights; the step runs eagerly (tracing the big graphs costs minutes on a CPU)."
    import tf_keras as keras
    from bloodcancer.models import MODELS, backbone_of, build_model
    size = MODELS[name].min_size
    model = build_model(name, size, weights=None, seed=0)
    assert backbone_of(model).count_params() == BACKBONE_PARAMETERS[name] == MODELS[name].parameters
    assert model.output_shape == (None, 2)
    assert model.name == name  # the registry name travels with the model file
    model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", run_eagerly=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    before = model.get_layer("predictions").kernel.numpy().copy()
    loss = model.train_on_batch(images, np.eye(2, dtype="float32"))
    assert np.isfinite(loss)
    assert not np.array_equal(before, model.get_layer("predictions").kernel.numpy())


def test_every_registry_model_exists_in_keras():
    import tf_keras as keras
    from bloodcancer.models import MODELS
    for spec in MODELS.values():
        if spec.family.from_keras: assert hasattr(keras.applications, spec.name), spec.name


def test_reading_the_contract_imports_no_tensorflow():
    script = ("import sys; from bloodcancer.models import model_spec; import bloodcancer.pipeline, bloodcancer.runs, "
              "bloodcancer.cli; from bloodcancer.config import TrainConfig; TrainConfig(model='VGG19', image_size=64); "
              "spec = model_spec('Inception_v3'); print(spec.input_scaling, spec.min_size, spec.feature_layer); "
              "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split() == ["-1..1", "75", "head_pooling"]
