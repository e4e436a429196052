"""``graphopt tune``: the fastest (or most frugal) configuration whose fidelity meets a budget.

A *candidate* is a pipeline spec and a backend spec on the target (the backend's precision
hint is part of the search: ``openvino-cpu``, ``openvino-cpu:f32``, ``openvino-cpu:bf16``).
The *baseline* is the input model on onnxruntime CPU fp32 (``ort-cpu``), the figure every
speedup is against. :class:`Tuner` tries candidates in :data:`DEFAULT_PIPELINES` order, cheap
and promising first (or the caller's pipelines), each pipeline run once and tried on every
backend variant:

1. Run the pipeline on a fresh copy of the model (calibration data, evaluator and the fidelity
   budget in its :class:`~graphopt.pass_context.PassContext`, so ``quantize`` searches for
   the layers to keep float under the budget; ``on_budget="warn"``: the target decides).
   Some candidates run the pipeline under a tightened budget (:func:`tightened`), because
   the target adds its own rounding (OpenVINO's bf16 hint on the layers left float).
2. Fidelity **on the target**: the runner's outputs on the verification data (held out from
   the calibration, or seeded random inputs) against onnxruntime fp32 (graph optimizations
   off) on the input model, judged on the budget (an ``accuracy_drop`` term on the target's
   own predictions over the labelled data). A candidate that breaks it is not timed.
   ``judge="logits"`` judges the logits a final Softmax reads instead of its probabilities:
   the search runs on the model with that Softmax taken off (:func:`strip_softmax`; the
   pipelines' own budget checks see the logits too) and puts it back before timing and
   writing (:func:`restore_softmax`), so the output keeps the input's outputs.
3. Latency: measured paired against the baseline (:func:`graphopt.backends.comparison.compare`:
   runners of both alive, short blocks in a balanced random order, a bootstrap CI of the
   speedup), at most ``probe_seconds`` each. With ``objective="energy"`` also the energy per
   inference of an absolute benchmark (:func:`graphopt.harness.benchmark.benchmark`): the
   best available source (RAPL/NVML/Jetson rails, else ``estimate:time-x-power``), labelled.
4. A candidate better on the objective than the best so far (against the baseline on
   latency: detectably faster, its speedup CI above 1) becomes the best and is written
   to the output at once (:func:`graphopt.model_io.save_model`: atomic), with what it is and
   where to run it in the model's ``metadata_props`` (key :data:`METADATA_KEY`). Before any
   candidate the input model itself is written (the baseline is always a valid answer), so a
   time limit, Ctrl-C or a crash never leaves the output empty.

The time limit is checked between steps and enforced inside long steps by ``SIGALRM`` (main
thread only). ``Tuner.result`` holds what was found so far also when ``run`` is interrupted:
every trial, the Pareto front (objective against SQNR; only timed candidates are on it) and
the choice with its explanation (:meth:`TuneResult.explain`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt import __version__, oracle
from graphopt.atomic import scratch_dir
from graphopt.backends.comparison import Contender, compare
from graphopt.backends.paired import PairedConfig
from graphopt.backends.registry import (
    BACKENDS,
    BackendSpec,
    check_available,
    parse_backend,
    start_runner,
)
from graphopt.budget import Budget, BudgetTerm
from graphopt.calibration import DataSource, RandomData
from graphopt.errors import BackendUnavailableError, GraphoptError, error_text
from graphopt.evaluate import Evaluator
from graphopt.feeds import static_batch_size
from graphopt.harness.benchmark import benchmark, timing_config
from graphopt.model_io import model_file, resolve_model, save_model
from graphopt.pass_api import get_preset, pass_names
from graphopt.pass_context import PassContext
from graphopt.pipeline import LOSSY_RANDOM_SAMPLES, VERIFICATION_SEED_OFFSET, Pipeline
from graphopt.run_data import resolve_run_data
from graphopt.shapes import infer_shapes
from graphopt.spec import build_passes, parse_spec
from graphopt.verify import Fidelity, compare_outputs

__all__ = [
    "BASELINE_BACKEND",
    "DEFAULT_PIPELINES",
    "DEFAULT_PROBE_SECONDS",
    "METADATA_KEY",
    "JUDGE_CHOICES",
    "OBJECTIVES",
    "Candidate",
    "Trial",
    "TuneResult",
    "Tuner",
    "backend_variants",
    "parse_duration",
    "search_space",
    "tightened",
]

logger = logging.getLogger(__name__)

BASELINE_BACKEND = "ort-cpu"
"""Every speedup is against the input model on onnxruntime CPU fp32."""
OBJECTIVES = ("latency", "energy")
JUDGE_CHOICES = ("outputs", "logits")
"""What fidelity is judged on: the graph outputs, or the logits a final Softmax reads (a
saturated softmax, probabilities of exactly 1 and 0, makes every output SQNR either huge
or near 0 dB, depending only on whether a top-1 flips)."""
DEFAULT_PROBE_SECONDS = 10.0
"""Time budget of one paired latency measurement (warm-up included)."""
MIN_PROBE_SECONDS = 1.0
ENERGY_SECONDS = 2.0
"""Timed seconds of the absolute benchmark that gives a candidate's energy per inference."""
METADATA_KEY = "graphopt.tune"
TIGHTEN_SQNR_DB = 3.0
"""How much a tightened candidate raises the budget's SQNR term for its pipeline."""

