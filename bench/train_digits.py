"""Train and export graphopt's reference digits classifier (``zoo:digits``).

The model is a small ResNet-style CNN trained on scikit-learn's bundled digits data set
(1797 8x8 images, 10 classes; ``sklearn.datasets.load_digits``, no download). Images are
scaled to 0..1 and upscaled to 32x32 (bilinear) while the data is prepared, so the network
sees inputs of shape [N, 1, 32, 32] float32.

The network deliberately contains the structures graphopt's passes rewrite: a
Conv+BatchNorm+ReLU stem, two residual blocks (one with a strided 1x1 projection shortcut),
a depthwise-separable block, a Concat of two branches, global average pooling, Flatten and a
Linear head. It is exported to ONNX (opset 17) with every BatchNormalization kept as its own
node, so that graphopt's own folding passes have something to fold.

Outputs (default directory ``graphopt/zoo/data``, overridable with ``--out-dir``):

* ``digits.onnx``: self-contained model, input ``input`` [batch, 1, 32, 32] float32,
  output ``logits`` [batch, 10]; metadata_props carry ``test_accuracy`` (the ONNX Runtime
  accuracy on the test split, equal to the torch one) and more provenance keys.
* ``digits_test.npz``: the held-out test split, ``x`` float32 [N, 1, 32, 32] and
  ``y`` int64 [N].

The committed outputs are what graphopt ships as ``zoo:digits``; this script is how they were
made, and rerunning it reproduces them. It needs PyTorch, which graphopt itself does not
depend on, so run it from a separate virtual environment (torch 2.13.0, CPU build)::

    python3 -m venv /work/torchenv
    /work/torchenv/bin/pip install torch==2.13.0 scikit-learn onnx onnxruntime numpy onnxscript
    /work/torchenv/bin/python bench/train_digits.py

The script exits non-zero if the ONNX model's test accuracy is below 0.97, differs from the
torch model's, or if the exported graph lost its BatchNormalization nodes.
"""

from __future__ import annotations

import argparse
import collections
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from graphopt import atomic

SEED = 0
IMAGE_SIZE = 32
NUM_CLASSES = 10
OPSET = 17
MIN_ACCURACY = 0.97
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "graphopt" / "zoo" / "data"


@dataclass(frozen=True)
class Split:
    """Train/test arrays: x float32 [N, 1, 32, 32] in 0..1, y int64 [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 2


# --------------------------------------------------------------------------- data


def upscale(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bilinearly resize [N, 1, h, w] float32 images to [N, 1, size, size]."""
    tensor = torch.from_numpy(images)
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return np.ascontiguousarray(resized.numpy(), dtype=np.float32)


