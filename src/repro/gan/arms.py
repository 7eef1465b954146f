"""The five arms: networks, optimizers and one training iteration each.

- ``gan``: one generator, non-saturating loss.
- ``reggan``: Reg-GAN (1612.02136 §3.1): encoder E; G minimises ``-log D(G(z)) + lambda1 d(x, G(E(x)))
  + lambda2 (-log D(G(E(x))))`` and E the last two terms (**corrected sign**, see ``losses``). D is the
  plain GAN discriminator on x vs G(z); the paper never says whether D also sees G(E(x)) — it does not here.
  d is the per-pixel mean squared error (``losses.reconstruction_distance`` says why).
- ``reggan_sum``: Reg-GAN with d summed over pixels (ablation of that choice; same lambdas).
- ``mdgan``: MDGAN (App. A), one manifold step (D1: x vs G(E(x)); G, E: ``||x - G(E(x))||^2 + lam (-log D1(G(E(x))))``,
  the squared norm summed over pixels as App. A writes it, see ``losses.mdgan_manifold_loss``)
  and one diffusion step (D2: G(E(x)) as real vs G(z) as fake; G: ``-log D2(G(z))``) per iteration.
  Adam replaces App. A's plain SGD (same optimizer for every arm).
- ``mgan``: MGAN (1708.02556 eq. 2): K generators sharing all but the first layer, D and classifier
  C sharing all but the heads, equal samples per generator, fixed uniform pi; as in the authors' code
  one noise batch of m rows is replicated to all K generators (``same_z``). D/C minimise
  ``BCE_real + BCE_fake + CE_C`` (weight 1 on the shared trunk, as in the authors' code); G minimises
  ``-log D(G(z)) + beta CE_C``.
- ``mgan_beta0``: the same with beta = 0 (ablation: K generators without the diversity term).

G(E(x)) and G(z) go through G as separate batches, so batch-norm layers (DCGAN nets) keep separate
batch statistics for the two paths with shared affine parameters (1612.02136 App. B).

DDP (``build_arm(..., dist=info)`` under torchrun): each net is wrapped with
:func:`repro.common.distributed.wrap_model` (BatchNorm synchronised over the ranks, so the DCGAN nets'
batch statistics stay those of the global real/fake batch); the steps call the wrappers
(``setup.wrapped``) on this rank's share of x and z, while ``setup.nets`` keeps the plain modules for
state_dicts, :func:`generate` and checkpoints. Every loss is a mean over this rank's equal share, so
DDP's gradient average is the global mean's gradient. DDP's reducer handles every pattern below:
D forwarded twice (real, fake) before one backward, D's gradients reduced in both the D and the G
step, G forwarded twice (G(z), G(E(x))) before one backward (reggan), a forward whose output only
reaches a later backward (G(z) before the D step) and a forward under ``no_grad`` (mdgan's target):
in one backward each parameter's gradient hook fires once, and no backward leaves a net half reduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from repro.common.amp import Precision
from repro.common.distributed import DistInfo, unwrap, wrap_model
from repro.gan import losses
from repro.gan.models import (
    DCGANDiscriminator,
    DCGANEncoder,
    MixtureDCGANGenerator,
    MixtureMLPGenerator,
    MLPDiscriminator,
    MLPEncoder,
    generator_index,
)
from repro.gan.optim import Adam

ARMS = ("gan", "reggan", "reggan_sum", "mdgan", "mgan", "mgan_beta0")

StepFn = Callable[["ArmSetup", torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class ArmSetup:
    """Everything one arm trains: its nets, their optimizers, its step and its batch layout.

    ``nets`` are the plain modules (state_dicts, generation, checkpoints); ``wrapped`` the modules the
    step trains through: their DDP wrappers with several ranks, the nets themselves with one process.
    ``precision``: how the step's backward passes and optimizer steps run (:mod:`repro.common.amp`)."""

    arm: str
    nets: dict[str, nn.Module]
    opts: dict[str, Adam]
    step: StepFn
    n_generators: int
    per_generator: int  # fake samples per generator per step, global batch (generator-major batch of K*m)
    z_dim: int
    z_dist: str
    hp: dict[str, float] = field(default_factory=dict)
    wrapped: dict[str, nn.Module] = field(default_factory=dict)
    precision: Precision = field(default_factory=Precision)

    def __post_init__(self) -> None:
        self.wrapped = {k: self.wrapped.get(k, net) for k, net in self.nets.items()}

    @property
    def generator(self) -> nn.Module:
        return self.nets["G"]


