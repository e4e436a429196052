"""Write ``zoo:digits``' calibration split: labelled training images the test split never saw.

The digits classifier (``bench/train_digits.py``) was trained on a stratified 75 % split of
scikit-learn's digits; ``digits_test.npz`` is the other 25 %. Calibration (quantization ranges,
pruning statistics) must not see the test images, so this script takes ``SAMPLES`` images,
stratified by class, from the *training* split and writes ``digits_calib.npz`` (``x`` float32
[N, 1, 32, 32] in 0..1, ``y`` int64 [N]) beside the test split.

The upscaling from 8x8 to 32x32 is torch's ``F.interpolate(mode="bilinear",
align_corners=False)`` written in numpy, so this needs no torch; the script checks that it
reproduces the shipped test split exactly before writing anything::

    .venv/bin/python bench/digits_calibration_split.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
SAMPLES = 200
IMAGE_SIZE = 32
DATA_DIR = Path(__file__).resolve().parents[1] / "graphopt" / "zoo" / "data"


def _axis_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of torch's bilinear resize (align_corners=False) along one axis."""
    scale = source / target
    position = np.maximum((np.arange(target) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(position).astype(np.int64), source - 1)
    high = np.minimum(low + 1, source - 1)
    return low, high, (position - low).astype(np.float32)


def upscale(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """[N, 1, h, w] float32 -> [N, 1, size, size], as torch's bilinear interpolate."""
    _, _, h, w = images.shape
    y0, y1, wy = _axis_weights(h, size)
    x0, x1, wx = _axis_weights(w, size)
    rows = images[:, :, y0, :] * (1 - wy)[:, None] + images[:, :, y1, :] * wy[:, None]
    out = rows[:, :, :, x0] * (1 - wx) + rows[:, :, :, x1] * wx
    return np.ascontiguousarray(out, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=SEED, stratify=labels
    )
    with np.load(DATA_DIR / "digits_test.npz") as shipped:
        error = float(np.max(np.abs(upscale(x_test) - shipped["x"])))
        if error > 1e-6 or not np.array_equal(y_test, shipped["y"]):
            raise SystemExit(f"the numpy upscale does not reproduce the test split (max {error})")
    _, x_calib, _, y_calib = train_test_split(
        x_train, y_train, test_size=SAMPLES, random_state=SEED, stratify=y_train
    )
    target = args.out_dir / "digits_calib.npz"
    np.savez_compressed(target, x=upscale(x_calib), y=y_calib)
    print(f"{target}: {len(y_calib)} training images, test split reproduced (max {error:.1e})")


if __name__ == "__main__":
    main()