def load_split(seed: int = SEED) -> Split:
    """Load sklearn digits, scale to 0..1, upscale to 32x32 and split 75/25 (stratified)."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    return Split(upscale(x_train), y_train, upscale(x_test), y_test)


def random_shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with zeros."""
    if max_shift <= 0:
        return batch
    n, _, h, w = batch.shape
    padded = F.pad(batch, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    crops = [
        padded[i, :, int(dy) : int(dy) + h, int(dx) : int(dx) + w]
        for i, (dy, dx) in enumerate(offsets)
    ]
    return torch.stack(crops)


# --------------------------------------------------------------------------- model


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """ResNet basic block; a strided 1x1 Conv+BN projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 conv (groups=C) + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_in, 3, stride, padding=1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ConcatBranches(nn.Module):
    """Inception-style mixing: a 1x1 and a 3x3 Conv+BN+ReLU branch, concatenated."""

    def __init__(self, c_in: int, c_branch: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBNReLU(c_in, c_branch, kernel=1)
        self.branch3x3 = ConvBNReLU(c_in, c_branch, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], dim=1)


class DigitsNet(nn.Module):
    """Small ResNet-style classifier for 1x32x32 digit images."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = ConvBNReLU(1, 16)  # 16 x 32 x 32
        self.block1 = ResidualBlock(16, 16)  # identity shortcut
        self.block2 = ResidualBlock(16, 32, stride=2)  # 32 x 16 x 16, projection shortcut
        self.separable = DepthwiseSeparable(32, 48, stride=2)  # 48 x 8 x 8
        self.mix = ConcatBranches(48, 32)  # 64 x 8 x 8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(self.separable(self.block2(self.block1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- training


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    """One pass over shuffled, shift-augmented training data; returns the mean loss."""
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), config.batch_size):
        idx = order[start : start + config.batch_size]
        batch = random_shift(x[idx], config.max_shift, generator)
        loss = F.cross_entropy(model(batch), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach().item() * len(idx)
    return total / len(x)


def train(model: nn.Module, split: Split, config: TrainConfig) -> None:
    """Adam + one-cycle learning rate over ``config.epochs`` epochs."""
    x = torch.from_numpy(split.x_train)
    y = torch.from_numpy(split.y_train)
    generator = torch.Generator().manual_seed(SEED)
    steps_per_epoch = -(-len(x) // config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    for epoch in range(1, config.epochs + 1):
        loss = train_epoch(model, optimizer, scheduler, x, y, config, generator)
        if epoch % 5 == 0 or epoch == config.epochs:
            acc = accuracy(torch_logits(model, split.x_test), split.y_test)
            print(f"epoch {epoch:3d}  loss {loss:.4f}  test acc {acc:.4f}")


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Logits of the model in eval mode."""
    model.eval()
    return model(torch.from_numpy(x)).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(axis=1) == labels).mean())


# --------------------------------------------------------------------------- export


def export_onnx(model: nn.Module, example: np.ndarray) -> onnx.ModelProto:
    """Export with the TorchScript exporter, keeping BatchNormalization as separate nodes.

    ``training=PRESERVE`` on an eval-mode model exports inference-mode BatchNormalization
    but skips the exporter's eval peephole that would fold BN into the preceding Conv;
    ``do_constant_folding=False`` keeps the graph as written.
    """
    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.from_numpy(example[:1]),),
        buffer,
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
        keep_initializers_as_inputs=False,
    )
    return onnx.load_from_string(buffer.getvalue())


def inline_identity_initializers(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer; returns the count.

    The TorchScript exporter deduplicates bit-identical initializers through Identity nodes.
    Here that happens to the two BatchNorm biases feeding a residual Add (their gradients are
    equal, so they train to the same values). A BN whose bias is computed by a node rather
    than stored as an initializer would hide it from graphopt's folding passes, so each BN
    gets its own initializer back.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    inlined = [
        node
        for node in model.graph.node
        if node.op_type == "Identity" and node.input[0] in initializers
    ]
    for node in inlined:
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[node.input[0]])
        copy.name = node.output[0]
        model.graph.initializer.append(copy)
        model.graph.node.remove(node)
    return len(inlined)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Count of nodes per op type, most frequent first."""
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return dict(counts.most_common())


def check_structure(model: onnx.ModelProto, torch_model: nn.Module) -> None:
    """Fail unless the graph keeps every BN and has the required building blocks."""
    ops = op_histogram(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in torch_model.modules())
    if ops.get("BatchNormalization", 0) != n_bn:
        raise SystemExit(f"expected {n_bn} BatchNormalization nodes, graph has {ops}")
    for op in ("Conv", "Relu", "Add", "Concat", "GlobalAveragePool", "Flatten", "Gemm"):
        if op not in ops:
            raise SystemExit(f"exported graph lacks {op}: {ops}")
    if "Identity" in ops:
        raise SystemExit(f"exported graph still has Identity nodes: {ops}")
    grouped = [
        n
        for n in model.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    if not grouped:
        raise SystemExit("exported graph lacks a depthwise (group > 1) Conv")


def check_interface(model: onnx.ModelProto) -> None:
    """Fail unless the I/O names, dynamic batch dim and self-contained weights are as promised."""
    (inp,) = model.graph.input
    (out,) = model.graph.output
    if inp.name != INPUT_NAME or out.name != OUTPUT_NAME:
        raise SystemExit(f"unexpected I/O names {inp.name!r} -> {out.name!r}")
    for value in (inp, out):
        if value.type.tensor_type.shape.dim[0].dim_param != "batch":
            raise SystemExit(f"{value.name} has no dynamic 'batch' dimension")
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise SystemExit(f"initializer {init.name} uses external data")
    onnx.checker.check_model(model, full_check=True)


def onnx_logits(model: onnx.ModelProto, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    """Logits from ONNX Runtime on CPU.

    By default graph optimizations are disabled (an independent oracle that runs the graph
    as written); ``optimize=True`` uses ORT's default level, as a user would.
    """
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def add_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    return parser.parse_args()


def save_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write`` to a temporary sibling, then rename it over ``path``."""
    with atomic.atomic_path(path) as tmp:
        write(tmp)


def write_outputs(model: onnx.ModelProto, split: Split, out_dir: Path) -> tuple[Path, Path]:
    """Write digits.onnx (self-contained) and digits_test.npz (compressed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "digits.onnx"
    npz_path = out_dir / "digits_test.npz"
    save_atomically(onnx_path, lambda p: onnx.save_model(model, p, save_as_external_data=False))

    def write_npz(p: Path) -> None:
        with p.open("wb") as f:  # a file object, so numpy does not append ".npz"
            np.savez_compressed(f, x=split.x_test, y=split.y_test)

    save_atomically(npz_path, write_npz)
    return onnx_path, npz_path


def train_model(split: Split, epochs: int) -> DigitsNet:
    """Seeded, deterministic training of a fresh DigitsNet."""
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = DigitsNet()
    print(f"parameters: {count_parameters(model)}")
    start = time.perf_counter()
    train(model, split, TrainConfig(epochs=epochs))
    seconds = time.perf_counter() - start
    print(f"training time: {seconds:.1f} s ({torch.get_num_threads()} threads)")
    return model


def build_onnx(model: DigitsNet, split: Split) -> onnx.ModelProto:
    """Export, clean up exporter artefacts and check structure and interface."""
    exported = export_onnx(model, split.x_test)
    exported.doc_string = "graphopt zoo:digits: ResNet-style classifier, sklearn digits 32x32"
    print(f"inlined {inline_identity_initializers(exported)} Identity(initializer) node(s)")
    check_structure(exported, model)
    check_interface(exported)
    print(f"op histogram: {op_histogram(exported)}")
    return exported


def verify_accuracy(exported: onnx.ModelProto, model: DigitsNet, split: Split) -> dict[str, float]:
    """Torch vs ONNX Runtime test accuracy; exits non-zero if they differ or are too low."""
    ref_logits = torch_logits(model, split.x_test)
    logits = onnx_logits(exported, split.x_test)
    optimized = onnx_logits(exported, split.x_test, optimize=True)
    result = {
        "torch": accuracy(ref_logits, split.y_test),
        "onnx": accuracy(logits, split.y_test),
        "onnx_ort_optimized": accuracy(optimized, split.y_test),
    }
    print(f"test accuracy: {result}")
    print(f"max |logits_onnx - logits_torch|: {float(np.abs(logits - ref_logits).max()):.3g}")
    if result["onnx"] != result["torch"]:
        raise SystemExit(f"ONNX accuracy {result['onnx']} differs from torch {result['torch']}")
    if result["onnx"] < MIN_ACCURACY:
        raise SystemExit(f"ONNX accuracy {result['onnx']:.4f} is below {MIN_ACCURACY}")
    return result


def provenance(acc: dict[str, float], split: Split) -> dict[str, str]:
    """metadata_props: ``test_accuracy`` (a plain float, the ONNX one) plus provenance."""
    return {
        "test_accuracy": f"{acc['onnx']:.6f}",
        "test_accuracy_torch": f"{acc['torch']:.6f}",
        "test_accuracy_onnx": f"{acc['onnx']:.6f}",
        "test_samples": str(len(split.y_test)),
        "dataset": "sklearn.datasets.load_digits, /16, bilinear 8x8->32x32, "
        "train_test_split(test_size=0.25, random_state=0, stratify=y)",
        "trained_with": f"torch {torch.__version__}, bench/train_digits.py",
    }


def main() -> None:
    args = parse_args()
    split = load_split()
    print(f"train {split.x_train.shape}, test {split.x_test.shape}")
    model = train_model(split, args.epochs)
    exported = build_onnx(model, split)
    acc = verify_accuracy(exported, model, split)
    add_metadata(exported, provenance(acc, split))
    onnx.checker.check_model(exported, full_check=True)
    for path in write_outputs(exported, split, args.out_dir):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
