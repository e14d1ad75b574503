"""Dense bf16 peaks (vendor datasheets) for MFU; None where unknown (CPU, other GPUs): no MFU is reported then."""
from __future__ import annotations

import torch

# (substring of torch.cuda.get_device_name, TFLOP/s); the first match wins, so PCIe precedes the H100 default (SXM)
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


def peak_tflops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return value
    return None


def device_peak_tflops(device: torch.device) -> float | None:
    return peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