# (pipeline spec, tighten the pipeline's budget): cheap and promising first. A spec whose
# passes are not registered is left out of the search (said so in the result).
DEFAULT_PIPELINES: tuple[tuple[str, bool], ...] = (
    ("lossless", False),
    ("int8", False),
    ("int8", True),
    ("fp16", False),
    ("cleanup,fuse,quantize(calibrator=entropy)", False),
    ("cleanup,fuse,quantize(calibrator=percentile)", False),
    ("cleanup,fuse,quantize(activations=int8,symmetric=true)", False),
    ("cleanup,fuse,quantize(calibrator=minmax)", False),
    ("cleanup,fuse,prune(ratio=0.1),quantize", False),
    ("cleanup,fuse,prune(ratio=0.1)", False),
    ("cleanup,fuse,prune(ratio=0.3)", False),
    ("cleanup,fuse,lowrank(energy=0.95),quantize", False),
    ("cleanup,fuse,lowrank(energy=0.95)", False),
    ("bf16", False),
)

_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` -> seconds (> 0)."""
    raw = text.strip().lower()
    unit = _DURATION_UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise GraphoptError(f"time {text!r}: expected seconds or a number with s, m or h"
                            " (e.g. 90s, 10m)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise GraphoptError(f"time {text!r}: must be a positive duration")
    return seconds


def tightened(budget: Budget, sqnr_db: float = TIGHTEN_SQNR_DB) -> Budget:
    """``budget`` with its SQNR term raised by ``sqnr_db`` and its cosine term's distance to
    1 halved (other terms unchanged)."""
    terms = []
    for term in budget.terms:
        if term.metric == "sqnr":
            term = BudgetTerm("sqnr", term.limit + sqnr_db)
        elif term.metric == "cosine":
            term = BudgetTerm("cosine", 1.0 - (1.0 - term.limit) / 2)
        terms.append(term)
    return Budget(tuple(terms))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One configuration: a pipeline (``""``: the model as given) on a backend spec;
    ``tighten`` runs the pipeline under :func:`tightened` budget."""

    pipeline: str
    backend: str
    tighten: bool = False

    @property
    def name(self) -> str:
        pipeline = self.pipeline or "none"
        return f"{pipeline}{' [tight]' if self.tighten else ''} on {self.backend}"


@dataclasses.dataclass
class Trial:
    """What became of one candidate.

    ``status``: ``baseline``, ``measured`` (within the budget and timed), ``over budget``,
    ``same as`` (the backend ran the precision of a variant tried already), ``failed`` or
    ``not tried`` (the time limit or an interrupt came first)."""

    candidate: Candidate
    status: str = "not tried"
    reason: str | None = None
    precision: str | None = None
    fidelity: dict | None = None
    sqnr_db: float | None = None
    accuracy_drop: float | None = None
    pipeline_budget: str | None = None
    speedup: float | None = None
    speedup_ci: tuple[float, float] | None = None
    verdict: str | None = None
    median_ms: float | None = None
    baseline_ms: float | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    energy_note: str | None = None
    seconds: float = 0.0
    pareto: bool = False

    def objective_value(self, objective: str) -> float | None:
        """Smaller is better: time relative to the baseline, or joules per inference."""
        if objective == "energy":
            return self.energy_j
        return None if not self.speedup else 1.0 / self.speedup

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["candidate"] = {**dataclasses.asdict(self.candidate), "name": self.candidate.name}
        return _json_safe(data)


@dataclasses.dataclass
class TuneResult:
    """Every trial (the baseline first), the best one, and why the search stopped."""

    model: str
    target: str
    budget: str
    objective: str
    output: str
    trials: list[Trial] = dataclasses.field(default_factory=list)
    best: int = 0
    stop_reason: str = "not started"
    seconds: float = 0.0
    time_limit: float | None = None
    verification_data: str | None = None
    calibration_data: str | None = None
    left_out: list[str] = dataclasses.field(default_factory=list)
    written: bool = False
    judge: str = "outputs"

    @property
    def best_trial(self) -> Trial:
        return self.trials[self.best]

    def pareto_front(self) -> list[int]:
        """Indices of the timed trials no other timed trial beats on both the objective and
        SQNR (at least as good on both, better on one)."""
        points = [(i, t.objective_value(self.objective), _sqnr(t))
                  for i, t in enumerate(self.trials) if t.status in ("baseline", "measured")]
        points = [(i, v, s) for i, v, s in points if v is not None]
        front = []
        for i, value, sqnr in points:
            dominated = any(v <= value and s >= sqnr and (v < value or s > sqnr)
                            for j, v, s in points if j != i)
            if not dominated:
                front.append(i)
        return sorted(front, key=lambda i: self.trials[i].objective_value(self.objective))

    def mark_pareto(self) -> None:
        front = set(self.pareto_front())
        for index, trial in enumerate(self.trials):
            trial.pareto = index in front

    def explain(self) -> list[str]:
        """Sentences saying what was chosen, against what, and what was left out."""
        best = self.best_trial
        unit = "lower time" if self.objective == "latency" else "less energy per inference"
        lines = []
        if best.status == "baseline":
            lines.append(f"no candidate beat the input model on {BASELINE_BACKEND} fp32 within"
                         f" the budget {self.budget} ({unit}): the output is the input model")
        else:
            lines.append(f"chosen: {best.candidate.name} (ran {best.precision}):"
                         f" {_speed_text(best)}, {_fidelity_text(best)} (budget {self.budget},"
                         f" judged on {best.candidate.backend}'s own"
                         f" {'logits' if self.judge == 'logits' else 'outputs'})"
                         + (f", {_energy_text(best)}" if best.energy_j is not None else ""))
        ranked = sorted((t for t in self.trials if t.status == "measured" and t is not best),
                        key=lambda t: t.objective_value(self.objective) or math.inf)
        if ranked:
            runner_up = ranked[0]
            overlap = (best.speedup_ci is not None and runner_up.speedup_ci is not None
                       and runner_up.speedup_ci[1] >= best.speedup_ci[0])
            lines.append(f"runner-up: {runner_up.candidate.name}: {_speed_text(runner_up)},"
                         f" {_fidelity_text(runner_up)}"
                         + ("; its speedup CI overlaps the chosen one's, so the two are not"
                            " told apart by these measurements" if overlap and
                            self.objective == "latency" else ""))
        over = [t for t in self.trials if t.status == "over budget"]
        if over:
            lines.append(f"{len(over)} candidate(s) broke the budget on the target, best"
                         f" SQNR first: " + "; ".join(
                             f"{t.candidate.name} {t.reason}"
                             for t in sorted(over, key=lambda t: -(t.sqnr_db or -math.inf))[:5]))
        for status in ("failed", "same as"):
            chosen = [t for t in self.trials if t.status == status]
            if chosen:
                lines.append(f"{len(chosen)} {status}: " + "; ".join(
                    f"{t.candidate.name}: {t.reason}" for t in chosen[:5]))
        untried = [t for t in self.trials if t.status == "not tried"]
        if untried:
            lines.append(f"{len(untried)} candidate(s) not tried ({self.stop_reason}):"
                         f" {', '.join(t.candidate.name for t in untried[:6])}"
                         + (" ..." if len(untried) > 6 else ""))
        for item in self.left_out:
            lines.append(f"left out of the search: {item}")
        lines.append(f"stopped: {self.stop_reason} after {self.seconds:.0f} s")
        return lines

    def to_dict(self) -> dict:
        self.mark_pareto()
        return {
            "graphopt_version": __version__,
            "command": "tune",
            "model": self.model,
            "target": self.target,
            "baseline": f"the input model on {BASELINE_BACKEND} fp32",
            "budget": self.budget,
            "judged_on": self.judge,
            "objective": self.objective,
            "output": self.output,
            "output_written": self.written,
            "best": self.best,
            "best_candidate": self.best_trial.to_dict(),
            "pareto": self.pareto_front(),
            "trials": [t.to_dict() for t in self.trials],
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "time_limit_seconds": self.time_limit,
            "verification_data": self.verification_data,
            "calibration_data": self.calibration_data,
            "left_out": self.left_out,
            "explanation": self.explain(),
            "method": ("fidelity: the target's outputs on the verification data against"
                       " onnxruntime fp32 (optimizations off) on the input model; latency:"
                       " paired blocks against the baseline, speedup = baseline time /"
                       " candidate time with a bootstrap CI; energy: an absolute benchmark's"
                       " headline reading with its source"),
        }


def _json_safe(value):
    """``value`` with non-finite floats as strings (``"inf"``), as benchmark results write
    them: strict JSON readers refuse ``Infinity``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _sqnr(trial: Trial) -> float:
    return -math.inf if trial.sqnr_db is None else trial.sqnr_db


def _speed_text(trial: Trial) -> str:
    if trial.speedup is None:
        return "not timed"
    low, high = trial.speedup_ci or (math.nan, math.nan)
    return (f"{trial.speedup:.2f}x faster than {BASELINE_BACKEND} fp32 (CI {low:.2f}-{high:.2f},"
            f" {trial.median_ms:.3g} ms against {trial.baseline_ms:.3g} ms)")


def _fidelity_text(trial: Trial) -> str:
    if trial.sqnr_db is None:
        return "fidelity not measured"
    text = "SQNR inf dB" if math.isinf(trial.sqnr_db) else f"SQNR {trial.sqnr_db:.1f} dB"
    if trial.accuracy_drop is not None:
        text += f", accuracy drop {trial.accuracy_drop:.2f} points"
    return text


def _energy_text(trial: Trial) -> str:
    return f"{trial.energy_j * 1e3:.3g} mJ per inference ({trial.energy_source})"


def backend_variants(target: BackendSpec) -> list[BackendSpec]:
    """The target as given, and, when it names no precision, with each precision its
    backend accepts (the runtime's default first)."""
    if target.precision is not None:
        return [target]
    precisions = BACKENDS[target.name].precisions
    if len(precisions) < 2:
        return [target]
    return [target, *(dataclasses.replace(target, precision=p) for p in precisions)]


def _pipeline_reason(spec: str) -> str | None:
    """Why ``spec`` cannot run in this graphopt, or ``None``."""
    try:
        items = parse_spec(spec)
    except GraphoptError as exc:
        return str(exc)
    names = [n for n, _ in items if get_preset(n) is None]
    missing = [n for n in names if n not in pass_names()]
    if missing:
        return f"needs pass(es) {', '.join(missing)}, not registered"
    try:
        build_passes(spec)
    except GraphoptError as exc:
        return str(exc)
    return None


def search_space(
    target: BackendSpec,
    *,
    pipelines: Sequence[str] | None = None,
    budget: Budget | None = None,
) -> tuple[list[Candidate], list[str]]:
    """(candidates in the order they are tried, pipelines left out and why).

    ``pipelines`` replaces :data:`DEFAULT_PIPELINES` (none tightened); ``"none"`` is the model
    as given. Tightened variants need a budget with a ``sqnr`` or ``cosine`` term."""
    entries = ([(p, False) for p in pipelines] if pipelines is not None
               else list(DEFAULT_PIPELINES))
    tightenable = budget is not None and (budget.term("sqnr") or budget.term("cosine"))
    candidates, left_out = [], []
    variants = [str(v) for v in backend_variants(target)]
    for spec, tighten in entries:
        spec = "" if spec == "none" else spec
        if tighten and not tightenable:
            continue
        reason = _pipeline_reason(spec) if spec else None
        if reason is not None:
            if f"{spec}: {reason}" not in left_out:
                left_out.append(f"{spec}: {reason}")
            continue
        candidates.extend(Candidate(spec, backend, tighten) for backend in variants)
    return candidates, left_out


class TimeLimit(BaseException):
    """The search's time limit arrived inside a step (raised by ``SIGALRM``)."""


@contextlib.contextmanager
def _alarm(deadline: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimit` at ``deadline`` (``time.monotonic``), main thread only."""
    if deadline is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


TrialCallback = Callable[[Trial], None]


class Tuner:
    """The search of the module docstring; ``run()`` returns (and ``result`` keeps) a
    :class:`TuneResult`."""

    def __init__(
        self,
        model: str | os.PathLike,
        output: str | os.PathLike,
        *,
        target: str = BASELINE_BACKEND,
        budget: Budget | str,
        objective: str = "latency",
        time_limit: float | None = None,
        calib: str | os.PathLike | None = None,
        inputs: str | os.PathLike | None = None,
        preprocess: str | None = None,
        pipelines: Sequence[str] | None = None,
        probe_seconds: float = DEFAULT_PROBE_SECONDS,
        sessions: int = 2,
        threads: int | None = None,
        pin: bool | None = None,
        seed: int = 0,
        energy_seconds: float = ENERGY_SECONDS,
        judge: str = "outputs",
        on_trial: TrialCallback | None = None,
    ) -> None:
        if objective not in OBJECTIVES:
            raise GraphoptError(f"objective {objective!r}: expected one of"
                                f" {', '.join(OBJECTIVES)}")
        self.budget = Budget.parse(budget) if isinstance(budget, str) else budget
        if not self.budget:
            raise GraphoptError("tune needs a fidelity budget, e.g. --budget 'sqnr>=25'")
        self.model = os.fspath(model)
        self.output = Path(output)
        self.target = parse_backend(target)
        ok, why = check_available(self.target.name)
        if not ok:
            raise BackendUnavailableError(f"{self.target.name} is not available here: {why}")
        self.baseline_spec = parse_backend(BASELINE_BACKEND)
        self.objective = objective
        self.time_limit = time_limit
        self.calib, self.inputs, self.preprocess = calib, inputs, preprocess
        self.probe_seconds = probe_seconds
        self.sessions = sessions
        self.threads, self.pin, self.seed = threads, pin, seed
        self.energy_seconds = energy_seconds
        if judge not in JUDGE_CHOICES:
            raise GraphoptError(f"judge {judge!r}: expected one of {', '.join(JUDGE_CHOICES)}")
        self.judge = judge
        self.on_trial = on_trial
        self.original: ir.Model | None = None
        self._pipeline_fidelity: dict[str, object] = {}
        candidates, left_out = search_space(self.target, pipelines=pipelines,
                                            budget=self.budget)
        self.result = TuneResult(model=self.model, target=str(self.target),
                                 budget=str(self.budget), objective=objective,
                                 output=str(self.output), time_limit=time_limit,
                                 left_out=left_out, judge=judge)
        self.result.trials = [Trial(Candidate("", BASELINE_BACKEND)),
                              *(Trial(c) for c in candidates)]
        self._deadline: float | None = None

    # -- the search ------------------------------------------------------------------------

    def run(self) -> TuneResult:
        """Search until every candidate is tried or the time limit; an interrupt
        (Ctrl-C, SIGTERM) is re-raised after ``result`` is brought up to date."""
        start = time.monotonic()
        self._deadline = None if self.time_limit is None else start + self.time_limit
        result = self.result
        try:
            with _alarm(self._deadline), scratch_dir() as folder:
                self._folder = folder
                self._prepare()
                for pipeline_trials in self._by_pipeline():
                    if self._remaining() <= 0:
                        raise TimeLimit()
                    self._try_pipeline(pipeline_trials)
            result.stop_reason = "every candidate tried"
        except TimeLimit:
            result.stop_reason = f"time limit of {self.time_limit:g} s"
            self._write_baseline_if_nothing()
        except BaseException as exc:
            result.stop_reason = (f"failed: {error_text(exc)}" if isinstance(exc, Exception)
                                  else f"interrupted ({type(exc).__name__})")
            self._write_baseline_if_nothing()
            raise
        finally:
            result.seconds = time.monotonic() - start
            result.mark_pareto()
        return result

    def _write_baseline_if_nothing(self) -> None:
        """A stop that came before the baseline was written still leaves the input model."""
        if not self.result.written and self.original is not None:
            self._write(self.original, self.result.trials[0])

    def _remaining(self) -> float:
        return math.inf if self._deadline is None else self._deadline - time.monotonic()

    def _by_pipeline(self) -> Iterator[list[Trial]]:
        groups: dict[tuple[str, bool], list[Trial]] = {}
        for trial in self.result.trials[1:]:
            key = (trial.candidate.pipeline, trial.candidate.tighten)
            groups.setdefault(key, []).append(trial)
        yield from groups.values()

    def _prepare(self) -> None:
        """Data, reference outputs, the benchmark feed; the baseline written and timed."""
        reference = self._load()  # first: a model that cannot be judged stops here
        self.original = resolve_model(self.model)
        self.original_path = model_file(self.model)
        baseline = self.result.trials[0]
        baseline.status, baseline.precision = "baseline", "fp32"
        baseline.speedup, baseline.speedup_ci, baseline.verdict = 1.0, (1.0, 1.0), "baseline"
        self._write(self.original, baseline)
        data = resolve_run_data(self.original, self.model, calib=self.calib,
                                inputs=self.inputs, preprocess=self.preprocess, seed=self.seed)
        self.data = data
        verification: DataSource = data.verification or RandomData(
            self.original, batches=LOSSY_RANDOM_SAMPLES, seed=self.seed + VERIFICATION_SEED_OFFSET)
        self.feeds = [dict(feed) for feed in verification]
        self.result.verification_data = verification.description
        self.result.calibration_data = (None if data.calibration is None
                                        else data.calibration.description)
        if self.budget.term("accuracy_drop") is not None and data.evaluator is None:
            raise GraphoptError(f"budget {self.budget.term('accuracy_drop')} needs labelled"
                                " data (a 'labels' array in the data, or zoo:digits)")
        session = oracle.make_session(reference)
        self.expected = _concatenated([oracle.run_model(session, f) for f in self.feeds])
        self.accuracy_before = (None if data.evaluator is None
                                else data.evaluator.accuracy(reference))
        batch = static_batch_size(self.original) or 1  # latency at the model's own batch
        self.feed = {name: array[:batch] if array.ndim else array
                     for name, array in self.feeds[0].items()}
        baseline.sqnr_db, baseline.accuracy_drop = math.inf, (
            None if self.accuracy_before is None else 0.0)
        if self.objective == "energy":
            self._energy(baseline, self.original_path, self.baseline_spec)
        self._notify(baseline)

    def _try_pipeline(self, trials: list[Trial]) -> None:
        first = trials[0].candidate
        started = time.monotonic()
        plain = self._pipeline_fidelity.get(first.pipeline)
        if first.tighten and plain is not None and tightened(self.budget).judge(plain).ok:
            for trial in trials:
                trial.status = "same as"
                trial.reason = (f"{first.pipeline} met the tightened budget"
                                f" {tightened(self.budget)} already: the same model")
                self._notify(trial)
            return
        try:
            model, pipeline_budget = self._optimized(first)
        except (GraphoptError, Exception) as exc:  # a pass's bug must not end the search
            logger.debug("pipeline %s failed", first.pipeline, exc_info=True)
            for trial in trials:
                trial.status, trial.reason = "failed", f"pipeline: {error_text(exc)}"
                trial.seconds = time.monotonic() - started
                self._notify(trial)
            return
        path = timed = save_model(model, self._folder / "candidate.onnx")
        if self.judge == "logits":  # judged on the logits, timed and written whole
            restore_softmax(model)
            timed = save_model(model, self._folder / "candidate-softmax.onnx")
        pipeline_seconds = time.monotonic() - started
        precisions: dict[str, str] = {}
        for trial in trials:
            if self._remaining() <= 0:
                raise TimeLimit()
            trial.pipeline_budget = str(pipeline_budget)
            started = time.monotonic()
            try:
                self._try(trial, model, path, timed, precisions)
            except (GraphoptError, Exception) as exc:
                logger.debug("candidate %s failed", trial.candidate.name, exc_info=True)
                trial.status, trial.reason = "failed", error_text(exc)
            trial.seconds = time.monotonic() - started + pipeline_seconds
            pipeline_seconds = 0.0
            self._notify(trial)

    def _optimized(self, candidate: Candidate) -> tuple[ir.Model, Budget]:
        model = self._load()
        budget = tightened(self.budget) if candidate.tighten else self.budget
        if candidate.pipeline:
            data = self.data
            report = Pipeline.from_spec(candidate.pipeline).run(
                model, inputs=data.verification, budget=budget, on_budget="warn",
                context=PassContext(calibration=data.calibration, evaluator=data.evaluator,
                                    seed=self.seed))
            if not candidate.tighten and report.fidelity is not None:
                self._pipeline_fidelity[candidate.pipeline] = report.fidelity
        return model, budget

    def _load(self) -> ir.Model:
        """A fresh copy of the input model, its final Softmax taken off when judging logits."""
        model = resolve_model(self.model)
        if self.judge == "logits":
            strip_softmax(model)
        return model

    def _try(self, trial: Trial, model: ir.Model, path: Path, timed: Path,
             precisions: dict[str, str]) -> None:
        spec = parse_backend(trial.candidate.backend)
        fidelity, precision, accuracy, run_as = self._target_fidelity(path, spec)
        trial.precision = precision
        trial.fidelity = fidelity.to_dict()
        trial.sqnr_db = fidelity.sqnr_db
        drop = None if accuracy is None else self.accuracy_before - accuracy
        trial.accuracy_drop = drop
        if run_as in precisions:
            trial.status = "same as"
            trial.reason = f"ran {precision} like {precisions[run_as]}"
            return
        precisions[run_as] = trial.candidate.name
        judgement = self.budget.judge(fidelity, accuracy_drop=drop)
        if not judgement.ok:
            trial.status, trial.reason = "over budget", "; ".join(judgement.failures)
            return
        self._latency(trial, timed, spec)
        if self.objective == "energy":
            self._energy(trial, timed, spec)
        trial.status = "measured"
        if self._better(trial, self.result.best_trial):
            self._write(model, trial)
            self.result.best = self.result.trials.index(trial)

    def _better(self, trial: Trial, best: Trial) -> bool:
        value, current = (trial.objective_value(self.objective),
                          best.objective_value(self.objective))
        if value is None:
            return False
        if best.status == "baseline" and self.objective == "latency" and (
                trial.verdict != "faster"):
            return False  # the input model stays unless a candidate is detectably faster
        return current is None or value < current

    def _target_fidelity(self, path: Path, spec: BackendSpec
                         ) -> tuple[Fidelity, str, float | None, str]:
        """The target's outputs on the verification feeds against the reference, the
        precision it ran, its top-1 accuracy on the labelled data (if judged), and what it
        ran as (precision and settings but the requested precision: a variant that runs as
        one tried before is not timed again)."""
        batch = _batch(self.feeds[0])
        runner = start_runner(spec, path, label=str(path.name), threads=self.threads,
                              pin=self.pin, batch_size=batch)
        try:
            outputs = _concatenated([runner.infer(feed) for feed in self.feeds])
            accuracy = None
            evaluator = self.data.evaluator
            if evaluator is not None and self.budget.term("accuracy_drop") is not None:
                accuracy = _accuracy(runner, evaluator)
            settings = {k: v for k, v in runner.settings.items() if k != "requested_precision"}
            run_as = json.dumps([runner.precision, settings], sort_keys=True, default=str)
            return (compare_outputs(self.expected, outputs), runner.precision, accuracy,
                    run_as)
        finally:
            runner.deactivate()

    def _latency(self, trial: Trial, path: Path, spec: BackendSpec) -> None:
        seconds = min(self.probe_seconds, self._remaining() - 0.5)
        if seconds < min(self.probe_seconds, MIN_PROBE_SECONDS):
            raise TimeLimit()  # too little time left for a measurement worth the name
        entries = [Contender("input model", self.original_path, self.feed, self.baseline_spec),
                   Contender(trial.candidate.pipeline or "none", path, self.feed, spec)]
        config = PairedConfig(max_seconds=seconds, seed=self.seed)
        run = compare(entries, config, sessions=self.sessions, threads=self.threads,
                      pin=self.pin, batch_size=_batch(self.feed))
        comparison = run.comparison_of(1)
        interval = comparison.interval
        trial.speedup = interval.estimate
        trial.speedup_ci = (interval.low, interval.high)
        trial.verdict = comparison.verdict
        trial.baseline_ms = run.result.arms[0].stats.p50 / 1e3
        trial.median_ms = run.result.arms[1].stats.p50 / 1e3

    def _energy(self, trial: Trial, path: Path, spec: BackendSpec) -> None:
        if self._remaining() < 2 * self.energy_seconds:
            raise TimeLimit()
        result = benchmark(path, spec, inputs=self.feed, config=timing_config(
            self.energy_seconds, 20), sessions=1, batch_size=_batch(self.feed),
            threads=self.threads, pin=self.pin, energy="auto", seed=self.seed,
            concurrent_seconds=0.0)
        reading = result.energy
        if reading is None or reading.joules_per_inference is None:
            trial.energy_note = "; ".join(result.energy_fallback) or "no energy figure"
            return
        trial.energy_j = reading.joules_per_inference
        trial.energy_source = reading.source
        how = (f"{reading.power_watts:.2f} W per busy CPU, {reading.power_origin}"
               if reading.power_watts is not None else reading.note)
        trial.energy_note = how

    def _write(self, model: ir.Model, trial: Trial) -> None:
        """Save ``model`` as the output (atomic), saying in its metadata what it is."""
        candidate = trial.candidate
        note = {"backend": candidate.backend, "pipeline": candidate.pipeline or "none",
                "budget": str(self.budget), "judged_on": self.judge,
                "objective": self.objective,
                "speedup_vs_ort_fp32": trial.speedup, "sqnr_db": (
                    "inf" if trial.sqnr_db is not None and math.isinf(trial.sqnr_db)
                    else trial.sqnr_db),
                "energy_j": trial.energy_j, "energy_source": trial.energy_source,
                "graphopt_version": __version__}
        previous = model.metadata_props.get(METADATA_KEY)
        model.metadata_props[METADATA_KEY] = json.dumps(note)
        try:
            save_model(model, self.output)
        finally:
            if previous is None:
                model.metadata_props.pop(METADATA_KEY, None)
            else:
                model.metadata_props[METADATA_KEY] = previous
        self.result.written = True

    def _notify(self, trial: Trial) -> None:
        if self.on_trial is not None:
            self.on_trial(trial)


_SOFTMAX_KEY = "graphopt.tune.softmax"


def strip_softmax(model: ir.Model) -> None:
    """Make the logits a final Softmax reads the graph output in its place (recorded in the
    model's metadata for :func:`restore_softmax`). Refused, in one line, unless exactly one
    output comes from a Softmax over the last axis of rank-2 logits (where every opset's
    Softmax computes the same)."""
    graph = model.graph
    found = []
    for index, value in enumerate(graph.outputs):
        node = value.producer()
        if node is not None and node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            found.append((index, value, node))
    if len(found) != 1:
        raise GraphoptError(f"judging logits needs one graph output made by a Softmax;"
                            f" this model has {len(found)}")
    index, value, node = found[0]
    logits = node.inputs[0]
    if logits.shape is None:
        infer_shapes(model)
    axis = node.attributes.get("axis")
    axis = None if axis is None else axis.as_int()
    rank = None if logits.shape is None else len(logits.shape)
    if rank != 2 or axis not in (None, 1, -1) or value.uses() or logits.is_graph_output():
        raise GraphoptError(f"judging logits: the final Softmax of {value.name!r} must read"
                            f" rank-2 logits over their last axis and feed nothing else")
    graph.outputs[index] = logits
    graph.remove(node, safe=True)
    model.metadata_props[_SOFTMAX_KEY] = json.dumps(
        {"index": index, "name": value.name})


def restore_softmax(model: ir.Model) -> None:
    """Put back the Softmax :func:`strip_softmax` took off, under the output's old name."""
    note = json.loads(model.metadata_props.pop(_SOFTMAX_KEY))
    graph = model.graph
    logits = graph.outputs[note["index"]]
    node = ir.Node("", "Softmax", [logits], attributes=[ir.AttrInt64("axis", -1)],
                   name=f"{note['name']}_softmax")
    graph.append(node)
    output = node.outputs[0]
    output.name, output.dtype, output.shape = note["name"], logits.dtype, logits.shape
    graph.outputs[note["index"]] = output


def _batch(feed: Mapping[str, np.ndarray]) -> int:
    return next((int(a.shape[0]) for a in feed.values() if a.ndim), 1)


def _concatenated(runs: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([np.asarray(r[name]) for r in runs]) for name in runs[0]}


def _accuracy(runner, evaluator: Evaluator) -> float:
    """Top-1 accuracy (percent) of the runner's class scores on the evaluator's data."""
    correct = seen = 0
    for feed in evaluator.data:
        outputs = runner.infer(feed)
        scores = (outputs[evaluator.output] if evaluator.output in outputs
                  else next(iter(outputs.values())))
        predicted = np.asarray(scores).reshape(len(scores), -1).argmax(axis=1)
        truth = evaluator.labels[seen:seen + len(predicted)]
        correct += int(np.sum(predicted == truth))
        seen += len(predicted)
    return 100.0 * correct / max(seen, 1)
