"""Turn the ``device`` and ``precision`` options into torch objects.

Checking the spelling of an option does not import torch; resolving it does.
"""

from __future__ import annotations

import re
import sys

from .lazy import LazyModule

torch = LazyModule("torch")

#: Precision option -> name of the torch dtype it computes in.
PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: What ``torch.device`` accepts for the device types we support (an index has no sign or leading zero).
DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps)(:(0|[1-9][0-9]*))?")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for "auto", "cpu", "cuda", "cuda:N" or "mps".

    "auto" picks CUDA, then MPS, then CPU. An explicit device that is not
    present raises ``ValueError`` rather than silently running elsewhere.
    """
    name = check_device_name(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(name)
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device %r was requested but CUDA is not available." % device)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                "device %r was requested but only %d CUDA device(s) are present." % (device, torch.cuda.device_count())
            )
        return resolved
    if resolved.type == "mps" and not _mps_available():
        raise ValueError("device %r was requested but MPS is not available." % device)
    return resolved


def check_device_name(device: str | torch.device) -> str:
    """Validate the spelling of a device option without touching any accelerator (or importing torch)."""
    if _is_torch_device(device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(
            "device must be a string such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps', got %r." % (device,)
        )
    name = device.strip().lower()
    if name != "auto" and not DEVICE_PATTERN.fullmatch(name):
        raise ValueError("Unknown device %r: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'." % device)
    return name


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Return the compute dtype for "auto", "fp32", "fp16" or "bf16" on ``device``.

    "auto" is fp16 on CUDA and fp32 elsewhere.
    """
    name = check_precision_name(precision)
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, PRECISION_DTYPES[name])


def weights_precision(device: torch.device, dtype: torch.dtype) -> str:
    """open_clip's ``precision`` for the weights: "bf16" for bf16 on the CPU, else "fp32".

    On the CPU, autocast re-casts fp32 weights on every call, which made bf16
    slower than fp32; weights kept in bf16 (LayerNorms stay fp32) make a
    ViT-B-32 text query 1.3x and its image tower 3.5x (JPEGs to vectors) faster on a CPU with
    AVX512-BF16/AMX. On GPUs autocast over fp32 weights stays the rule.
    """
    return "bf16" if device.type == "cpu" and dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision in ``dtype`` on ``device``; a no-op context for fp32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def check_precision_name(precision: str) -> str:
    """Validate a precision option: "auto", "fp32", "fp16" or "bf16"."""
    name = precision.strip().lower() if isinstance(precision, str) else None
    if name != "auto" and name not in PRECISION_DTYPES:
        raise ValueError("Unknown precision %r: use 'auto', 'fp32', 'fp16' or 'bf16'." % (precision,))
    return name


def limit_cpu_threads(threads: int | None) -> int | None:
    """Run torch's CPU work in this process on ``threads`` intra-op threads; return the count now in effect.

    torch's default is one thread per core in every process, so the concurrent requests of a web
    server (several processes, several threads each) make every query encoding fight the others,
    and anything else on the machine, for all the cores. Call it once per process, after a pre-fork
    server forked it and before the process runs a model. ``None`` leaves torch's default; without
    torch installed there is nothing to limit (``None``).
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError("CPU threads must be a positive integer or None, got %r." % (threads,))
    try:
        torch.set_num_threads(threads)
    except ImportError:
        return None
    return torch.get_num_threads()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _is_torch_device(value) -> bool:
    # Without torch imported there is no torch.device to be an instance of: never import it here.
    return isinstance(value, getattr(sys.modules.get("torch"), "device", ()))


def __getattr__(name: str):
    # PRECISIONS (option -> torch dtype) is built on first access, which imports torch.
    if name == "PRECISIONS":
        return {option: getattr(torch, dtype) for option, dtype in PRECISION_DTYPES.items()}
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
