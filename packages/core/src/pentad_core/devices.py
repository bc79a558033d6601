"""Devices, precision, seeding, threads and the CPU memory allocator.

The selection functions are pure (they take the hardware description as input) so that their
logic is tested without a GPU; the ``current_*`` helpers read the real hardware.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import platform
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from pentad_core.errors import ConfigError

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device."""

    index: int
    name: str
    total_memory_bytes: int
    capability: tuple[int, int]

    @property
    def supports_bf16(self) -> bool:
        """bf16 tensor-core math needs compute capability 8.0 (Ampere) or newer."""
        return self.capability >= (8, 0)


@dataclass(frozen=True)
class Hardware:
    """What this process can compute on."""

    cpu_count: int
    torch_threads: int
    platform: str
    cuda_devices: tuple[CudaDevice, ...] = field(default_factory=tuple)
    mps_available: bool = False

    def summary(self) -> str:
        """One human-readable line per device."""
        lines = [f"CPU: {self.cpu_count} cores ({self.torch_threads} torch threads), {self.platform}"]
        for device in self.cuda_devices:
            memory = device.total_memory_bytes / 2**30
            major, minor = device.capability
            lines.append(f"cuda:{device.index}: {device.name}, {memory:.1f} GiB, compute capability {major}.{minor}")
        if self.mps_available:
            lines.append("mps: Apple GPU")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """A JSON-safe record."""
        return dataclasses.asdict(self)


def describe_hardware() -> Hardware:
    """Describe the CPU and every visible CUDA device."""
    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append(
                CudaDevice(index, properties.name, properties.total_memory, (properties.major, properties.minor))
            )
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Hardware(
        cpu_count=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        platform=f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        cuda_devices=tuple(devices),
        mps_available=mps,
    )


def select_accelerator(requested: str, hardware: Hardware) -> str:
    """Resolve ``"auto"`` to ``"cuda"``, ``"mps"`` or ``"cpu"``; check explicit requests.

    Raises:
        ConfigError: For an unknown accelerator or one this machine lacks.
    """
    if requested not in ACCELERATORS:
        raise ConfigError(f"--accelerator {requested!r} is not one of {', '.join(ACCELERATORS)}.")
    if requested == "auto":
        if hardware.cuda_devices:
            return "cuda"
        return "mps" if hardware.mps_available else "cpu"
    if requested in ("cuda", "gpu") and not hardware.cuda_devices:
        raise ConfigError(f"--accelerator {requested} was asked for but no CUDA device is visible; use cpu or auto.")
    if requested == "mps" and not hardware.mps_available:
        raise ConfigError("--accelerator mps was asked for but no Apple GPU is available; use cpu or auto.")
    return "cuda" if requested == "gpu" else requested


def select_precision(requested: str, accelerator: str, hardware: Hardware) -> str:
    """Resolve ``"auto"``: bf16-mixed on CUDA with bf16 support, 16-mixed on older CUDA, else 32-true.

    Args:
        requested: A Lightning precision string or ``"auto"``.
        accelerator: The resolved accelerator (``"cuda"``, ``"cpu"``, ``"mps"``).
        hardware: The machine, from :func:`describe_hardware` (or simulated in tests).

    Raises:
        ConfigError: For an unknown precision or 16-bit floats on a device that cannot do them.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}.")
    on_cuda = accelerator == "cuda" and bool(hardware.cuda_devices)
    if requested == "auto":
        if not on_cuda:
            return "32-true"
        return "bf16-mixed" if all(d.supports_bf16 for d in hardware.cuda_devices) else "16-mixed"
    if requested.startswith("bf16") and on_cuda and not all(d.supports_bf16 for d in hardware.cuda_devices):
        raise ConfigError(f"--precision {requested} needs compute capability 8.0 or newer; use 16-mixed.")
    if requested.startswith("16") and accelerator == "cpu":
        raise ConfigError(f"--precision {requested} is not supported on the CPU; use bf16-mixed or 32-true.")
    return requested


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels.

    Args:
        seed: The seed; also exported as ``PL_GLOBAL_SEED`` so Lightning's workers follow it.
        deterministic: Use deterministic algorithms (slower; errors on ops that have none).
    """
    if not 0 <= seed < 2**32:
        raise ConfigError(f"--seed {seed} must be between 0 and 2**32 - 1.")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None`` keeps the default); returns the number in use."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextlib.contextmanager
def using_threads(threads: int | None) -> Iterator[int]:
    """Torch's intra-op threads set to ``threads`` inside the block (:func:`set_threads`; the number in
    use is yielded) and put back after it: one process that trains several models, each with the threads
    of its own recipe section (a blend's models, a benchmark's rows)."""
    previous = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        torch.set_num_threads(previous)


def flush_denormals() -> bool:
    """Treat subnormal floats (below about 1e-38) as zero in CPU arithmetic.

    Why: x86 cores take a slow path for arithmetic on subnormals, and tiny gradients and momentum
    terms can drift into that range as training goes on, slowing the steps down for values no model
    needs. Returns whether the CPU supports it (x86 with SSE3).
    """
    return torch.set_flush_denormal(True)


# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_ALLOCATOR_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_freed_memory_retained = False


def retain_freed_memory() -> bool:
    """Keep the memory that freed CPU tensors give back inside the process, for the next step to reuse.

    glibc's malloc serves large blocks (above a threshold of at most 32 MiB) with a fresh ``mmap``
    and unmaps them on free, and trims the top of its heap when enough of it is free. A training
    step on the CPU frees its activations and allocates them again in the next step, so by default
    the kernel maps and zero-fills them page by page every step, in page faults and system time
    that the step then waits for (measured: docs/benchmarks.md). With mmap and trimming off, freed
    blocks stay in the heap and the next step reuses them, as jemalloc or tcmalloc (PyTorch's CPU
    tuning guide) do.

    The price: the process holds its peak heap until it exits. The setting is process-wide and
    applied once; it is left alone where it cannot help or someone chose otherwise (not Linux with
    glibc, another allocator in ``LD_PRELOAD``, glibc malloc settings in the environment).

    Returns:
        Whether glibc malloc is now set to retain freed memory.
    """
    global _freed_memory_retained
    if _freed_memory_retained:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    if any(name in os.environ for name in _ALLOCATOR_ENVIRONMENT) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # The threshold is a size_t in glibc but mallopt takes an int: INT_MAX (2 GiB) never trims in practice.
    _freed_memory_retained = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _freed_memory_retained


def memory_summary(device: torch.device | str | None = None) -> dict[str, float]:
    """Allocated, reserved and peak memory in MiB of a CUDA device, or the process RSS on CPU."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        mib = 2**20
        return {
            "allocated_mib": torch.cuda.memory_allocated(device) / mib,
            "reserved_mib": torch.cuda.memory_reserved(device) / mib,
            "peak_allocated_mib": torch.cuda.max_memory_allocated(device) / mib,
        }
    try:
        import resource

        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_rss_mib": peak_kib / 1024}
    except ImportError:  # pragma: no cover - Windows
        return {}


def maybe_channels_last(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """Convert a convolutional model to channels-last memory format when ``enabled``."""
    return model.to(memory_format=torch.channels_last) if enabled else model


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether ``model``'s first 4-D weight is in channels-last layout (see :func:`maybe_channels_last`).

    Feed such a model channels-last inputs (``x.contiguous(memory_format=torch.channels_last)``):
    an ordinary ``(B, C, H, W)`` tensor still works, but the first convolution then copies it into
    channels-last order on every call, which costs step time. Depends on the parameters only, so
    ``torch.fx`` can trace a ``forward`` that asks it.
    """
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)
