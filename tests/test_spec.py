"""Pipeline specs: parsing, presets, typed options, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from graphopt.errors import PipelineSpecError
from graphopt.pass_api import GraphPass, scoped_registration
from graphopt.spec import build_passes, parse_spec


@dataclasses.dataclass(kw_only=True)
class _Probe(GraphPass):
    ratio: float = 0.5
    per_channel: bool = False
    method: str = "minmax"
    steps: int = 1
    names: tuple[str, ...] = ()
    limit: int | None = None

    def call(self, model):
        raise AssertionError("never run")




@pytest.fixture(autouse=True, scope="module")
def _test_passes():
    """The test passes exist while this module's tests run, never after."""
    with scoped_registration(
            {"_spec_probe": _Probe},
            presets={"_spec_probe_preset": ("cleanup,_spec_probe(steps=3)", "test preset")}):
        yield


def test_parse_nested_and_presets():
    items = parse_spec("cleanup,_spec_probe(ratio=0.3,per_channel=true),lossless")
    assert items[0] == ("cleanup", {})
    assert items[1] == ("_spec_probe", {"ratio": "0.3", "per_channel": "true"})
    assert [name for name, _ in items[2:]] == ["cleanup", "fuse"]


def test_preset_inside_spec_expands_in_place():
    names = [p.name for p in build_passes("_spec_probe_preset,fuse")]
    assert names == ["cleanup", "_spec_probe", "fuse"]


def test_typed_values():
    (probe,) = build_passes(
        "_spec_probe(ratio=0.25,per_channel=yes,method=entropy,steps=4,names=a;b,limit=none)"
    )
    assert probe.ratio == 0.25 and probe.per_channel is True and probe.method == "entropy"
    assert probe.steps == 4 and probe.names == ("a", "b") and probe.limit is None
    (probe,) = build_passes("_spec_probe(limit=7)")
    assert probe.limit == 7
    (probe,) = build_passes("_spec_probe(names=[a,b,c])")
    assert probe.names == ("a", "b", "c")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown pass 'nope'"),
        ("cleanup(bogus=1)", "has no option 'bogus'"),
        ("_spec_probe(ratio=lots)", "expected float"),
        ("_spec_probe(per_channel=maybe)", "expected true or false"),
        ("_spec_probe(ratio)", "is not key=value"),
        ("cleanup,,fuse", "empty item"),
        ("cleanup(", "unbalanced"),
        ("lossless(x=1)", "takes no options"),
    ],
)
def test_errors_are_clear(spec, message):
    with pytest.raises(PipelineSpecError, match=message.replace("(", r"\(")):
        build_passes(spec)
