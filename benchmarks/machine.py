"""What the benchmarks record about the machine they ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record() -> dict:
    """CPU model, core count, load average when measured and the Python version, as the result JSONs store them."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "python": platform.python_version()}
