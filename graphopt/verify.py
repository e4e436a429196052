"""Verification: does a rewritten model still compute what the original computed?

Both models run in the oracle (onnxruntime, graph optimizations off) on the same inputs; each
output is compared by max abs error, max rel error, cosine similarity, SQNR and top-1 agreement.

Definitions (used everywhere in graphopt):
- ``max_abs``  = max |y - r|
- ``max_rel``  = max |y - r| / max |r|  (error relative to the output's range; robust near 0)
- ``cosine``   = <y, r> / (|y| |r|)  (1.0 when both are all-zero)
- ``sqnr_db``  = 10 log10(sum r^2 / sum (y - r)^2)  (inf when equal)
- ``top1``     = share of samples whose argmax over axis 1 agrees (classifier-shaped outputs)

NaN and infinities: a position that is NaN on both sides, or the same infinity, is equal; the
metrics are taken over the positions finite on both sides, and ``nonfinite_mismatch`` counts
the positions where only one side is NaN/inf (or the infinities differ), which makes the
errors infinite.

The reference can be what onnxruntime computes on the user's file itself
(``Verifier(model, data, source=path)``): ``load_fidelity`` then says how far graphopt's reading
of the file (``model``) is from it, and ``nonfinite_sources`` names the inputs and weights that
are NaN/inf when the reference outputs are.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.errors import GraphoptError
from graphopt.feeds import check_feed, random_inputs
from graphopt.model_io import iter_tensors

__all__ = [
    "OutputFidelity",
    "Fidelity",
    "compare_outputs",
    "random_inputs",
    "PassFidelity",
    "Verifier",
    "nonfinite_sources",
]


@dataclasses.dataclass(frozen=True)
class OutputFidelity:
    """How far one output moved."""

    name: str
    max_abs: float
    max_rel: float
    cosine: float
    sqnr_db: float
    top1_agreement: float | None
    nonfinite_mismatch: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """Per-output fidelity plus the worst case over outputs."""

    outputs: tuple[OutputFidelity, ...]

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def cosine(self) -> float:
        return min((o.cosine for o in self.outputs), default=1.0)

    @property
    def sqnr_db(self) -> float:
        return min((o.sqnr_db for o in self.outputs), default=math.inf)

    @property
    def top1_agreement(self) -> float | None:
        values = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        return min(values) if values else None

    @property
    def nonfinite_mismatch(self) -> int:
        return sum(o.nonfinite_mismatch for o in self.outputs)

    def to_dict(self) -> dict:
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "cosine": self.cosine,
            "sqnr_db": _json_float(self.sqnr_db),
            "top1_agreement": self.top1_agreement,
            "nonfinite_mismatch": self.nonfinite_mismatch,
            "outputs": [
                {**o.to_dict(), "sqnr_db": _json_float(o.sqnr_db)} for o in self.outputs
            ],
        }

    def summary(self) -> str:
        """One short line: worst max rel error, SQNR, cosine, top-1 agreement."""
        top1 = "" if self.top1_agreement is None else f", top-1 {self.top1_agreement:.0%}"
        sqnr = "inf" if math.isinf(self.sqnr_db) else f"{self.sqnr_db:.1f}"
        nonfinite = (f", NaN/inf differ at {self.nonfinite_mismatch}"
                     if self.nonfinite_mismatch else "")
        return f"rel {self.max_rel:.1e}, {sqnr} dB, cos {self.cosine:.5f}{top1}{nonfinite}"


def _json_float(value: float) -> float | str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _compare_one(name: str, ref: np.ndarray, out: np.ndarray) -> OutputFidelity:
    if ref.shape != out.shape:
        raise GraphoptError(f"output {name!r}: shape changed from {ref.shape} to {out.shape}")
    r = np.asarray(ref, dtype=np.float64).ravel()
    y = np.asarray(out, dtype=np.float64).ravel()
    mismatch = 0
    r_finite, y_finite = np.isfinite(r), np.isfinite(y)
    if not (r_finite.all() and y_finite.all()):
        agree = (np.isnan(r) & np.isnan(y)) | (np.isinf(r) & (r == y))
        mismatch = int(np.count_nonzero(~(r_finite & y_finite) & ~agree))
        both = r_finite & y_finite
        r, y = r[both], y[both]
    top1 = _top1(ref, out)
    if mismatch:
        return OutputFidelity(name, math.inf, math.inf, 0.0, -math.inf, top1, mismatch)
    if r.size == 0:
        return OutputFidelity(name, 0.0, 0.0, 1.0, math.inf, top1)
    diff = y - r
    max_abs = float(np.max(np.abs(diff)))
    scale = float(np.max(np.abs(r)))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    norms = float(np.linalg.norm(r) * np.linalg.norm(y))
    cosine = float(np.dot(r, y) / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
    noise = float(np.dot(diff, diff))
    signal = float(np.dot(r, r))
    if noise == 0:
        sqnr = math.inf
    else:
        sqnr = 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return OutputFidelity(name, max_abs, max_rel, cosine, sqnr, top1)


def _top1(ref: np.ndarray, out: np.ndarray) -> float | None:
    """Argmax agreement over axis 1 for classifier-shaped outputs ([N, C] or [N, C, 1, 1])."""
    if ref.ndim < 2 or ref.shape[0] == 0 or ref.shape[1] < 2 or any(d != 1 for d in ref.shape[2:]):
        return None
    if not np.issubdtype(ref.dtype, np.floating):
        return None
    a = ref.reshape(ref.shape[0], ref.shape[1]).argmax(axis=1)
    b = out.reshape(out.shape[0], out.shape[1]).argmax(axis=1)
    return float(np.mean(a == b))


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
) -> Fidelity:
    """Fidelity of ``candidate`` against ``reference`` (matched by output name, then by order)."""
    if set(reference) == set(candidate):
        pairs = [(name, reference[name], candidate[name]) for name in reference]
    elif len(reference) == len(candidate):
        pairs = [
            (name, ref, out)
            for (name, ref), out in zip(reference.items(), candidate.values(), strict=True)
        ]
    else:
        raise GraphoptError(
            f"outputs changed: {sorted(reference)} became {sorted(candidate)}"
        )
    return Fidelity(tuple(_compare_one(name, ref, out) for name, ref, out in pairs))


@dataclasses.dataclass(frozen=True)
class PassFidelity:
    """After one pass: against the model before it (``step``) and the original (``cumulative``)."""

    step: Fidelity
    cumulative: Fidelity


def _concatenate(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs of several batches joined along the sample axis (scalars are stacked)."""
    if len(batches) == 1:
        return batches[0]
    joined = {}
    for name in batches[0]:
        arrays = [batch[name] for batch in batches]
        joined[name] = (np.stack(arrays) if arrays[0].ndim == 0
                        else np.concatenate(arrays, axis=0))
    return joined