def sample_noise(n: int, z_dim: int, z_dist: str, device: torch.device | str) -> torch.Tensor:
    """``n`` noise vectors [n, z_dim]: N(0, I) (MGAN 2-D), U[0, 1] (MDGAN App. C) or U[-1, 1] (MGAN CIFAR)."""
    if z_dist == "normal":
        return torch.randn(n, z_dim, device=device)
    if z_dist == "uniform01":
        return torch.rand(n, z_dim, device=device)
    if z_dist == "uniform11":
        return torch.rand(n, z_dim, device=device) * 2 - 1
    raise ValueError(f"unknown z_dist {z_dist!r}")


def replicate_noise(z: torch.Tensor, n_generators: int) -> torch.Tensor:
    """A generator-major batch [K*m, d] whose K blocks all equal the first block (m rows): one z batch
    fed to every generator, as MGAN's code does (``same_input``)."""
    m = z.shape[0] // n_generators
    return z[:m].repeat(n_generators, 1)


def _adam(params, cfg: dict) -> Adam:
    return Adam(params, lr=float(cfg["lr"]), betas=(float(cfg["beta1"]), float(cfg["beta2"])))


def _build_nets(cfg: dict, *, data_shape: tuple[int, ...], n_generators: int, n_classes: int, encoder: bool, second_d: bool) -> dict[str, nn.Module]:
    """Nets for one arm: MLPs for 2-D points and digits (``cfg['model'] == 'mlp'``), DCGAN for 32x32 images."""
    z_dim, z_dist = int(cfg["z_dim"]), cfg["z_dist"]
    nets: dict[str, nn.Module] = {}
    if cfg["model"] == "mlp":
        in_dim = int(math.prod(data_shape))
        nets["G"] = MixtureMLPGenerator(
            z_dim=z_dim, hidden=cfg["g_hidden"], out_dim=in_dim, n_layers=cfg["g_layers"],
            n_generators=n_generators, tanh_out=len(data_shape) > 1, init_std=cfg["init_std"],
            out_shape=data_shape,
        )

        def disc(k: int) -> nn.Module:
            return MLPDiscriminator(in_dim=in_dim, hidden=cfg["d_hidden"], n_layers=cfg["d_layers"], n_classes=k, leaky=cfg["leaky"],
                                   init_std=cfg["init_std"])

        nets["D"] = disc(n_classes)
        if second_d:
            nets["D2"] = disc(0)
        if encoder:
            nets["E"] = MLPEncoder(in_dim=in_dim, hidden=cfg["g_hidden"], z_dim=z_dim, z_dist=z_dist, n_layers=cfg["g_layers"], leaky=cfg["leaky"],
                                 init_std=cfg["init_std"])
    elif cfg["model"] == "dcgan":
        channels, height, width = data_shape
        if (height, width) != (32, 32):
            raise ValueError(f"the DCGAN nets expect 32x32 images, got {height}x{width}")
        w = int(cfg["width"])
        nets["G"] = MixtureDCGANGenerator(z_dim=z_dim, channels=channels, width=w, n_generators=n_generators)
        nets["D"] = DCGANDiscriminator(channels=channels, width=w, n_classes=n_classes)
        if second_d:
            nets["D2"] = DCGANDiscriminator(channels=channels, width=w)
        if encoder:
            nets["E"] = DCGANEncoder(channels=channels, z_dim=z_dim, z_dist=z_dist, width=w)
    else:
        raise ValueError(f"unknown model {cfg['model']!r} (expected mlp or dcgan)")
    return nets


