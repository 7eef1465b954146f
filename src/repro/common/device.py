"""Which torch device a stage trains on: the one reading of a config's ``device`` key.

``auto`` is this process's GPU when torch sees one, else the CPU; ``cpu``; ``cuda`` (this rank's local
GPU under DDP); ``cuda:N`` (one named GPU, one process only). A GPU that is not there is a
:class:`~repro.common.errors.ConfigError` naming the key, raised before any work or process group.
"""

from __future__ import annotations

import torch

from repro.common.errors import ConfigError


def resolve_device(name: str = "auto", *, key: str = "device", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device that config value ``name`` (config key ``key``) means for this process."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key '{key}': {name!r} is not a device (auto | cpu | cuda | cuda:N)") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"config key '{key}': {name!r} is not supported (auto | cpu | cuda | cuda:N)")
    if not torch.cuda.is_available():
        raise ConfigError(f"config key '{key}': {name!r} but torch sees no CUDA device")
    if device.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if world_size > 1:
        raise ConfigError(f"config key '{key}': {name!r} names one GPU, but {world_size} ranks run: use 'cuda' or 'auto'")
    if device.index >= torch.cuda.device_count():
        raise ConfigError(f"config key '{key}': {name!r} but torch sees {torch.cuda.device_count()} GPU(s)")
    return device
