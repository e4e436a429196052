"""Graph rewrites, one concern per module; importing this package registers them all."""

from graphopt.pass_api import register_preset
from graphopt.passes import cleanup, convert_float, equalize, fusion, prune, quantize
from graphopt.passes import lowrank as lowrank  # registers lowrank (re-exported)

__all__ = ["cleanup", "convert_float", "equalize", "fusion", "prune", "quantize"]

register_preset("lossless", "cleanup,fuse", "every rewrite that keeps outputs equal (default)")
# Fuse first: BatchNorm is folded into the weights in fp32 and rounded once (on resnet50,
# inception_v2 and densenet121 converting before fuse costs 1.6-4 dB of SQNR).
register_preset(
    "fp16", "cleanup,fuse,convert_float(to=fp16)",
    "lossless, then fp16 weights and activations (fragile ops and the stem stay fp32)",
)
# Weights only: onnxruntime's CPU provider (the verification oracle) has no bfloat16 kernels;
# bfloat16 compute is convert_float(to=bf16) at opset >= 22, for OpenVINO and GPU runtimes.
register_preset(
    "bf16", "cleanup,fuse,convert_float(to=bf16,mode=weights)",
    "lossless, then bf16 weights behind Casts to fp32 (half the file, fp32 range and compute)",
)
register_preset(
    "int8", "cleanup,fuse,quantize",
    "lossless, then int8 QDQ (per-channel weights, calibrated uint8 activations; give --calib)",
)
register_preset(
    "int8-weights", "cleanup,fuse,quantize_weights",
    "lossless, then int8 weights behind DequantizeLinear with float compute (a quarter of the"
    " weight bytes, no calibration)",
)
register_preset(
    "int4-weights", "cleanup,fuse,quantize_weights(bits=4)",
    "lossless, then block-wise int4 weights (32 per scale) behind DequantizeLinear with float"
    " compute (opset 21; an eighth of the weight bytes plus scales, no calibration)",
)