def _d_both(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One D forward over ``[real; fake]`` (cheaper than two); returns real logits, fake logits and
    the fake rows' classifier logits. Only for nets without batch norm (MLPs): with BN, real and
    fake batches must keep their own statistics, so they go through D separately."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        r, _ = D(real)
        f, c = D(fake)
        return r, f, c
    logits, classes = D(torch.cat([real, fake]))
    n = real.shape[0]
    return logits[:n], logits[n:], (classes[n:] if classes is not None else None)


def _descend(setup: ArmSetup, names: tuple[str, ...], loss: torch.Tensor) -> None:
    """One optimizer step of the nets ``names`` on ``loss`` (zero their grads, backward, step)."""
    for name in names:
        setup.opts[name].zero_grad(set_to_none=True)
    setup.precision.backward(loss)
    setup.precision.step(*(setup.opts[name] for name in names))


def gan_step(setup: ArmSetup, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """One D step then one G step on the same fakes (DCGAN's schedule)."""
    G, D = setup.wrapped["G"], setup.wrapped["D"]
    fake = G(z)  # N x ...
    real_logit, fake_logit, _ = _d_both(D, x, fake.detach())
    loss_d = losses.discriminator_loss(real_logit, fake_logit)
    _descend(setup, ("D",), loss_d)
    loss_g = losses.generator_loss(D(fake)[0])
    _descend(setup, ("G",), loss_g)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}


def reggan_step(setup: ArmSetup, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reg-GAN: D as in GAN; G and E minimise their (corrected) eq. 1/2 losses with one backward."""
    G, D, E = setup.wrapped["G"], setup.wrapped["D"], setup.wrapped["E"]
    fake = G(z)
    real_logit, fake_logit, _ = _d_both(D, x, fake.detach())
    loss_d = losses.discriminator_loss(real_logit, fake_logit)
    _descend(setup, ("D",), loss_d)
    x_rec = G(E(x))  # separate batch through G: its own BN statistics
    reg = losses.reggan_regularizer(
        x, x_rec, D(x_rec)[0], lambda1=setup.hp["lambda1"], lambda2=setup.hp["lambda2"], corrected=True,
        reduction="sum" if setup.arm == "reggan_sum" else "mean",
    )
    loss_g = losses.generator_loss(D(fake)[0]) + reg  # the GAN term has no E dependence: E gets grad(reg)
    _descend(setup, ("G", "E"), loss_g)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "reg": reg.detach()}


def mdgan_step(setup: ArmSetup, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """MDGAN App. A: manifold step (D1 = ``D``) then diffusion step (``D2``)."""
    G, D1, D2, E = setup.wrapped["G"], setup.wrapped["D"], setup.wrapped["D2"], setup.wrapped["E"]
    # manifold step
    x_rec = G(E(x))
    loss_d1 = losses.discriminator_loss(*_d_both(D1, x, x_rec.detach())[:2])
    _descend(setup, ("D",), loss_d1)
    loss_m = losses.mdgan_manifold_loss(x, x_rec, D1(x_rec)[0], lam=setup.hp["mdgan_lambda"])
    _descend(setup, ("G", "E"), loss_m)
    # diffusion step: G(E(x)) (after the manifold update) is D2's "real" distribution
    with torch.no_grad():
        target = G(E(x))
    fake = G(z)
    loss_d2 = losses.discriminator_loss(*_d_both(D2, target, fake.detach())[:2])
    _descend(setup, ("D2",), loss_d2)
    loss_g = losses.generator_loss(D2(fake)[0])
    _descend(setup, ("G",), loss_g)
    return {"loss_d": loss_d2.detach(), "loss_g": loss_g.detach(), "loss_d1": loss_d1.detach(), "loss_manifold": loss_m.detach()}


def mgan_step(setup: ArmSetup, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """MGAN eq. 2 on a generator-major batch (``z`` holds K*m rows, m per generator; under DDP m is this
    rank's per-generator share). With ``same_z`` generator 0's m rows go to every generator (the
    authors' code feeds one z batch to all K), so the generators differ only by their weights."""
    G, D = setup.wrapped["G"], setup.wrapped["D"]
    k = setup.n_generators
    m = z.shape[0] // k
    if setup.hp.get("same_z", 0.0):
        z = replicate_noise(z, k)
    ids = generator_index(k, m, device=z.device)  # K*m
    fake = G(z)
    real_logit, fake_logit, class_logits = _d_both(D, x, fake.detach())
    loss_c = losses.mgan_classifier_loss(class_logits, ids)
    loss_d = losses.discriminator_loss(real_logit, fake_logit) + loss_c
    _descend(setup, ("D",), loss_d)
    fake_logit, class_logits = D(fake)
    loss_g = losses.generator_loss(fake_logit) + setup.hp["beta"] * losses.mgan_classifier_loss(class_logits, ids)
    _descend(setup, ("G",), loss_g)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "loss_c": loss_c.detach()}


def build_arm(arm: str, cfg: dict[str, Any], *, data_shape: tuple[int, ...], device: torch.device | str,
              dist: DistInfo | None = None, precision: Precision | None = None) -> ArmSetup:
    """Nets, optimizers (Adam with the experiment's lr/betas; MGAN §5: 2e-4, beta1 0.5) and step of one arm.

    ``cfg`` is one experiment's config section; ``data_shape`` is one sample's shape ((2,) for points).
    The fake batch holds ``ceil(batch_size / K)`` samples per generator, or for the MGAN arms
    ``fakes_per_generator`` when set (MGAN's CIFAR-10 code: 12 per generator vs 64 reals).
    With several ranks (``dist``) the nets are DDP-wrapped before the optimizers are built (the
    synchronised BatchNorm layers replace the plain ones). ``precision`` (None: fp32) lays the conv
    nets out channels-last on CUDA before wrapping; the training loop runs each step under its autocast.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r} (expected one of {ARMS})")
    is_mgan = arm.startswith("mgan")
    k = int(cfg["n_generators"]) if is_mgan else 1
    nets = _build_nets(
        cfg, data_shape=data_shape, n_generators=k, n_classes=k if is_mgan else 0,
        encoder=arm in ("reggan", "reggan_sum", "mdgan"), second_d=arm == "mdgan",
    )
    dist = dist or DistInfo()
    precision = precision or Precision(torch.device(device).type)
    wrapped = {name: wrap_model(precision.prepare(net.to(device)), dist, torch.device(device))
               for name, net in nets.items()}
    nets = {name: unwrap(net) for name, net in wrapped.items()}
    opts = {name: _adam(net.parameters(), cfg) for name, net in nets.items()}
    hp = {
        "beta": 0.0 if arm == "mgan_beta0" else float(cfg["beta"]),
        "lambda1": float(cfg["lambda1"]),
        "lambda2": float(cfg["lambda2"]),
        "mdgan_lambda": float(cfg["mdgan_lambda"]),
        "same_z": float(bool(cfg["same_z"])),
    }
    step = {"gan": gan_step, "reggan": reggan_step, "reggan_sum": reggan_step, "mdgan": mdgan_step}.get(arm, mgan_step)
    per_gen = math.ceil(int(cfg["batch_size"]) / k)
    if is_mgan and cfg["fakes_per_generator"]:
        per_gen = int(cfg["fakes_per_generator"])
    return ArmSetup(arm, nets, opts, step, k, per_gen, int(cfg["z_dim"]), cfg["z_dist"], hp, wrapped, precision)


def check_world_size(setup: ArmSetup, batch_size: int, world_size: int, key: str) -> None:
    """Under DDP each rank takes an equal share of the global real batch and of every generator's fakes,
    so plain per-rank means average to the global mean; ``key`` is the experiment's config key."""
    if world_size <= 1:
        return
    if batch_size % world_size:
        raise ValueError(f"config key '{key}.batch_size' = {batch_size} is not divisible by the {world_size} ranks")
    if setup.per_generator % world_size:
        raise ValueError(f"the {setup.per_generator} fakes per generator and step (config key '{key}.fakes_per_generator',"
                         f" or ceil('{key}.batch_size' / n_generators) when unset) are not divisible by the"
                         f" {world_size} ranks")


@torch.no_grad()
def generate(setup: ArmSetup, n: int, *, device: torch.device | str, chunk: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """At least ``n`` samples, equally many from each generator (fixed uniform pi): ``K * ceil(n/K)``
    samples [M, ...] and their generator indices [M]. G runs in eval mode (BN running statistics)."""
    G = setup.generator
    was_training = G.training
    G.eval()
    k = setup.n_generators
    per = math.ceil(n / k)
    outs, ids = [], []
    step = max(1, chunk // k)
    for start in range(0, per, step):
        m = min(step, per - start)
        z = sample_noise(k * m, setup.z_dim, setup.z_dist, device)
        outs.append(G(z).unflatten(0, (k, m)))  # K x m x ...
        ids.append(generator_index(k, m, device=device).unflatten(0, (k, m)))
    G.train(was_training)
    x = torch.cat(outs, dim=1).flatten(0, 1)  # generator-major over all chunks
    return x, torch.cat(ids, dim=1).flatten(0, 1)
