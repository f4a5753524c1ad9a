"""The generator's hardware, probed once as a run starts (run.json's `hardware.generator`).

CPU model from /proc/cpuinfo (Linux; `platform.processor()` elsewhere), logical and physical cores and
memory from psutil, GPUs, driver and CUDA version from NVML (`nvidia-ml-py`) when a driver answers. What
cannot be known is None and named in `missing`, never guessed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psutil

from scenariokit.results.hardware import GpuInfo, Hardware, MachineInfo

CPUINFO = Path("/proc/cpuinfo")


def probe_hardware() -> Hardware:
    facts: dict[str, Any] = {
        "hostname": platform.node() or None,
        "cpu_model": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "cpu_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
    }
    gpus, nvml, why = nvml_facts()
    missing = [f"{k}: not reported by this host" for k in ("cpu_model", "cpu_cores") if facts[k] is None]
    if why:
        missing.append(f"gpus: {why}")
    return Hardware(generator=MachineInfo(source="probe", gpus=gpus, missing=missing, **facts, **nvml))


def cpu_model() -> str | None:
    try:
        with CPUINFO.open() as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def nvml_facts() -> tuple[list[GpuInfo], dict[str, str | None], str]:
    """(GPUs, driver and CUDA versions, why there are none); NVML is shut down again."""
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return [], {}, "NVML absent (nvidia-ml-py not installed)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no library: NVMLError_LibraryNotFound and kin
        return [], {}, f"NVML absent: {type(exc).__name__}"
    try:
        return _nvml_devices(pynvml)
    except Exception as exc:  # a device that fails a query: keep the run, say so
        return [], {}, f"NVML query failed: {type(exc).__name__}: {exc}"
    finally:
        pynvml.nvmlShutdown()


def _nvml_devices(nvml: Any) -> tuple[list[GpuInfo], dict[str, str | None], str]:
    gpus = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        gpus.append(
            GpuInfo(
                index=i,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            )
        )
    cuda = int(nvml.nvmlSystemGetCudaDriverVersion_v2())  # e.g. 12040 for 12.4
    versions = {
        "gpu_driver": _text(nvml.nvmlSystemGetDriverVersion()),
        "cuda_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
    }
    return gpus, versions, "" if gpus else "NVML found no GPU"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
