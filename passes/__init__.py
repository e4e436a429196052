"""Graph rewrites, one concern per module; importing this package registers them all."""

from graphopt.pass_api import register_preset
from graphopt.passes import cleanup, fusion

__all__ = ["cleanup", "fusion"]

register_preset("lossless", "cleanup,fuse", "every rewrite that keeps outputs equal (default)")
