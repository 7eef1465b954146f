"""Network builders: MLPs for 2-D mixtures and 8x8 digits, DCGAN-style nets for 32x32 images.

Every generator is a *mixture of K generators sharing all layers but the first* (MGAN, 1708.02556
§3.1, "parameter sharing"); K = 1 is a plain generator. Its input is generator-major: rows
``k*m … (k+1)*m - 1`` of a batch of ``N = K*m`` noise vectors go through generator ``k``
(:func:`generator_index` gives the matching labels). Every discriminator has a shared trunk and two
heads: one real/fake logit and, when ``n_classes > 0``, MGAN's K-way classifier C (D and C share
all layers but the output layer, §3.1).

Initialisation follows MGAN §5 ("all experiments"): weights N(0, 0.02), zero biases; the MLP
builders take ``init_std`` (0 keeps PyTorch's default init, as MDGAN states no init). Activations:
ReLU in generators, LeakyReLU(0.2) in discriminators/classifiers and encoders (MGAN §5), except
that the 2-D toy nets of both papers use ReLU throughout (MGAN §5.1, MDGAN App. C) — the builder's
``leaky`` flag picks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "MixtureMLPGenerator",
    "MLPDiscriminator",
    "MLPEncoder",
    "MixtureDCGANGenerator",
    "DCGANDiscriminator",
    "DCGANEncoder",
    "MixtureBatchNorm1d",
    "BatchNormNoShift",
    "generator_index",
    "init_normal_",
    "latent_activation",
]


def generator_index(n_generators: int, per_generator: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Labels of a generator-major batch: ``[0]*m + [1]*m + … + [K-1]*m`` (int64 [K*m]).

    MGAN draws equal numbers of samples from each generator per minibatch (§3.1 and the authors'
    code) instead of sampling the generator index u ~ Mult(pi); with pi fixed uniform the two agree
    in expectation.
    """
    return torch.arange(n_generators, device=device).repeat_interleave(per_generator)


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """MGAN §5: weights ~ N(0, std), biases zero; BatchNorm scale ~ N(1, std) as in DCGAN."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, _MixtureLinear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, BatchNormNoShift):
            nn.init.normal_(m.weight, 1.0, std)
    return module


def latent_activation(z_dist: str) -> nn.Module:
    """Map an encoder's output into the support of the noise prior: sigmoid for U[0,1], tanh for
    U[-1,1], identity for N(0, I). (MDGAN does not say; this keeps E(x) a valid generator input.)"""
    if z_dist == "uniform01":
        return nn.Sigmoid()
    if z_dist == "uniform11":
        return nn.Tanh()
    if z_dist == "normal":
        return nn.Identity()
    raise ValueError(f"unknown z_dist {z_dist!r} (expected normal, uniform01 or uniform11)")


def _mlp_layers(in_dim: int, hidden: int, n_layers: int, leaky: bool) -> tuple[list[nn.Module], int]:
    """``n_layers`` x (Linear -> ReLU or LeakyReLU(0.2)) from ``in_dim``; returns the layers and the output width."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2) if leaky else nn.ReLU()]
        width = hidden
    return layers, width


