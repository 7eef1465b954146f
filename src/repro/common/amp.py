"""Mixed precision and memory layout for the training loops (one switch: the stage's ``amp`` key).

``amp: auto`` trains under ``torch.autocast`` on CUDA: bfloat16 where the GPU supports it
(``torch.cuda.is_bf16_supported()``), else float16 with a ``torch.amp.GradScaler`` (loss scaling, as in
PyTorch's AMP recipe and torchvision's detection references). Conv nets also get the channels-last
layout there (NHWC, what tensor-core convolutions read natively). ``amp: off``, and any run on the CPU,
is the plain fp32 path: no autocast, no scaler, the same layout, so CPU numbers do not move.

The parameters, their gradients and the optimizer state stay fp32 in every mode (autocast only lowers
the precision of the ops that run under it), so quantities read from them (LARS's trust ratios, the
quantization Hessian) are fp32; those two also run under :func:`full_precision`, which turns autocast
off for anything they compute.

The mode does not change what a run *is*: it stays out of the checkpoint's run identity, so a run
resumes across the switch. The scaler's state is saved with the checkpoint when there is a scaler
(:meth:`Precision.checkpoint_state`) and restored when both the checkpoint and the run have one
(:meth:`Precision.restore`); otherwise the scaler starts afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from repro.common.errors import ConfigError

__all__ = ["AMP_MODES", "SCALER_KEY", "Precision", "from_config", "full_precision", "precision"]

AMP_MODES = ("auto", "off")
DEFAULT_MODE = "auto"
SCALER_KEY = "grad_scaler"  # the checkpoint key of the GradScaler's state (absent without a scaler)


@dataclass
class Precision:
    """How one training loop runs its forward/backward passes and optimizer steps.

    ``dtype`` None: fp32 (autocast off). ``scaler``: float16's loss scaler (None for bf16 and fp32).
    ``channels_last``: conv nets are put in NHWC layout by :meth:`prepare`.
    """

    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: Any = None  # torch.amp.GradScaler | None
    channels_last: bool = False

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def describe(self) -> str:
        """One line for the job log, e.g. ``bf16 autocast, channels-last``."""
        if not self.enabled:
            return "fp32 (amp off)"
        name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))
        parts = [f"{name} autocast"] + (["GradScaler"] if self.scaler is not None else [])
        return ", ".join(parts + (["channels-last"] if self.channels_last else []))

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` for the forward pass and the loss; a no-op when off."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, of the scaled loss with a scaler; autocast is off during the backward pass
        (PyTorch's recommendation), so a loop may call this inside :meth:`autocast`."""
        if not self.enabled:
            loss.backward()
            return
        with torch.autocast(self.device_type, enabled=False):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, *optimizers: Any, clip: tuple[Iterable[torch.Tensor], float] | None = None) -> None:
        """Step every optimizer (after clipping the gradient norm of ``clip = (params, max_norm)``).

        With a scaler: unscale first (clipping sees true gradients), skip the steps whose gradients hold
        inf/NaN, then update the scale once. An optimizer only needs ``param_groups`` and ``step()``.
        """
        if self.scaler is None:
            if clip is not None:
                nn.utils.clip_grad_norm_(clip[0], clip[1])
            for opt in optimizers:
                opt.step()
            return
        if clip is not None:
            for opt in optimizers:
                self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(clip[0], clip[1])
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` in channels-last layout when enabled and it has 2-D convolutions (else as is).
        Call before DDP wraps it (DDP's buckets follow the parameters' layout at construction)."""
        if self.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model.to(memory_format=torch.channels_last)
        return model

    def checkpoint_state(self) -> dict[str, Any]:
        """``{SCALER_KEY: scaler state}`` to merge into a checkpoint, ``{}`` without a scaler."""
        return {SCALER_KEY: self.scaler.state_dict()} if self.scaler is not None else {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load the scaler's state from a checkpoint dict when both have one; otherwise nothing."""
        if self.scaler is not None and state.get(SCALER_KEY):
            self.scaler.load_state_dict(dict(state[SCALER_KEY]))


def precision(mode: str | bool, device: torch.device | str, *, key: str = "amp") -> Precision:
    """The :class:`Precision` of ``mode`` (``auto`` | ``off``) on ``device``; ``key`` names the config key
    in the error for any other value. ``auto`` on a CPU is ``off``; ``False`` (YAML's reading of a bare
    ``off``) is ``off``."""
    if mode is False:
        mode = "off"
    if mode not in AMP_MODES:
        raise ConfigError(f"config key '{key}': {mode!r} is not one of {list(AMP_MODES)}")
    device = torch.device(device)
    if mode == "off" or device.type != "cuda":
        return Precision(device_type=device.type)
    if torch.cuda.is_bf16_supported():
        return Precision("cuda", torch.bfloat16, None, channels_last=True)
    return Precision("cuda", torch.float16, torch.amp.GradScaler("cuda"), channels_last=True)


def from_config(cfg: Mapping[str, Any], device: torch.device | str, *, section: str) -> Precision:
    """The precision of a stage's config section (its ``amp`` key, default ``auto``) on ``device``."""
    return precision(cfg.get("amp", DEFAULT_MODE), device, key=f"{section}.amp")


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Autocast off (CPU and, when present, CUDA) for computations that must stay fp32."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield
