"""prune: dependency groups on hand-built graphs, exact removal of dead channels, repair."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from graphopt import oracle
from graphopt.calibration import ArrayData
from graphopt.cost import model_cost
from graphopt.errors import GraphoptError
from graphopt.pass_context import PassContext
from graphopt.passes.prune.groups import analyze
from graphopt.passes.prune.prune_pass import PrunePass
from graphopt.verify import compare_outputs

RNG_SEED = 0


def _conv(name, x, out, weight_shape, rng, *, dead=(), group=1, pads=1, bias=True):
    """A Conv node and its initializers; output channels in ``dead`` are all-zero."""
    weight = rng.normal(0, 0.3, weight_shape).astype(np.float32)
    b = rng.normal(0, 0.1, weight_shape[0]).astype(np.float32)
    for channel in dead:
        weight[channel] = 0
        b[channel] = 0
    inits = [helper.make_tensor(f"{name}_w", TensorProto.FLOAT, weight.shape, weight.ravel())]
    inputs = [x, f"{name}_w"]
    if bias:
        inits.append(helper.make_tensor(f"{name}_b", TensorProto.FLOAT, b.shape, b))
        inputs.append(f"{name}_b")
    kernel = weight_shape[2]
    node = helper.make_node("Conv", inputs, [out], name=name, group=group,
                            pads=[pads if kernel > 1 else 0] * 4)
    return node, inits


def _model(nodes, inits, outputs, *, in_shape=(2, 3, 8, 8)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto = onnx.shape_inference.infer_shapes(proto)
    onnx.checker.check_model(proto, full_check=True)
    return ir.from_proto(proto)


def _feeds(model, count=4, seed=1):
    rng = np.random.default_rng(seed)
    shape = [d for d in model.graph.inputs[0].shape]
    return [{"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(count)]


def _outputs(model, feeds):
    session = oracle.make_session(model)
    runs = [oracle.run_model(session, feed) for feed in feeds]
    return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}


def _prune(model, feeds=None, **options):
    graph_pass = PrunePass(**{"round_to": 1, "min_channels": 1, **options})
    data = ArrayData(model, {"x": np.concatenate([f["x"] for f in (feeds or _feeds(model))])},
                     batch_size=2)
    graph_pass.with_context(PassContext(calibration=data))
    result = graph_pass(model)
    onnx.checker.check_model(ir.to_proto(result.model), full_check=True)
    return result, graph_pass


def _weight(model, node_name, index=1):
    node = next(n for n in model.graph if n.name == node_name)
    return node.inputs[index].const_value.numpy()


def _residual_three(rng, dead=(1, 4, 6, 9, 12, 15)):
    nodes, inits = [], []
    for name, out in (("stem", "s"),):
        node, ini = _conv(name, "x", out, (8, 3, 3, 3), rng)
        nodes.append(node)
        inits += ini
    nodes.append(helper.make_node("Relu", ["s"], ["sr"], name="stem_relu"))
    for branch in ("a", "b", "c"):
        node, ini = _conv(branch, "sr", branch, (16, 8, 3, 3), rng, dead=dead)
        nodes.append(node)
        inits += ini
    nodes += [helper.make_node("Add", ["a", "b"], ["ab"], name="add1"),
              helper.make_node("Add", ["ab", "c"], ["abc"], name="add2"),
              helper.make_node("Relu", ["abc"], ["r"], name="relu")]
    node, ini = _conv("head", "r", "y", (5, 16, 1, 1), rng)
    return _model(nodes + [node], inits + ini, ["y"])


@pytest.mark.parametrize("reconstruct", [False, True])
def test_residual_add_across_three_branches_removes_dead_channels_exactly(reconstruct):
    model = _residual_three(np.random.default_rng(RNG_SEED))
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, graph_pass = _prune(model, feeds, ratio=6 / 16, reconstruct=reconstruct)
    assert result.modified
    for branch in ("a", "b", "c"):
        assert _weight(result.model, branch).shape[0] == 10
    assert _weight(result.model, "head").shape[1] == 10
    # The coupled branches lose the same (dead) channels, so nothing changes.
    fidelity = compare_outputs(before, _outputs(result.model, feeds))
    assert fidelity.max_rel < 1e-5
    assert graph_pass.stats["classes_removed"] == 6


def test_residual_groups_are_coupled():
    model = _residual_three(np.random.default_rng(RNG_SEED))
    deps = analyze(model)
    spans = {v.name: s for v, s in deps.spans.items()}
    assert np.array_equal(deps.class_of(spans["a"].atoms), deps.class_of(spans["b"].atoms))
    assert np.array_equal(deps.class_of(spans["a"].atoms), deps.class_of(spans["c"].atoms))
    # The stem reads the graph input: protected.
    assert all(deps.uf.blocked(int(c)) for c in deps.class_of(spans["s"].atoms))


def test_concat_feeding_a_conv_cuts_each_input_at_its_offset():
    rng = np.random.default_rng(RNG_SEED)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    a, ia = _conv("a", "s", "a", (8, 8, 1, 1), rng, dead=(0, 5))
    b, ib = _conv("b", "s", "b", (16, 8, 3, 3), rng, dead=(2, 3, 11, 14))
    cat = helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1)
    relu = helper.make_node("Relu", ["cat"], ["r"], name="relu")
    head, ih = _conv("head", "r", "y", (4, 24, 3, 3), rng)
    model = _model([stem, a, b, cat, relu, head], inits + ia + ib + ih, ["y"])
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, _ = _prune(model, feeds, ratio=0.25, reconstruct=False)
    assert _weight(result.model, "a").shape[0] == 6
    assert _weight(result.model, "b").shape[0] == 12
    assert _weight(result.model, "head").shape[1] == 18
    assert compare_outputs(before, _outputs(result.model, feeds)).max_abs < 1e-5


def test_depthwise_chain_follows_channels_and_updates_group():
    rng = np.random.default_rng(RNG_SEED)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    expand, ie = _conv("expand", "s", "e", (16, 8, 1, 1), rng, dead=(3, 7, 8, 12))
    relu = helper.make_node("Relu", ["e"], ["er"], name="relu")
    depthwise, idw = _conv("dw", "er", "d", (16, 1, 3, 3), rng, group=16, bias=False)
    head, ih = _conv("head", "d", "y", (4, 16, 1, 1), rng)
    model = _model([stem, expand, relu, depthwise, head], inits + ie + idw + ih, ["y"])
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, _ = _prune(model, feeds, ratio=0.25, reconstruct=False)
    dw = next(n for n in result.model.graph if n.name == "dw")
    assert dw.attributes.get_int("group") == 12
    assert _weight(result.model, "dw").shape == (12, 1, 3, 3)
    assert _weight(result.model, "head").shape[1] == 12
    assert compare_outputs(before, _outputs(result.model, feeds)).max_abs < 1e-5


def test_flatten_into_gemm_removes_blocks_of_features():
    rng = np.random.default_rng(RNG_SEED)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    conv, ic = _conv("conv", "s", "c", (16, 8, 3, 3), rng, dead=(0, 1, 2, 9))
    relu = helper.make_node("Relu", ["c"], ["r"], name="relu")
    pool = helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                            strides=[2, 2])
    flat = helper.make_node("Flatten", ["p"], ["f"], name="flat")
    weight = rng.normal(0, 0.1, (5, 16 * 16)).astype(np.float32)
    gemm = helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1)
    inits += ic + [helper.make_tensor("fc_w", TensorProto.FLOAT, weight.shape, weight.ravel()),
                   helper.make_tensor("fc_b", TensorProto.FLOAT, [5], np.zeros(5))]
    model = _model([stem, conv, relu, pool, flat, gemm], inits, ["y"])
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, _ = _prune(model, feeds, ratio=0.25, reconstruct=False)
    assert _weight(result.model, "fc").shape == (5, 12 * 16)
    assert compare_outputs(before, _outputs(result.model, feeds)).max_abs < 1e-5
    kept = [c for c in range(16) if c not in (0, 1, 2, 9)]
    columns = np.concatenate([np.arange(c * 16, c * 16 + 16) for c in kept])
    np.testing.assert_array_equal(_weight(result.model, "fc"), weight[:, columns])


def test_a_branch_that_is_a_graph_output_is_not_pruned():
    rng = np.random.default_rng(RNG_SEED)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    a, ia = _conv("a", "s", "a", (16, 8, 3, 3), rng, dead=(0, 1, 2, 3))
    relu = helper.make_node("Relu", ["a"], ["r"], name="relu")
    head, ih = _conv("head", "r", "y", (4, 16, 1, 1), rng)
    model = _model([stem, a, relu, head], inits + ia + ih, ["y", "r"])
    result, graph_pass = _prune(model, ratio=0.25, reconstruct=False)
    assert not result.modified
    assert _weight(result.model, "a").shape[0] == 16
    assert any("reaches the graph output 'r'" in line for line in graph_pass.explanations)


def test_reconstruction_recovers_what_the_removed_channels_carried():
    """Channels 8..15 are twice channels 0..7: least squares can fold the removed half into
    the head's weights exactly (ReLU is positively homogeneous); plain removal cannot."""
    rng = np.random.default_rng(3)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    a, ia = _conv("a", "s", "a", (16, 8, 3, 3), rng)
    weight = onnx.numpy_helper.to_array(ia[0]).copy()
    bias = onnx.numpy_helper.to_array(ia[1]).copy()
    weight[8:], bias[8:] = 2 * weight[:8], 2 * bias[:8]
    ia = [onnx.numpy_helper.from_array(weight, "a_w"), onnx.numpy_helper.from_array(bias, "a_b")]
    relu = helper.make_node("Relu", ["a"], ["r"], name="relu")
    head, ih = _conv("head", "r", "y", (4, 16, 3, 3), rng)
    model = _model([stem, a, relu, head], inits + ia + ih, ["y"])
    feeds, held_out = _feeds(model, count=8, seed=5), _feeds(model, count=4, seed=9)
    before = _outputs(model, held_out)
    sqnr = {}
    for reconstruct in (False, True):
        copy = ir.from_proto(ir.to_proto(model))
        result, _ = _prune(copy, feeds, ratio=0.5, reconstruct=reconstruct)
        assert _weight(result.model, "head").shape[1] == 8
        sqnr[reconstruct] = compare_outputs(before, _outputs(result.model, held_out)).sqnr_db
    assert sqnr[False] < 20 and sqnr[True] > 60, sqnr


def test_target_macs_is_reached_on_the_cost_model():
    model = _residual_three(np.random.default_rng(RNG_SEED), dead=())
    macs = model_cost(model).macs
    result, graph_pass = _prune(model, target_macs=0.6)
    after = model_cost(result.model, refresh_shapes=True).macs
    assert after <= 0.6 * macs
    assert graph_pass.stats["macs_after"] == after


@pytest.mark.parametrize("options", [{"ratio": 1.0}, {"target_macs": 0.0},
                                     {"ratios": ("conv",)}, {"round_to": 0}])
def test_bad_options_are_one_line_errors(options):
    with pytest.raises(GraphoptError, match="prune:"):
        PrunePass(**options)


def test_grouped_convs_and_a_channel_shuffle_lose_balanced_channels_exactly():
    """Grouped 1x1 (2 groups) -> shuffle -> depthwise -> grouped 1x1: columns 1 and 5 of the
    shuffle are dead, so each group of both grouped convs loses two channels."""
    rng = np.random.default_rng(RNG_SEED)
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    g1, i1 = _conv("g1", "s", "a", (16, 4, 1, 1), rng, group=2, dead=(1, 5, 9, 13))
    relu = helper.make_node("Relu", ["a"], ["ar"], name="relu")
    shapes = {"split_shape": [2, 2, 8, 8, 8], "merge_shape": [2, 16, 8, 8]}
    inits += [helper.make_tensor(k, TensorProto.INT64, [len(v)], v) for k, v in shapes.items()]
    shuffle = [
        helper.make_node("Reshape", ["ar", "split_shape"], ["r5"], name="shuffle_split"),
        helper.make_node("Transpose", ["r5"], ["t5"], name="shuffle_swap", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "merge_shape"], ["sh"], name="shuffle_merge"),
    ]
    dw, idw = _conv("dw", "sh", "d", (16, 1, 3, 3), rng, group=16, bias=False)
    g2, i2 = _conv("g2", "d", "y", (8, 8, 1, 1), rng, group=2)
    model = _model([stem, g1, relu, *shuffle, dw, g2], inits + i1 + idw + i2 + [], ["y"])
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, _ = _prune(model, feeds, ratio=0.25, reconstruct=False)
    assert _weight(result.model, "g1").shape == (12, 4, 1, 1)
    assert _weight(result.model, "g2").shape == (8, 6, 1, 1)
    assert _weight(result.model, "shuffle_split").tolist() == [2, 2, 6, 8, 8]
    assert next(n for n in result.model.graph if n.name == "dw").attributes.get_int("group") == 12
    assert compare_outputs(before, _outputs(result.model, feeds)).max_abs < 1e-5