class _MixtureLinear(nn.Module):
    """K independent linear maps applied to a generator-major batch: [K*m, i] -> [K*m, o]."""

    def __init__(self, n_generators: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n_generators = n_generators
        self.weight = nn.Parameter(torch.empty(n_generators, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_generators, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        k = self.n_generators
        if n % k:
            raise ValueError(f"batch of {n} noise vectors is not divisible by the {k} generators")
        zk = z.reshape(k, n // k, z.shape[1])  # K x m x i
        return torch.baddbmm(self.bias, zk, self.weight).reshape(n, -1)  # (K*m) x o


class MixtureBatchNorm1d(nn.Module):
    """Per-generator batch norm of a generator-major batch [K*m, F]: generator k's m rows are normalised
    with their own batch statistics, running statistics and affine parameters (MGAN's code: one BN per
    generator after its first layer). Implemented as one ``BatchNorm1d(K*F)`` on the [m, K*F] view, so
    DDP's synchronised BN also works per generator. K = 1 is a plain ``BatchNorm1d(F)``."""

    def __init__(self, n_generators: int, features: int) -> None:
        super().__init__()
        self.n_generators, self.features = n_generators, features
        self.bn = nn.BatchNorm1d(n_generators * features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        k, f = self.n_generators, self.features
        m = h.shape[0] // k
        hk = h.reshape(k, m, f).transpose(0, 1).reshape(m, k * f)  # m x K*F
        return self.bn(hk).reshape(m, k, f).transpose(0, 1).reshape(k * m, f)  # (K*m) x F


class BatchNormNoShift(nn.Module):
    """2-D batch norm with a learned scale and no shift (MGAN's code: ``center=False`` in the
    generator's shared layers). The normalisation is a plain ``BatchNorm2d(affine=False)`` child, so
    DDP's SyncBatchNorm conversion still finds it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.weight.view(1, -1, 1, 1)


class MixtureMLPGenerator(nn.Module):
    """MLP generator(s): per-generator ``z -> hidden``, then shared ``n_layers - 1`` hidden layers
    and the output layer, reshaped to ``out_shape`` (e.g. (1, 8, 8) for digits).
    MGAN §5.1 / MDGAN App. C: two hidden layers of 128 ReLU units."""

    def __init__(
        self, *, z_dim: int, hidden: int, out_dim: int, n_layers: int = 2, n_generators: int = 1, tanh_out: bool = False,
        init_std: float = 0.02,
        out_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError("n_layers must be >= 1")
        self.z_dim, self.n_generators, self.out_dim = z_dim, n_generators, out_dim
        self.out_shape = tuple(out_shape) if out_shape is not None else (out_dim,)
        self.first = _MixtureLinear(n_generators, z_dim, hidden)
        layers: list[nn.Module] = [nn.ReLU()]
        for _ in range(n_layers - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, out_dim))
        if tanh_out:
            layers.append(nn.Tanh())
        self.shared = nn.Sequential(*layers)
        if init_std > 0:
            init_normal_(self, init_std)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shared(self.first(z)).view(-1, *self.out_shape)  # (K*m) x out_shape  # (K*m) x out_dim


class MLPDiscriminator(nn.Module):
    """MLP trunk with a real/fake logit head and, if ``n_classes > 0``, MGAN's classifier head.

    ``forward`` returns ``(d_logit [N], c_logits [N, n_classes] or None)``.
    """

    def __init__(
        self, *, in_dim: int, hidden: int, n_layers: int = 1, n_classes: int = 0, leaky: bool = False, init_std: float = 0.02
    ) -> None:
        super().__init__()
        layers, width = _mlp_layers(in_dim, hidden, n_layers, leaky)
        self.trunk = nn.Sequential(*layers)
        self.d_head = nn.Linear(width, 1)
        self.c_head = nn.Linear(width, n_classes) if n_classes > 0 else None
        if init_std > 0:
            init_normal_(self, init_std)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(x.flatten(1))  # N x hidden
        return self.d_head(h).squeeze(1), (self.c_head(h) if self.c_head is not None else None)


class MLPEncoder(nn.Module):
    """Reg-GAN/MDGAN encoder E: X -> Z (1612.02136 §3.1), an MLP ``in -> hidden x n_layers -> z``."""

    def __init__(
        self, *, in_dim: int, hidden: int, z_dim: int, z_dist: str, n_layers: int = 2, leaky: bool = False, init_std: float = 0.02
    ) -> None:
        super().__init__()
        layers, width = _mlp_layers(in_dim, hidden, n_layers, leaky)
        layers += [nn.Linear(width, z_dim), latent_activation(z_dist)]
        self.net = nn.Sequential(*layers)
        if init_std > 0:
            init_normal_(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # N x z_dim


class MixtureDCGANGenerator(nn.Module):
    """DCGAN-style 32x32 generator(s), MGAN's CIFAR-10 net as the authors' code builds it: per-generator
    linear ``z -> 4x4x(4*width)`` with a per-generator BatchNorm (:class:`MixtureBatchNorm1d`) and ReLU,
    then shared 5x5 stride-2 transposed convolutions ``4w -> 2w -> w -> channels``, each hidden one with
    a BatchNorm that scales but does not shift (:class:`BatchNormNoShift`) and ReLU, and a tanh output.
    ``width = 128`` is the paper's."""

    def __init__(self, *, z_dim: int, channels: int, width: int = 128, n_generators: int = 1) -> None:
        super().__init__()
        self.z_dim, self.n_generators, self.width = z_dim, n_generators, width
        self.first = _MixtureLinear(n_generators, z_dim, 4 * 4 * 4 * width)

        def up(i: int, o: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(i, o, 5, stride=2, padding=2, output_padding=1), BatchNormNoShift(o), nn.ReLU()]

        self.bn0 = MixtureBatchNorm1d(n_generators, 4 * 4 * 4 * width)
        self.shared = nn.Sequential(
            *up(4 * width, 2 * width),  # 8x8
            *up(2 * width, width),  # 16x16
            nn.ConvTranspose2d(width, channels, 5, stride=2, padding=2, output_padding=1),  # 32x32
            nn.Tanh(),
        )
        init_normal_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.first(z)))  # N x 16*4w
        return self.shared(h.view(-1, 4 * self.width, 4, 4))  # N x C x 32 x 32


def _dcgan_trunk(channels: int, width: int) -> nn.Sequential:
    """5x5 stride-2 convolutions ``channels -> w -> 2w -> 4w`` (32 -> 4 px), each followed by BN and
    LeakyReLU(0.2): MGAN's code normalises after every convolution, the first included (DCGAN's D skips it)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 5, stride=2, padding=2),
        nn.BatchNorm2d(width),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 5, stride=2, padding=2),
        nn.BatchNorm2d(2 * width),
        nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 5, stride=2, padding=2),
        nn.BatchNorm2d(4 * width),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
    )


class DCGANDiscriminator(nn.Module):
    """MGAN's CIFAR-10 D/C: conv trunk 128/256/512 (BN, LeakyReLU 0.2), linear heads of 1 and K."""

    def __init__(self, *, channels: int, width: int = 128, n_classes: int = 0) -> None:
        super().__init__()
        self.trunk = _dcgan_trunk(channels, width)
        feat = 4 * 4 * 4 * width
        self.d_head = nn.Linear(feat, 1)
        self.c_head = nn.Linear(feat, n_classes) if n_classes > 0 else None
        init_normal_(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(x)  # N x 16*4w
        return self.d_head(h).squeeze(1), (self.c_head(h) if self.c_head is not None else None)


class DCGANEncoder(nn.Module):
    """Reg-GAN's encoder for images: "E mirrors G" (1612.02136 App. B), i.e. D's conv trunk -> z."""

    def __init__(self, *, channels: int, z_dim: int, z_dist: str, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(_dcgan_trunk(channels, width), nn.Linear(4 * 4 * 4 * width, z_dim), latent_activation(z_dist))
        init_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # N x z_dim
