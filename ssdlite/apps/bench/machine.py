"""The machine a benchmark ran on: see :mod:`ssdlite.deploy.machine` (also the key of ``backend="auto"``'s cached choice)."""

from ssdlite.deploy.machine import VECTOR_FLAGS, cpu_description

__all__ = ["cpu_description", "VECTOR_FLAGS"]
