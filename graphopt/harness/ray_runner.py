"""Suite sweeps on Ray: each cell a Ray task, results streamed into the driver's result store.

:func:`run_suite_on_ray` is :func:`graphopt.harness.suite.run_suite` with the measuring done
by Ray tasks (``pip install graphopt[ray]``; every node needs graphopt and the backends its
cells use, and sees the models at the paths the suite names, made absolute here):

- The same plan and the same resume rule: cells whose key the store holds as finished
  (:meth:`~graphopt.harness.store.ResultStore.finished`, ``retry_failed`` as the CLI's) are
  not submitted; cells that cannot run (a pass not registered, a backend missing on the
  driver) are recorded ``skipped`` without a task. Each task runs the cell's pipeline and
  its benchmark (:func:`graphopt.harness.suite.measure_cell`) and returns the record fields;
  the driver appends each record as its task ends (``ray.wait``), so a stopped sweep resumes
  where it stopped and the store lives on the driver's disk only.
- Resources: every cell asks for one unit of the custom resource :data:`TIMING_SLOT`, and a
  node declares as many units as timing cells it may run at once: **one** (``ray start
  --resources='{"timing_slot": 1}'``; a local instance started here declares one). So two
  timing cells never run on one node at the same time and never share its cores; the
  benchmark's own load check flags anything else that runs there. Cells on GPU backends
  (``ort-cuda``, ``ort-trt``, ``tensorrt``, ``openvino-gpu``) also ask for ``num_gpus=1``;
  every cell asks for ``num_cpus`` = its ``threads`` setting (default 1).
- ``address``: ``"local"`` starts a Ray instance on this machine with one timing slot,
  ``"auto"`` joins the running cluster (``ray start``, ``RAY_ADDRESS``), anything else is a
  cluster address (``ray://host:10001`` or ``host:6379``). A cluster with no
  :data:`TIMING_SLOT` resource is refused with the ``ray start`` line that declares it.
- Ctrl-C (or any exception) cancels the tasks not finished; what finished is in the store.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

from graphopt.backends.registry import BACKENDS, parse_backend
from graphopt.errors import GraphoptError, reason_line
from graphopt.harness.store import ResultStore
from graphopt.harness.suite import (
    CellCallback,
    PlannedCell,
    StartCallback,
    Suite,
    SuiteRun,
    measure_cell,
    plan,
    start_run,
)
from graphopt.model_io import zoo_name

__all__ = ["TIMING_SLOT", "LOCAL", "cell_resources", "run_suite_on_ray", "ray_available"]

logger = logging.getLogger(__name__)

TIMING_SLOT = "timing_slot"
"""The custom Ray resource a timing cell holds while it runs; a node declares one."""
LOCAL = "local"
INSTALL_HINT = "pip install 'graphopt[ray]'"


def ray_available() -> tuple[bool, str]:
    """Whether ``ray`` imports here, and why not."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return False, f"ray is not installed ({INSTALL_HINT}): {reason_line(exc)}"
    return True, "ray"


def cell_resources(planned: PlannedCell) -> dict:
    """The Ray task options of a cell: one timing slot, a GPU for GPU backends, CPUs."""
    options: dict = {"resources": {TIMING_SLOT: 1},
                     "num_cpus": planned.timing.threads or 1}
    try:
        device = BACKENDS[parse_backend(planned.cell.backend).name].device
    except (GraphoptError, KeyError):
        device = "cpu"
    if device == "gpu":
        options["num_gpus"] = 1
    return options


def _absolute(planned: PlannedCell) -> PlannedCell:
    """The cell with its model and data paths absolute (Ray workers run elsewhere)."""
    def located(spec: str | None) -> str | None:
        if spec is None or zoo_name(spec) is not None:
            return spec
        return os.path.abspath(spec)

    model = dataclasses.replace(planned.model, spec=located(planned.model.spec),
                                calib=located(planned.model.calib))
    return dataclasses.replace(planned, model=model)


def _run_cell(suite: Suite, planned: PlannedCell) -> tuple[str, dict]:
    """The Ray task: one cell measured on the worker."""
    return measure_cell(suite, planned)


def _connect(ray, address: str, init_options: Mapping | None) -> bool:
    """Connect (or start a local instance); ``True`` when this call started Ray."""
    if ray.is_initialized():
        return False
    options = dict(init_options or {})
    options.setdefault("logging_level", logging.WARNING)
    options.setdefault("log_to_driver", False)
    if address == LOCAL:
        resources = dict(options.pop("resources", {}))
        resources.setdefault(TIMING_SLOT, 1)
        ray.init(resources=resources, **options)
    else:
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            raise GraphoptError(f"--ray {address}: no Ray cluster to join"
                                f" ({reason_line(exc)}); start one with `ray start --head"
                                f" --resources='{{\"{TIMING_SLOT}\": 1}}'` or use --ray"
                                f" {LOCAL}") from exc
    return True


def run_suite_on_ray(
    suite: Suite,
    store: ResultStore,
    *,
    address: str = LOCAL,
    cells: Sequence[PlannedCell] | None = None,
    on_start: StartCallback | None = None,
    on_cell: CellCallback | None = None,
    retry_failed: bool = False,
    init_options: Mapping | None = None,
) -> SuiteRun:
    """Measure the cells of ``suite`` that ``store`` has not finished as Ray tasks (module
    docstring). ``init_options`` go to ``ray.init`` when this call connects (tests start a
    local instance with ``num_cpus``); an instance already initialised is used as it is."""
    ok, why = ray_available()
    if not ok:
        raise GraphoptError(why)
    import ray

    cells = plan(suite) if cells is None else list(cells)
    run, done, todo = start_run(suite, store, cells, on_cell=on_cell,
                                retry_failed=retry_failed)
    if not todo:
        return run
    started = _connect(ray, address, init_options)
    pending: dict = {}
    try:
        slots = ray.cluster_resources().get(TIMING_SLOT, 0)
        if not slots:
            raise GraphoptError(
                f"the Ray cluster declares no {TIMING_SLOT!r} resource, so no timing cell"
                f" could be placed: start each node with `ray start --resources="
                f"'{{\"{TIMING_SLOT}\": 1}}'` (one timing cell per node at a time)")
        task = ray.remote(_run_cell)
        suite_ref = ray.put(suite)
        for planned in todo:
            options = cell_resources(planned)
            ref = task.options(max_retries=0, **options).remote(suite_ref, _absolute(planned))
            pending[ref] = planned
            if on_start is not None:
                on_start(planned)
        logger.info("%d cells submitted to Ray (%g timing slots)", len(pending), slots)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                planned = pending.pop(ref)
                try:
                    status, fields = ray.get(ref)
                except Exception as exc:  # the task's worker died or raised
                    logger.debug("cell %s failed on Ray", planned.cell.name, exc_info=True)
                    status, fields = "failed", {"error": f"ray: {type(exc).__name__}:"
                                                         f" {reason_line(exc)}"}
                done(planned, status, **fields)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return run
