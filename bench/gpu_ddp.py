"""2 DDP ranks train what 1 process trains: nccl on two GPUs (gloo on the CPU for the self-test).

The check of ``tests/test_ddp.py`` (which runs gloo on CPUs) on the GPU path: a LARS AlexNet-BN cell
(BatchNorm, so ``torch.nn.SyncBatchNorm`` is exercised through :func:`repro.common.distributed.wrap_model`)
trains a few steps on the same global batches as 1 process and as 2 ranks launched by
``torch.multiprocessing``, each rank joining through :func:`repro.common.distributed.init_distributed`
(``nccl`` on CUDA). Autocast is off and TF32 is disabled so the comparison is of fp32 summation order
alone; the final weights must agree within ``atol``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(device: str, steps: int, batch: int, tiny: bool) -> dict[str, torch.Tensor]:
    """Train the cell under whatever process group is (or is not) set up; every rank returns the weights."""
    from repro.common.distributed import init_distributed, unwrap, wrap_model
    from repro.lars.data import Split
    from repro.lars.engine import train
    from repro.lars.models import build_model
    from repro.lars.optim import LARS, warmup_poly_schedule

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    info, dev = init_distributed(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * steps, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (batch * steps,), generator=g).to(dev)
    torch.manual_seed(0)
    conv, fc = ([8, 8, 8, 8, 8], 16) if tiny else ([64, 192, 384, 256, 256], 1024)
    model = build_model("alexnet_bn", num_classes=10, image_size=32, conv=conv, fc=fc).to(dev)
    net = wrap_model(model, info, dev)
    opt = LARS(unwrap(net).parameters(), lr=1.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=1e-3)
    train(net, opt, warmup_poly_schedule(opt, steps, 0, power=2.0), Split(x, y), batch_size=batch,
          micro_batch=batch, epochs=1, seed=0, dist=info)
    return {k: v.detach().cpu() for k, v in unwrap(net).state_dict().items()}


def _rank(rank: int, world: int, port: int, device: str, steps: int, batch: int, tiny: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    state = _train(device, steps, batch, tiny)
    if rank == 0:
        torch.save(state, out)
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def run(*, device: str = "cuda", steps: int = 3, batch: int = 64, tiny: bool = False, atol: float = 1e-4
        ) -> dict[str, Any]:
    """Compare 2 ranks with 1 process; ``{"status": "skipped", "reason": ...}`` with fewer than 2 GPUs."""
    import torch.multiprocessing as mp

    if device == "cuda" and torch.cuda.device_count() < 2:
        return {"status": "skipped", "reason": f"{torch.cuda.device_count()} GPU(s): the 2-rank nccl check needs 2"}
    backend = "nccl" if device == "cuda" else "gloo"
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        os.environ.pop(var, None)
    one = _train(device, steps, batch, tiny)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(_rank, args=(2, _free_port(), device, steps, batch, tiny, out), nprocs=2)
        two = torch.load(out, weights_only=True)
    diffs = {k: float((one[k].double() - two[k].double()).abs().max()) for k in one if one[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    sync_bn = [k for k in one if k.endswith("running_mean")]
    return {"status": "ok" if diffs[worst] <= atol else "mismatch", "backend": backend, "world_size": 2,
            "steps": steps, "global_batch": batch, "max_abs_diff": diffs[worst], "worst_tensor": worst,
            "atol": atol, "sync_batchnorm_layers": len(sync_bn)}
