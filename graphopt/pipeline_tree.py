"""Several pipelines on one model, each shared first pass run once.

A suite runs ``lossless``, ``int8``, ``prune30`` and ``compress`` on the same model: all four
start with ``cleanup,fuse`` and ``compress`` is ``prune30`` plus ``quantize``.
:func:`run_sharing_prefixes` runs every pipeline as :meth:`Pipeline.run` would alone, but
goes on from a :class:`~graphopt.pipeline.PipelineCheckpoint` where an earlier pipeline
already ran the same first passes (same names and options) on the same verification data:
the result of each pipeline is what its own run gives, the shared passes run and are
verified once, and the verifier's reference outputs are computed once per kind of
verification data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import onnx_ir as ir

from graphopt.model_io import clone_model
from graphopt.pipeline import Pipeline, PipelineCheckpoint, PipelineReport, pass_key

__all__ = ["SharedRun", "run_sharing_prefixes", "shared_prefixes"]


@dataclasses.dataclass
class SharedRun:
    """One pipeline's outcome: its model and report, or the exception its run raised."""

    index: int
    model: ir.Model | None
    report: PipelineReport | None
    error: Exception | None = None
    resumed_after: int = 0
    """How many of its first passes came from an earlier pipeline's run."""


def _keys(pipeline: Pipeline) -> tuple:
    return tuple(pass_key(p) for p in pipeline.passes)


def shared_prefixes(keys: Sequence[tuple]) -> set[tuple]:
    """The first passes that two or more of ``keys`` (pass keys per pipeline) share: for each
    pair, the longest common start, if not empty."""
    prefixes = set()
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            common = 0
            while (common < min(len(first), len(second))
                   and first[common] == second[common]):
                common += 1
            if common:
                prefixes.add(first[:common])
    return prefixes


def run_sharing_prefixes(pipelines: Sequence[Pipeline], model: ir.Model, *,
                         inputs=None, **run_options) -> Iterator[SharedRun]:
    """Run each of ``pipelines`` on a clone of ``model`` (left as it is), in order, yielding
    each outcome as it ends. ``inputs`` and ``run_options`` are :meth:`Pipeline.run`'s; a
    pipeline's exception is its outcome, the others still run."""
    context = run_options.get("context")
    seed = context.seed if context is not None else 0
    # Pipelines verified on the same data share checkpoints: without data, those with lossy
    # passes verify on a few random samples and the others on one.
    by_lossy: dict[bool, object] = {}
    kinds: list[object] = []
    keys = []
    for pipeline in pipelines:
        lossy = bool(pipeline.lossy)
        if lossy not in by_lossy:
            by_lossy[lossy] = pipeline.verification_inputs(model, inputs, seed)
        data = by_lossy[lossy]
        kind = next((n for n, known in enumerate(kinds) if known is data), len(kinds))
        if kind == len(kinds):
            kinds.append(data)
        keys.append((kind, _keys(pipeline)))
    wanted = {(kind, prefix) for kind in range(len(kinds))
              for prefix in shared_prefixes([k for known, k in keys if known == kind])}
    checkpoints: dict[tuple, PipelineCheckpoint] = {}
    for index, pipeline in enumerate(pipelines):
        kind, own = keys[index]
        start = max((len(p) for known, p in checkpoints if known == kind and own[:len(p)] == p),
                    default=0)
        resume = checkpoints.get((kind, own[:start])) if start else None
        todo = {len(p) for known, p in wanted
                if known == kind and len(p) > start and own[:len(p)] == p
                and (known, p) not in checkpoints}

        def keep(checkpoint: PipelineCheckpoint, kind: int = kind) -> None:
            checkpoints[(kind, checkpoint.passes)] = checkpoint

        working = clone_model(resume.model if resume is not None else model)
        try:
            report = pipeline.run(working, inputs=kinds[kind], resume=resume,
                                  checkpoint=keep, checkpoint_after=todo, **run_options)
        except Exception as exc:  # the caller decides; later pipelines still run
            yield SharedRun(index, None, None, exc, start)
            continue
        yield SharedRun(index, working, report, None, start)