def _two_layer(rng, dead=(0, 1, 2, 3)):
    stem, inits = _conv("stem", "x", "s", (8, 3, 3, 3), rng)
    bn_params = {"bn_scale": np.ones(16), "bn_bias": np.zeros(16), "bn_mean": np.zeros(16),
                 "bn_var": np.ones(16)}
    bn_params["bn_scale"][list(dead)] = 1e-3  # slimming: tiny gamma, unimportant channels
    a, ia = _conv("a", "s", "a", (16, 8, 3, 3), rng)
    bn = helper.make_node("BatchNormalization", ["a", *bn_params], ["an"], name="bn")
    relu = helper.make_node("Relu", ["an"], ["r"], name="relu")
    b, ib = _conv("b", "r", "b", (16, 16, 3, 3), rng)
    relu2 = helper.make_node("Relu", ["b"], ["br"], name="relu2")
    head, ih = _conv("head", "br", "y", (4, 16, 1, 1), rng)
    inits += ia + ib + ih + [onnx.numpy_helper.from_array(v.astype(np.float32), k)
                             for k, v in bn_params.items()]
    return _model([stem, a, bn, relu, b, relu2, head], inits, ["y"])


def test_per_layer_ratios_and_exclude():
    model = _two_layer(np.random.default_rng(0))
    result, _ = _prune(model, ratio=0.25, ratios=("b=0.5",), exclude=("a",))
    assert _weight(result.model, "a").shape[0] == 16
    assert _weight(result.model, "b").shape[0] == 8


def test_bn_criterion_removes_the_channels_with_the_smallest_gamma():
    model = _two_layer(np.random.default_rng(0))
    result, _ = _prune(model, ratio=0.25, criterion="bn", exclude=("b",), reconstruct=False,
                       recalibrate_bn=False)
    gamma = next(n for n in result.model.graph if n.name == "bn").inputs[1].const_value.numpy()
    assert gamma.shape == (12,) and np.all(gamma == 1.0)


def test_activation_criterion_needs_and_uses_calibration_data():
    model = _residual_three(np.random.default_rng(RNG_SEED))
    feeds = _feeds(model)
    before = _outputs(model, feeds)
    result, _ = _prune(model, feeds, ratio=6 / 16, criterion="activation", reconstruct=False)
    assert compare_outputs(before, _outputs(result.model, feeds)).max_rel < 1e-5