class Verifier:
    """Holds the original model's outputs on fixed inputs and compares rewrites against them.

    ``data`` is one feed, a data source (its batches are kept: verification sets are small) or
    ``None`` for seeded random inputs; ``description`` says which, for reports. With
    ``source`` (the file ``original`` was loaded from) the reference is onnxruntime's run of
    that file, and ``load_fidelity`` compares graphopt's reading of it against that.
    """

    def __init__(
        self,
        original: ir.Model,
        data: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]] | None = None,
        *,
        seed: int = 0,
        source: str | os.PathLike | None = None,
    ) -> None:
        if data is None:
            self.feeds = [random_inputs(original, seed=seed)]
            self.description = f"random inputs (seed {seed}, 1 sample)"
        elif isinstance(data, Mapping):
            self.feeds = [dict(data)]
            self.description = "given inputs"
        else:
            self.feeds = [dict(feed) for feed in data]
            self.description = getattr(data, "description", "given inputs")
        if not self.feeds:
            raise GraphoptError("verification data has no samples")
        for feed in self.feeds:
            check_feed(original, feed)
        self.load_fidelity: Fidelity | None = None
        if source is None:
            self.reference = self.outputs(original)
            self.previous = self.reference
        else:
            session = oracle.make_file_session(source)
            self.reference = _concatenate([oracle.run_model(session, feed)
                                           for feed in self.feeds])
            del session
            self.previous = self.outputs(original)
            self.load_fidelity = compare_outputs(self.reference, self.previous)
        self.nonfinite_sources: list[str] = []
        if not all(np.isfinite(v).all() for v in self.reference.values()
                   if np.issubdtype(v.dtype, np.floating)):
            self.nonfinite_sources = nonfinite_sources(original, self.feeds)

    @property
    def nonfinite_outputs(self) -> int:
        """How many reference output values are NaN or infinite."""
        return sum(int(np.count_nonzero(~np.isfinite(v))) for v in self.reference.values()
                   if np.issubdtype(v.dtype, np.floating))

    def outputs(self, model: ir.Model) -> dict[str, np.ndarray]:
        """``model``'s outputs on the verification inputs, batches joined."""
        session = oracle.make_session(model)
        return _concatenate([oracle.run_model(session, feed) for feed in self.feeds])

    def check(self, model: ir.Model) -> Fidelity:
        """Run ``model`` on the stored inputs and compare with the original's outputs."""
        return compare_outputs(self.reference, self.outputs(model))

    def check_pass(self, model: ir.Model) -> PassFidelity:
        """Step and cumulative fidelity of ``model``; it becomes the next step's reference."""
        outputs = self.outputs(model)
        result = PassFidelity(step=compare_outputs(self.previous, outputs),
                              cumulative=compare_outputs(self.reference, outputs))
        self.previous = outputs
        return result


def _nonfinite_count(array: np.ndarray) -> tuple[int, int]:
    if not np.issubdtype(array.dtype, np.floating):
        return 0, 0
    return int(np.count_nonzero(np.isnan(array))), int(np.count_nonzero(np.isinf(array)))


def nonfinite_sources(model: ir.Model, feeds: Iterable[Mapping[str, np.ndarray]],
                      limit: int = 3) -> list[str]:
    """Inputs and weights holding NaN or infinities, as ``"weight 'w' (1 NaN)"`` (at most
    ``limit`` of them, then how many more)."""
    found: list[str] = []

    def note(kind: str, name: str, array: np.ndarray) -> None:
        nans, infs = _nonfinite_count(np.asarray(array))
        if nans or infs:
            parts = [f"{nans} NaN" if nans else "", f"{infs} inf" if infs else ""]
            found.append(f"{kind} {name!r} ({', '.join(p for p in parts if p)})")

    for feed in feeds:
        for name, array in feed.items():
            note("input", name, array)
    for tensor in iter_tensors(model):
        if tensor.dtype is not None and tensor.dtype.is_floating_point():
            note("weight", tensor.name or "?", tensor.numpy())
    unique = list(dict.fromkeys(found))
    if len(unique) > limit:
        return [*unique[:limit], f"{len(unique) - limit} more"]
    return unique
