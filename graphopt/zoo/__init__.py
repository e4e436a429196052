"""The built-in zoo: ``zoo:NAME`` models that need no download.

- the nine onnx-wheel "light" architectures (``resnet50`` ...) with calibrated random weights,
  materialised once into the user cache directory (``GRAPHOPT_CACHE_DIR`` overrides it);
- small generated models for tests (``mbv2_block``, ``mlp``, ``tiny_cnn``);
- ``digits``: a trained classifier (sklearn digits, 32x32) with labelled test and calibration
  splits.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt import atomic
from graphopt.errors import GraphoptError
from graphopt.notices import notice
from graphopt.zoo.generated import GENERATED_MODELS, build, write_large_model
from graphopt.zoo.light import LIGHT_MODELS, materialise

__all__ = [
    "LIGHT_MODELS",
    "GENERATED_MODELS",
    "TRAINED_MODELS",
    "ZOO_VERSION",
    "names",
    "load",
    "path",
    "cache_dir",
    "digits_test_data",
    "digits_calibration_data",
    "write_large_model",
    "cache_size",
    "clear_cache",
]

ZOO_VERSION = 3  # bump when materialisation changes: caches are rebuilt
TRAINED_MODELS = ("digits",)
_DATA = "data"


def names() -> list[str]:
    return [*LIGHT_MODELS, *GENERATED_MODELS, *TRAINED_MODELS]


def cache_dir() -> Path:
    override = os.environ.get("GRAPHOPT_CACHE_DIR")
    if override:
        return Path(override) / "zoo"
    import platformdirs

    return Path(platformdirs.user_cache_dir("graphopt")) / "zoo"


def _unknown(name: str) -> GraphoptError:
    return GraphoptError(f"unknown zoo model {name!r} (known: {', '.join(names())})")


def _packaged(filename: str) -> Path:
    resource = importlib.resources.files(__name__) / _DATA / filename
    return Path(str(resource))


def path(name: str) -> Path:
    """A file holding zoo model ``name`` (materialised into the cache on first use)."""
    if name in TRAINED_MODELS:
        return _packaged(f"{name}.onnx")
    if name not in LIGHT_MODELS and name not in GENERATED_MODELS:
        raise _unknown(name)
    target = cache_dir() / f"{name}-v{ZOO_VERSION}.onnx"
    if target.exists():
        return target
    notice(f"building zoo:{name}, cached in {target.parent} (first use only)")
    proto = materialise(name) if name in LIGHT_MODELS else GENERATED_MODELS[name]()
    atomic.write_bytes(target, proto.SerializeToString(), what="zoo cache file")
    return target


def cache_size() -> tuple[int, int]:
    """(files, bytes) in the zoo cache folder."""
    files = size = 0
    folder = cache_dir()
    if folder.is_dir():
        for entry in folder.rglob("*"):
            if entry.is_file() and not entry.is_symlink():
                files += 1
                size += entry.stat().st_size
    return files, size


def clear_cache() -> int:
    """Remove the zoo cache folder (models are rebuilt on next use); returns bytes freed."""
    _, size = cache_size()
    folder = cache_dir()
    if folder.is_dir():
        shutil.rmtree(folder)
    return size


def load(name: str) -> ir.Model:
    """Zoo model ``name`` as an onnx-ir model."""
    if name in GENERATED_MODELS:
        return build(name)
    from graphopt.model_io import load_model

    return load_model(path(name))


def _digits_split(filename: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_packaged(filename)) as data:
        return data["x"].astype(np.float32), data["y"].astype(np.int64)


def digits_test_data() -> tuple[np.ndarray, np.ndarray]:
    """The digits model's held-out test split: images [N,1,32,32] float32, labels [N] int64."""
    return _digits_split("digits_test.npz")


def digits_calibration_data() -> tuple[np.ndarray, np.ndarray]:
    """200 labelled images of the digits model's *training* split, for calibration (never the
    test images; made by ``bench/digits_calibration_split.py``)."""
    return _digits_split("digits_calib.npz")
