"""``graphopt debug``: where do two models, or one model on two backends, part ways?

Given a reference and a candidate (an original and its rewrite, or the same model run on two
backends) and some inputs, :func:`debug_models` answers in up to four steps:

1. **outputs**: both run once; the output fidelity (the metrics of :mod:`graphopt.verify`);
2. **sweep**: every matched tensor (:mod:`.debug_match`) compared in the reference's graph
   order, SQNR / cosine / max error, with the first tensor below the threshold and the worst
   one. Tensors are exposed in chunks of at most ``chunk_bytes`` per side, so memory stays at
   one run plus one chunk whatever the model's size (2 runs per chunk);
3. **bisection** (when something diverges): the candidate runs from a cut on, fed the
   reference's tensors at the cut (:meth:`PreparedModel.starting_at`). A fault before the cut
   is bypassed, one after it is not, so "the run from the cut still makes at least
   ``BISECT_SHARE`` of the full output error power" holds up to the faulty node and not after
   it: a binary search finds the last cut from which the candidate's own computation still
   carries most of the error, and the nodes up to the next valid cut are the culprit, in
   ``ceil(log2(cuts))`` candidate runs (each with one reference run that yields the cut's
   tensors, unless the two share one graph, below). With an error spread over many nodes
   (another precision) it names the node after which less than that share remains;
4. **Q/DQ contributions** (a candidate with activation Q/DQ pairs, a reference without, and
   a divergence): each pair disabled in turn (replaced by the float operation it stands for,
   :meth:`PreparedModel.bypassing`), the share of the final error power that disappears
   with it, ranked (negative: the pair's error cancelled another's); the pairs that carry
   most of it become a ``keep float`` suggestion for ``quantize(keep=[...])``. The pairs are
   tried noisiest first (by the SQNR each pair injects, from the sweep), at most
   ``max_pairs`` of them.

When both models run on the same runtime and use the same opsets, the output comparison and
each bisection step are one run of a joint graph (:func:`.debug_graph.hybrid`: the
reference's nodes up to the cut, the candidate's from it), so locating a fault takes
``1 + ceil(log2(cuts))`` runs in all. Only one session is alive at a time
(:mod:`.debug_exec`); weights are mapped from one scratch copy of each model, never copied
per variant.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from graphopt import atomic
from graphopt.backends.registry import BackendSpec
from graphopt.errors import GraphoptError
from graphopt.feeds import check_feed
from graphopt.harness.debug_exec import Executor
from graphopt.harness.debug_graph import (
    HYBRID_PREFIX,
    PreparedModel,
    QdqPair,
    can_join,
    hybrid,
)
from graphopt.harness.debug_match import TensorMatch, match_tensors
from graphopt.verify import Fidelity, OutputFidelity, compare_outputs

__all__ = [
    "DEFAULT_THRESHOLD_DB",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_PAIRS",
    "KEEP_SHARE",
    "BISECT_SHARE",
    "DebugConfig",
    "TensorRow",
    "Bisection",
    "PairContribution",
    "DebugReport",
    "debug_models",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD_DB = 30.0
DEFAULT_CHUNK_BYTES = 32 << 20
DEFAULT_MAX_PAIRS = 24
KEEP_SHARE = 0.1
BISECT_SHARE = 0.5
"""A run from a cut on that makes at least this share of the full output error power still
"diverges" (bisection)."""
"""A Q/DQ pair whose removal takes away at least this share of the final error power is
suggested to stay float."""
_LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DebugConfig:
    """How :func:`debug_models` searches (see the module docstring)."""

    threshold_db: float = DEFAULT_THRESHOLD_DB
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    sweep: bool = True
    bisect: bool = True
    pairs: bool = True  # Q/DQ pairs disabled in turn (quantized candidates)
    max_pairs: int = DEFAULT_MAX_PAIRS  # 0: every pair


def _sqnr_json(value: float) -> float | str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _fidelity_dict(f: OutputFidelity) -> dict:
    return {"sqnr_db": _sqnr_json(f.sqnr_db), "cosine": f.cosine, "max_abs": f.max_abs,
            "max_rel": f.max_rel, "nonfinite_mismatch": f.nonfinite_mismatch}


@dataclasses.dataclass(frozen=True)
class TensorRow:
    """One matched tensor's fidelity; ``qdq_sqnr_db`` is what its Q/DQ pair injects (the
    candidate's float tensor against its dequantized copy), when it has one."""

    match: TensorMatch
    fidelity: OutputFidelity | None
    qdq_sqnr_db: float | None = None
    problem: str | None = None  # why it was not compared (a shape change)

    def below(self, threshold_db: float) -> bool:
        return self.fidelity is not None and (
            self.fidelity.sqnr_db < threshold_db or self.fidelity.nonfinite_mismatch > 0)

    def to_dict(self) -> dict:
        return {**self.match.to_dict(),
                "fidelity": None if self.fidelity is None else _fidelity_dict(self.fidelity),
                "qdq_sqnr_db": None if self.qdq_sqnr_db is None else _sqnr_json(
                    self.qdq_sqnr_db),
                "problem": self.problem}


