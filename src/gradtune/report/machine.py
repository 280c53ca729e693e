"""What a run trained on: the processor, cores, threads, device, and the versions that matter. Read
at the start of training (the setup record of metrics.jsonl), so a report written later, on
another computer, still tells where the run's numbers were measured."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def processor_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(device: Any = "cpu", processes: int = 1) -> dict[str, Any]:
    """The machine as plain JSON values."""
    import torch

    from gradtune import __version__

    device = str(device)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"processor": processor_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device, "gpu": gpu, "processes": processes, "os": platform.platform(terse=True),
            "python": platform.python_version(), "torch": torch.__version__, "gradtune": __version__}
