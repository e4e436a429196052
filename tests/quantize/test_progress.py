"""Long work inside a pass reaches the pipeline's progress report."""

from __future__ import annotations

from graphopt.calibration import RandomData
from graphopt.model_io import resolve_model
from graphopt.pass_context import PassContext
from graphopt.passes.quantize.quantize_pass import QuantizePass
from graphopt.pipeline import Pipeline


def test_calibration_and_sensitivity_report_their_steps():
    model = resolve_model("zoo:digits")
    calibration = RandomData(model, batches=3, seed=1)
    seen: list[tuple[float, int, str]] = []
    Pipeline([QuantizePass()]).run(
        model, context=PassContext(calibration=calibration), budget="sqnr>=200",
        on_budget="warn", progress=lambda done, total, name: seen.append((done, total, name)),
    )
    names = [name for _, _, name in seen]
    assert [n for n in names if "calibrating" in n] == [
        f"quantize: calibrating {i}/3" for i in (1, 2, 3)]
    sweep = [n for n in names if "layer sensitivity" in n]
    assert sweep[-1] == f"quantize: layer sensitivity {len(sweep)}/{len(sweep)}"
    # Each step fills the pass's share of the bar from the start; the run ends at 1 of 1.
    calibrating = [done for done, _, name in seen if "calibrating" in name]
    assert calibrating == [1 / 3, 2 / 3, 1.0] and seen[-1] == (1, 1, "done")