@dataclasses.dataclass(frozen=True)
class Bisection:
    """Where the candidate's own computation starts to break the output."""

    culprit: tuple[str, ...]  # candidate node names between the two deciding cuts
    culprit_ops: tuple[str, ...]
    cut_positions: int  # valid cuts searched over
    candidate_runs: int
    reference_runs: int
    steps: tuple[dict, ...]  # each tried cut: position, first node, output SQNR, diverges

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PairContribution:
    """One activation Q/DQ pair disabled: the output then, and the error share it carried."""

    pair: str  # the QuantizeLinear node's name
    tensor: str  # the float tensor it quantizes (candidate name)
    layers: tuple[str, ...]  # node names to keep float for it
    output_sqnr_db: float  # output SQNR with the pair disabled
    share: float  # share of the final error power removed with the pair
    injected_sqnr_db: float | None

    def to_dict(self) -> dict:
        return {"pair": self.pair, "tensor": self.tensor, "layers": list(self.layers),
                "output_sqnr_db": _sqnr_json(self.output_sqnr_db), "share": self.share,
                "injected_sqnr_db": None if self.injected_sqnr_db is None
                else _sqnr_json(self.injected_sqnr_db)}


@dataclasses.dataclass
class DebugReport:
    reference: str
    candidate: str
    reference_backend: str
    candidate_backend: str
    data: str
    threshold_db: float
    reference_nodes: int
    candidate_nodes: int
    matched: int
    outputs: Fidelity
    rows: list[TensorRow]
    bisection: Bisection | None
    contributions: list[PairContribution]
    pairs_total: int
    keep: list[str]
    reference_runs: int
    candidate_runs: int
    max_exposed_bytes: int

    @property
    def diverges(self) -> bool:
        return self.outputs.sqnr_db < self.threshold_db or self.outputs.nonfinite_mismatch > 0

    @property
    def first_divergence(self) -> TensorRow | None:
        return next((r for r in self.rows if r.below(self.threshold_db)), None)

    @property
    def worst(self) -> TensorRow | None:
        compared = [r for r in self.rows if r.fidelity is not None]
        return min(compared, key=lambda r: r.fidelity.sqnr_db, default=None)

    @property
    def verdict(self) -> str:
        if not self.diverges and self.first_divergence is None:
            return "no divergence"
        return "diverges"

    def to_dict(self) -> dict:
        first, worst = self.first_divergence, self.worst
        return {
            "reference": self.reference, "candidate": self.candidate,
            "reference_backend": self.reference_backend,
            "candidate_backend": self.candidate_backend, "data": self.data,
            "threshold_db": self.threshold_db, "verdict": self.verdict,
            "reference_nodes": self.reference_nodes, "candidate_nodes": self.candidate_nodes,
            "matched_tensors": self.matched, "outputs": self.outputs.to_dict(),
            "first_divergence": None if first is None else first.to_dict(),
            "worst": None if worst is None else worst.to_dict(),
            "bisection": None if self.bisection is None else self.bisection.to_dict(),
            "contributions": [c.to_dict() for c in self.contributions],
            "pairs_total": self.pairs_total, "keep_float": self.keep,
            "runs": {"reference": self.reference_runs, "candidate": self.candidate_runs},
            "max_exposed_bytes": self.max_exposed_bytes,
            "tensors": [r.to_dict() for r in self.rows],
        }


