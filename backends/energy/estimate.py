"""Energy per inference from measured busy time and the modelled power of the CPUs in use.

Where no counter is readable this is the headline energy figure
(``source="estimate:time-x-power"``). Over a timed phase of ``wall`` seconds and ``inferences``
inferences, on ``cpus_in_use`` logical CPUs, with ``busy`` CPU-seconds spent by this process
(every thread: ``time.process_time``, which counts a runtime's spinning worker threads too):

    active = busy x P_cpu
    idle   = max(0, cpus_in_use x wall - busy) x P_cpu x idle_share
    energy per inference = (active + idle) / inferences

with ``P_cpu`` and ``idle_share`` from :mod:`graphopt.backends.energy.cpu_power`. "Waiting"
includes time other processes held our CPUs (then their work is priced at the idle share:
a contended run's estimate leans low, as its latency leans high). It follows
what runs: a model that takes twice the CPU time costs twice the energy, whatever its MAC
precision. It is labelled "not measured", carries the power figure and its origin, and no
uncertainty (the nominal power is the dominant, unknown error).
"""

from __future__ import annotations

from .base import EnergyReading
from .cpu_power import CpuPower

__all__ = ["TimePowerEstimator", "SOURCE"]

SOURCE = "estimate:time-x-power"


class TimePowerEstimator:
    """Energy per inference = measured CPU time x modelled power per logical CPU."""

    def __init__(self, *, power: CpuPower) -> None:
        self.power = power

    def estimate(
        self,
        *,
        busy_seconds: float,
        wall_seconds: float,
        inferences: int,
        cpus_in_use: int,
    ) -> EnergyReading:
        """Joules per inference of a phase that kept ``busy_seconds`` of CPU time busy."""
        if inferences < 1:
            raise ValueError(f"inferences must be >= 1, got {inferences}")
        if busy_seconds < 0 or wall_seconds <= 0 or cpus_in_use < 1:
            raise ValueError(
                f"need busy_seconds >= 0, wall_seconds > 0 and cpus_in_use >= 1; got"
                f" {busy_seconds}, {wall_seconds}, {cpus_in_use}"
            )
        watts = self.power.watts_per_cpu
        idle_cpu_seconds = max(0.0, cpus_in_use * wall_seconds - busy_seconds)
        domains = {
            "cpu-active": busy_seconds * watts / inferences,
            "cpu-idle": idle_cpu_seconds * self.power.idle_watts_per_cpu / inferences,
        }
        note = (
            f"estimate, not measured: {busy_seconds:.3f} CPU-s busy over {wall_seconds:.3f} s"
            f" on {cpus_in_use} logical CPU(s) x {watts:.2f} W per busy CPU"
            f" ({self.power.idle_share:.0%} of it while waiting); power: {self.power.origin}"
        )
        return EnergyReading(
            joules_per_inference=sum(domains.values()),
            uncertainty_joules=None,
            source=SOURCE,
            domains=domains,
            window_seconds=wall_seconds,
            inferences=inferences,
            note=note,
            power_watts=watts,
            power_origin=self.power.origin,
        )
