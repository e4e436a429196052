"""Models on backends compared paired: one runner per (model, backend), all alive at once.

A :class:`Contender` is one arm: a model file and its inputs on a backend
(:func:`graphopt.harness.pairs.contenders` builds them from model specs). :func:`compare`
activates every runner, measures them with
:func:`graphopt.backends.paired.measure_paired` (the first contender is the baseline), and
releases them. Each contender gets ``sessions`` runner sessions (default
:data:`DEFAULT_SESSIONS`, as ``graphopt bench``), all alive and taken in turn, so a session's
own offset is not mistaken for a speedup. The result keeps, per arm, the precision that
actually ran and the runner's settings (threads, pinning, versions), so every speedup says
what it compared.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from graphopt.backends.paired import Arm, Comparison, PairedConfig, PairedResult, measure_paired
from graphopt.backends.paired import Progress as PairedProgress
from graphopt.backends.registry import BACKENDS, BackendSpec, start_runner

__all__ = ["DEFAULT_SESSIONS", "Contender", "PairedBenchmark", "compare", "idle_quietly"]

DEFAULT_SESSIONS = 3
"""Runner sessions per contender (the absolute benchmark's default too)."""


@dataclasses.dataclass(frozen=True)
class Contender:
    """One arm: a model file (``label`` as the user wrote it) and its inputs, on a backend."""

    label: str
    path: Path
    feed: Mapping[str, np.ndarray]
    spec: BackendSpec

    @property
    def name(self) -> str:
        return f"{self.label} on {self.spec}"


@dataclasses.dataclass
class PairedBenchmark:
    """A paired measurement of contenders, with what each arm ran."""

    contenders: list[Contender]
    names: list[str]
    precisions: list[str]
    settings: list[dict]
    compile_seconds: list[float]
    result: PairedResult

    def comparison_of(self, index: int) -> Comparison | None:
        """Contender ``index`` against the baseline (``None`` for the baseline itself)."""
        return None if index == 0 else self.result.comparisons[index - 1]

    def to_dict(self, *, include_samples: bool = True) -> dict:
        data = self.result.to_dict(include_samples=include_samples)
        for index, arm in enumerate(data["arms"]):
            contender = self.contenders[index]
            arm.update(model=contender.label, backend=str(contender.spec),
                       precision=self.precisions[index], settings=self.settings[index],
                       compile_seconds=self.compile_seconds[index])
        for comparison in data["comparisons"]:
            index = self.names.index(comparison["candidate"])
            comparison.update(model=self.contenders[index].label,
                              backend=str(self.contenders[index].spec))
        return data


def compare(
    entries: Sequence[Contender],
    config: PairedConfig | None = None,
    *,
    sessions: int = DEFAULT_SESSIONS,
    threads: int | None = None,
    pin: bool | None = None,
    batch_size: int = 1,
    progress: PairedProgress | None = None,
) -> PairedBenchmark:
    """Activate ``sessions`` runners per contender, measure them paired, release them.

    ``threads`` and ``pin`` apply to every backend with those settings unless its spec sets
    its own. Raises :class:`~graphopt.errors.GraphoptError` when a backend cannot run a model.
    The reported precision and settings are the first session's (all are built alike).
    """
    if not entries:
        raise ValueError("nothing to compare")
    if sessions < 1:
        raise ValueError(f"sessions must be >= 1, got {sessions}")
    names = _unique([c.name for c in entries])
    runners: list[list] = [[] for _ in entries]
    try:
        for _ in range(sessions):
            for index, contender in enumerate(entries):
                runners[index].append(start_runner(
                    idle_quietly(contender.spec), contender.path, label=contender.label,
                    threads=threads, pin=pin, batch_size=batch_size))
        arms = [
            Arm(name, tuple(_caller(runner, contender.feed) for runner in arm_runners))
            for name, arm_runners, contender in zip(names, runners, entries, strict=True)
        ]
        result = measure_paired(arms, config or PairedConfig(), progress=progress)
        return PairedBenchmark(
            contenders=list(entries),
            names=names,
            precisions=[r[0].precision for r in runners],
            settings=[dict(r[0].settings) for r in runners],
            compile_seconds=[float(r[0].compile_seconds or 0.0) for r in runners],
            result=result,
        )
    finally:
        for runner in (r for arm_runners in runners for r in arm_runners):
            runner.deactivate()


def idle_quietly(spec: BackendSpec) -> BackendSpec:
    """``spec`` with thread spinning off where the backend has the option and the spec does
    not set it. Runners alive side by side take turns: an idle ORT session's intra-op threads
    spin for a while after each call and steal the cores from the one that runs (measured on
    zoo:squeezenet A/A with 2 threads: CIs of +-10% after 30 s, three of eight excluding 1.0;
    without spinning +-2% in 5-8 s)."""
    backend = BACKENDS.get(spec.name)
    if backend is None or "spin" not in backend.options or "spin" in spec.options:
        return spec
    return dataclasses.replace(spec, options={**spec.options, "spin": "false"})


def _caller(runner, feed: Mapping[str, np.ndarray]):
    return lambda: runner.infer(feed)


def _unique(names: list[str]) -> list[str]:
    """Number repeated names (the same model on the same backend twice: an A/A test)."""
    counts = collections.Counter(names)
    seen: collections.Counter[str] = collections.Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(f"{name} #{seen[name]}" if counts[name] > 1 else name)
    return unique
