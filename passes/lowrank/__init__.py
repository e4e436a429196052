"""``lowrank``: low-rank splitting of Conv, Gemm and MatMul layers (SVD, Tucker-2)."""
