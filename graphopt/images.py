"""A folder of images as model input: decoding with Pillow and a preprocessing spec.

The spec says how a photo becomes the tensor the model was trained on, as comma-separated
``key=value`` items (lists separated by ``;``)::

    size=224,layout=nchw,scale=1/255,mean=0.485;0.456;0.406,std=0.229;0.224;0.225,order=rgb

==========  =================================================  ===============================
key         meaning                                            default
==========  =================================================  ===============================
``size``    output height and width: ``224`` or ``240x320``     the model input's static dims
``resize``  ``stretch`` to size, or ``crop``: shorter side to   ``stretch``
            size, then the centre
``layout``  ``nchw`` or ``nhwc``                               from the model input's shape
``scale``   multiply pixel values (0..255) by this; ``1/255``  ``1/255``
``mean``    subtract per channel (after scaling)               ``0``
``std``     divide per channel (after subtracting)             ``1``
``order``   channel order ``rgb`` or ``bgr``                   ``rgb``
==========  =================================================  ===============================

One channel in the model input means grey-scale images. Images are decoded lazily, a batch at
a time; every file is opened once at construction so that an unreadable one is reported before
any work starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt.calibration import SampleData, model_inputs
from graphopt.errors import GraphoptError

__all__ = ["IMAGE_SUFFIXES", "Preprocess", "ImageFolderData"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
_KEYS = ("size", "resize", "layout", "scale", "mean", "std", "order")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How an image becomes one sample (see the module docstring)."""

    size: tuple[int, int] | None = None
    resize: str = "stretch"
    layout: str | None = None
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    order: str = "rgb"

    @classmethod
    def parse(cls, text: str | None) -> Preprocess:
        if text is None or not text.strip():
            return cls()
        values: dict[str, object] = {}
        for item in text.split(","):
            key, eq, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not eq or key not in _KEYS:
                raise GraphoptError(
                    f"--preprocess: {item.strip()!r} is not one of {', '.join(_KEYS)} = value"
                )
            values[key] = _parse_value(key, raw)
        return cls(**values)


def _number(text: str, key: str) -> float:
    try:
        if "/" in text:
            top, _, bottom = text.partition("/")
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise GraphoptError(f"--preprocess {key}={text!r}: not a number") from None


def _parse_value(key: str, raw: str) -> object:
    if key == "size":
        parts = raw.lower().split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise GraphoptError(f"--preprocess size={raw!r}: expected N or HxW") from None
        if len(dims) not in (1, 2) or min(dims) < 1:
            raise GraphoptError(f"--preprocess size={raw!r}: expected N or HxW")
        return dims * 2 if len(dims) == 1 else dims
    if key in ("mean", "std"):
        numbers = tuple(_number(p, key) for p in raw.split(";") if p.strip())
        if key == "std" and any(v == 0 for v in numbers):
            raise GraphoptError("--preprocess std: values must not be 0")
        return numbers
    if key == "scale":
        return _number(raw, key)
    choices = {"resize": ("stretch", "crop"), "layout": ("nchw", "nhwc"),
               "order": ("rgb", "bgr")}[key]
    if raw.lower() not in choices:
        raise GraphoptError(f"--preprocess {key}={raw!r}: expected {' or '.join(choices)}")
    return raw.lower()


def _input_geometry(model: ir.Model, preprocess: Preprocess) -> tuple[str, str, int, tuple]:
    """(input name, layout, channels, (height, width)) of a single image input."""
    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise GraphoptError(
            f"an image folder feeds single-input models; this one has inputs"
            f" {[v.name for v in inputs]}: give an .npz instead"
        )
    value = inputs[0]
    shape = [d if isinstance(d, int) else str(d) for d in value.shape or []]
    if len(shape) != 4:
        raise GraphoptError(f"input {value.name!r} has shape {shape}: an image folder feeds"
                            " rank-4 image inputs")
    layout = preprocess.layout
    if layout is None:
        layout = "nhwc" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "nchw"
    channels, spatial = (shape[1], shape[2:4]) if layout == "nchw" else (shape[3], shape[1:3])
    if channels not in (1, 3):
        raise GraphoptError(f"input {value.name!r}: {channels} channels in layout {layout};"
                            " images give 1 (grey) or 3 (colour)")
    size = preprocess.size
    if size is None:
        if not all(isinstance(d, int) for d in spatial):
            raise GraphoptError(f"input {value.name!r} has dynamic spatial dims {spatial}: give"
                                " --preprocess size=HxW")
        size = (int(spatial[0]), int(spatial[1]))
    for dim, want in zip(spatial, size, strict=True):
        if isinstance(dim, int) and dim != want:
            raise GraphoptError(f"--preprocess size {size[0]}x{size[1]} does not fit input"
                                f" {value.name!r} of shape {shape}")
    return value.name, layout, channels, size


class ImageFolderData(SampleData):
    """Every image in a folder (sorted by name), preprocessed into the model's single input."""

    def __init__(self, model: ir.Model, folder: Path | str, *, preprocess: str | None = None,
                 batch_size: int | None = None) -> None:
        self.folder = Path(folder)
        self.preprocess = Preprocess.parse(preprocess)
        self.files = sorted(p for p in self.folder.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise GraphoptError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.input_name, self.layout, self.channels, self.size = _input_geometry(
            model, self.preprocess)
        self._check_channels_of(self.preprocess.mean, "mean")
        self._check_channels_of(self.preprocess.std, "std")
        value = model_inputs(model)[0]
        self.dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        for path in self.files:
            _verify_image(path)
        super().__init__(model, batch_size=batch_size,
                         description=f"{self.folder} ({len(self.files)} images)")
        self._check_first()

    def _check_channels_of(self, values: tuple[float, ...], key: str) -> None:
        if len(values) not in (1, self.channels):
            raise GraphoptError(f"--preprocess {key}: {len(values)} values for"
                                f" {self.channels} channels")

    def _sample_count(self) -> int:
        return len(self.files)

    def _load(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.stack([self._decode(self.files[int(i)]) for i in indices])
        return {self.input_name: batch}

    def _decode(self, path: Path) -> np.ndarray:
        from PIL import Image

        height, width = self.size
        with Image.open(path) as image:
            image = image.convert("L" if self.channels == 1 else "RGB")
            if self.preprocess.resize == "crop":
                image = _centre_crop(image, width, height)
            else:
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.preprocess.order == "bgr":
            pixels = pixels[:, :, ::-1]
        if np.issubdtype(self.dtype, np.floating):
            mean = np.asarray(self.preprocess.mean, dtype=np.float32)
            std = np.asarray(self.preprocess.std, dtype=np.float32)
            pixels = (pixels * np.float32(self.preprocess.scale) - mean) / std
        if self.layout == "nchw":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=self.dtype)


def _centre_crop(image, width: int, height: int):
    from PIL import Image

    factor = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * factor)),
                            max(height, round(image.height * factor))),
                           Image.Resampling.BILINEAR)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _verify_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GraphoptError(f"{path}: not a readable image ({text})") from None