def _join(runs: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]) -> dict:
    """Each name's values over all feeds, joined on the sample axis."""
    joined = {}
    for name in names:
        arrays = [run[name] for run in runs]
        joined[name] = arrays[0] if len(arrays) == 1 else (
            np.stack(arrays) if arrays[0].ndim == 0 else np.concatenate(arrays, axis=0))
    return joined


def _fetch(executor: Executor, prepared: PreparedModel, names: Sequence[str],
           feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The values ``names`` for each feed: graph inputs from the feed, the rest computed."""
    computed = [n for n in dict.fromkeys(names) if n not in prepared.inputs]
    runs = executor.run(prepared.exposing(computed), feeds) if computed else [{} for _ in feeds]
    return [{**{n: feed[n] for n in names if n in prepared.inputs}, **run}
            for feed, run in zip(feeds, runs, strict=True)]


def _compare(name: str, ref: np.ndarray, out: np.ndarray) -> OutputFidelity:
    return compare_outputs({name: ref}, {name: out}).outputs[0]


def _noise_power(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> float:
    ref = list(reference.values())
    out = list(outputs[n] for n in reference) if set(outputs) == set(reference) else \
        list(outputs.values())
    total = 0.0
    for r, y in zip(ref, out, strict=True):
        diff = np.asarray(y, np.float64) - np.asarray(r, np.float64)
        diff = diff[np.isfinite(diff)]
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return total


def _share(noise: float, full: float) -> float:
    """``noise`` as a share of ``full`` (error powers; an infinite one is all of it)."""
    if full <= 0:
        return 0.0
    if math.isinf(full):
        return 1.0 if math.isinf(noise) else 0.0
    return noise / full


class _Session:
    """The state of one debugging run: both prepared models, executors, feeds, reference
    outputs."""

    def __init__(self, reference: PreparedModel, candidate: PreparedModel,
                 ref_exec: Executor, cand_exec: Executor, feeds: list[dict],
                 config: DebugConfig, progress: Progress) -> None:
        self.ref, self.cand = reference, candidate
        self.ref_exec, self.cand_exec = ref_exec, cand_exec
        self.feeds = feeds
        self.config = config
        self.progress = progress
        self.matches = match_tensors(reference, candidate)
        # The sweep holds a chunk's values for every feed at once: a tensor's bytes per run
        # (its shape's dynamic batch = the largest feed's) times the feeds. A model with a
        # fixed batch of 1 fed 48 samples holds 48 copies, not one.
        self.feed_batch = max(next(iter(f.values())).shape[0] if f and next(iter(f.values())).ndim
                              else 1 for f in feeds)
        self.max_exposed = 0
        # Both models on the same runtime with the same opsets: one graph holds the
        # reference and the candidate (outputs), or the reference's prefix and the
        # candidate's suffix (a bisection step), so each takes one run instead of two.
        self.joined = ref_exec.backend == cand_exec.backend and can_join(reference, candidate)
        self.to_ref = self._reference_names()
        self.one_sided = {pair.before for pair in candidate.pairs if pair.one_sided}
        if self.joined and all(v in self.to_ref for v in candidate.cut_values(0)):
            proto = hybrid(reference, candidate, 0, self.to_ref, reference.outputs)
            runs = cand_exec.run(proto, feeds)
            self.ref_outputs = _join(runs, reference.outputs)
            self.cand_outputs = self._candidate_outputs(runs, 0)
        else:
            self.ref_outputs = _join(_fetch(ref_exec, reference, reference.outputs, feeds),
                                     reference.outputs)
            self.cand_outputs = _join(_fetch(cand_exec, candidate, candidate.outputs, feeds),
                                      candidate.outputs)
        self.outputs = compare_outputs(self.ref_outputs, self.cand_outputs)
        self.full_noise = (math.inf if self.outputs.nonfinite_mismatch
                           else _noise_power(self.ref_outputs, self.cand_outputs))

    def _candidate_outputs(self, runs: Sequence[Mapping[str, np.ndarray]],
                           position: int) -> dict[str, np.ndarray]:
        """The candidate's outputs from runs of a :func:`hybrid` graph cut at ``position``."""
        cut = set(self.cand.cut_values(position))
        names = {n: (self.to_ref[n] if n in cut else HYBRID_PREFIX + n)
                 for n in self.cand.outputs}
        return _join([{n: run[names[n]] for n in self.cand.outputs} for run in runs],
                     self.cand.outputs)

    # -- sweep -----------------------------------------------------------------------------

    def _chunks(self) -> list[list[TensorMatch]]:
        chunks: list[list[TensorMatch]] = [[]]
        used = 0
        for match in self.matches:
            size = self.ref.estimated_bytes(match.reference, self.feed_batch) * len(self.feeds)
            if chunks[-1] and used + size > self.config.chunk_bytes:
                chunks.append([])
                used = 0
            chunks[-1].append(match)
            used += size
        return [c for c in chunks if c]

    def sweep(self) -> list[TensorRow]:
        rows: list[TensorRow] = []
        chunks = self._chunks()
        for number, chunk in enumerate(chunks, 1):
            self.progress(f"sweep: chunk {number} of {len(chunks)} ({len(chunk)} tensors)")
            ref_values = _join(_fetch(self.ref_exec, self.ref, [m.reference for m in chunk],
                                      self.feeds), [m.reference for m in chunk])
            names = [m.candidate for m in chunk] + [m.before_qdq for m in chunk if m.before_qdq]
            cand_values = _join(_fetch(self.cand_exec, self.cand, names, self.feeds), names)
            exposed = sum(a.nbytes for a in ref_values.values()) + sum(
                a.nbytes for a in cand_values.values())
            self.max_exposed = max(self.max_exposed, exposed)
            for match in chunk:
                rows.append(self._row(match, ref_values[match.reference], cand_values,
                                      match.before_qdq in self.one_sided))
            del ref_values, cand_values
        return rows

    @staticmethod
    def _row(match: TensorMatch, ref: np.ndarray, cand_values: Mapping,
             one_sided: bool) -> TensorRow:
        """``one_sided``: the pair's clamp at 0 is a ReLU (see
        :meth:`PreparedModel.bypassing`), so what it injects is measured against the float
        tensor's ReLU."""
        out = cand_values[match.candidate]
        if ref.shape != out.shape:
            return TensorRow(match, None, problem=f"shape {list(out.shape)} in the candidate,"
                                                  f" {list(ref.shape)} in the reference")
        injected = None
        if match.before_qdq is not None:
            before = cand_values[match.before_qdq]
            if one_sided:
                before = np.maximum(before, 0)
            injected = _compare(match.candidate, before, out).sqnr_db
        return TensorRow(match, _compare(match.reference, ref, out), injected)

    # -- bisection -------------------------------------------------------------------------

    def _reference_names(self) -> dict[str, str]:
        names = {}
        for match in self.matches:
            names[match.candidate] = match.reference
            if match.before_qdq is not None:
                names[match.before_qdq] = match.reference
        ref_inputs = self.ref.inputs
        for index, name in enumerate(self.cand.inputs):
            if name in ref_inputs:
                names[name] = name
            elif len(ref_inputs) == len(self.cand.inputs):
                names[name] = ref_inputs[index]
        return names

    def _diverges(self, outputs: Mapping[str, np.ndarray]) -> tuple[bool, float, float]:
        """(diverges, output SQNR, share of the full error power) of a run from a cut."""
        fidelity = compare_outputs(self.ref_outputs, outputs)
        if fidelity.nonfinite_mismatch:
            return True, fidelity.sqnr_db, 1.0
        share = _share(_noise_power(self.ref_outputs, outputs), self.full_noise)
        return share >= BISECT_SHARE, fidelity.sqnr_db, share

    def bisect(self) -> Bisection | None:
        to_ref = self.to_ref
        count = len(self.cand.order)
        valid = [p for p in range(count + 1)
                 if all(v in to_ref for v in self.cand.cut_values(p))]
        if self.full_noise <= 0 or len(valid) < 2 or valid[0] != 0:
            logger.info("bisection: the candidate's inputs have no reference counterpart")
            return None
        ref_before, cand_before = self.ref_exec.runs, self.cand_exec.runs
        low, high = 0, len(valid) - 1  # diverges from valid[low]; not from valid[high]
        steps = []
        while high - low > 1:
            mid = (low + high) // 2
            position = valid[mid]
            self.progress(f"bisection: cut at position {position} of {count}")
            bad, sqnr, share = self._run_from(position, to_ref)
            node = self.cand.node_name(self.cand.order[position])
            steps.append({"position": position, "node": node, "output_sqnr_db": _sqnr_json(sqnr),
                          "error_share": share, "diverges": bad})
            low, high = (mid, high) if bad else (low, mid)
        span = [self.cand.order[p] for p in range(valid[low], valid[high])]
        return Bisection(
            culprit=tuple(self.cand.node_name(i) for i in span),
            culprit_ops=tuple(self.cand.nodes[i].op_type for i in span),
            cut_positions=len(valid), candidate_runs=self.cand_exec.runs - cand_before,
            reference_runs=self.ref_exec.runs - ref_before, steps=tuple(steps))

    def _run_from(self, position: int,
                  to_ref: Mapping[str, str]) -> tuple[bool, float, float]:
        if self.joined:
            runs = self.cand_exec.run(hybrid(self.ref, self.cand, position, to_ref), self.feeds)
            return self._diverges(self._candidate_outputs(runs, position))
        cut = self.cand.cut_values(position)
        ref_runs = _fetch(self.ref_exec, self.ref, [to_ref[v] for v in cut], self.feeds)
        fed = [{**feed, **{v: run[to_ref[v]] for v in cut}}
               for feed, run in zip(self.feeds, ref_runs, strict=True)]
        del ref_runs
        proto = self.cand.starting_at(position, fed[0])
        outputs = _join(self.cand_exec.run(proto, fed), self.cand.outputs)
        return self._diverges(outputs)

    # -- Q/DQ contributions ----------------------------------------------------------------

    def contributions(self, rows: Sequence[TensorRow]) -> list[PairContribution]:
        injected = {r.match.before_qdq: r.qdq_sqnr_db for r in rows if r.match.before_qdq}
        pairs = sorted(self.cand.pairs,
                       key=lambda p: injected.get(p.before, math.inf))
        if self.config.max_pairs:
            pairs = pairs[: self.config.max_pairs]
        results = []
        for number, pair in enumerate(pairs, 1):
            self.progress(f"Q/DQ pairs: {number} of {len(pairs)} disabled in turn")
            outputs = _join(self.cand_exec.run(self.cand.bypassing([pair]), self.feeds),
                            self.cand.outputs)
            fidelity = compare_outputs(self.ref_outputs, outputs)
            noise = math.inf if fidelity.nonfinite_mismatch else _noise_power(
                self.ref_outputs, outputs)
            results.append(PairContribution(
                pair.name, pair.before, self._layers(pair), fidelity.sqnr_db,
                1.0 - _share(noise, self.full_noise), injected.get(pair.before)))
        results.sort(key=lambda c: c.share, reverse=True)
        return results

    def _layers(self, pair: QdqPair) -> tuple[str, ...]:
        """The reference's node names ``quantize(keep=...)`` takes for this pair: the
        weighted layers writing or reading the tensor, else the node writing it."""
        ref, cand = self.ref, self.cand
        ref_names = {node.name for node in ref.nodes if node.name}
        to_ref = {m.before_qdq: m.reference for m in self.matches if m.before_qdq}
        writer = ref.producer.get(to_ref.get(pair.before, ""))
        layers = []
        if writer is not None and ref.nodes[writer].op_type in _LAYER_OPS:
            layers.append(ref.node_name(writer))
        layers += [cand.nodes[i].name for i in cand.readers.get(pair.after, [])
                   if cand.nodes[i].op_type in _LAYER_OPS and cand.nodes[i].name in ref_names]
        if not layers and writer is not None:
            layers = [ref.node_name(writer)]
        return tuple(dict.fromkeys(layers))


def _keep(contributions: Sequence[PairContribution]) -> list[str]:
    chosen = [c for c in contributions if c.share >= KEEP_SHARE]
    if not chosen and contributions and contributions[0].share > 0:
        chosen = contributions[:1]
    return list(dict.fromkeys(name for c in chosen for name in c.layers))


def debug_models(
    reference: ir.Model,
    candidate: ir.Model,
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    reference_label: str = "reference",
    candidate_label: str = "candidate",
    reference_backend: BackendSpec | None = None,
    candidate_backend: BackendSpec | None = None,
    data_description: str = "given inputs",
    config: DebugConfig | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> DebugReport:
    """Compare ``candidate`` with ``reference`` on ``feeds`` (see the module docstring).

    Either model may be the other (the same model on two backends); backends are ``None``
    for graphopt's oracle.
    """
    config = config or DebugConfig()
    feeds = [dict(feed) for feed in feeds]
    if not feeds:
        raise GraphoptError("debug: no input data")
    for feed in feeds:
        check_feed(reference, feed, where="input data (reference)")
        check_feed(candidate, feed, where="input data (candidate)")
    say = progress or (lambda text: None)
    with atomic.scratch_dir() as folder:
        ref = PreparedModel(reference, folder, "reference")
        cand = PreparedModel(candidate, folder, "candidate")
        session = _Session(ref, cand, Executor(ref, reference_backend, threads=threads),
                           Executor(cand, candidate_backend, threads=threads),
                           feeds, config, say)
        rows = session.sweep() if config.sweep else []
        diverges = (session.outputs.sqnr_db < config.threshold_db
                    or session.outputs.nonfinite_mismatch > 0
                    or any(r.below(config.threshold_db) for r in rows))
        bisection = session.bisect() if config.bisect and diverges else None
        # Q/DQ pairs explain a quantized candidate against a float reference; between two
        # quantized models (or one on two backends) disabling a pair on one side says nothing.
        quantized = bool(cand.pairs) and not ref.pairs
        contributions = (session.contributions(rows)
                         if config.pairs and quantized and diverges else [])
        return DebugReport(
            reference=reference_label, candidate=candidate_label,
            reference_backend=session.ref_exec.label, candidate_backend=session.cand_exec.label,
            data=data_description, threshold_db=config.threshold_db,
            reference_nodes=len(ref.nodes), candidate_nodes=len(cand.nodes),
            matched=len(session.matches), outputs=session.outputs, rows=rows,
            bisection=bisection, contributions=contributions, pairs_total=len(cand.pairs),
            keep=_keep(contributions), reference_runs=session.ref_exec.runs,
            candidate_runs=session.cand_exec.runs, max_exposed_bytes=session.max_exposed)
