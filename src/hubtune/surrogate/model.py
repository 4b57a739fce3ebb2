"""Deep-kernel GP performance surrogate (DyHPO / Quick-Tune style).

An MLP maps a feature row (config, model, dataset, fidelity, curve prefix; see
:mod:`hubtune.surrogate.features`) to a hidden representation; a linear head
gives the GP's prior mean (a meta-learned zero-shot prediction) and a second
head a low-dimensional embedding on which a Matern-5/2 kernel measures how
strongly two queries co-vary. Meta-training maximises the exact marginal
likelihood of one dataset's observations at a time (gpytorch ``ExactGP``), so
the kernel learns how observations on a dataset inform predictions on the same
dataset; online, the GP conditions on the target dataset's own observations.

Weights are stored as safetensors, everything else as JSON; loading executes
no code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gpytorch
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hubtune.surrogate.cost import CostModel
from hubtune.surrogate.features import N_CURVE, FeatureBuilder

WEIGHTS_FILE = "surrogate.safetensors"
SPEC_FILE = "surrogate.json"
FORMAT_VERSION = 1
LAST_SCORE_COLUMN = -N_CURVE + 1
"""Column of a feature row holding the last observed score (see ``curve_features``)."""


class SurrogateError(RuntimeError):
    """Raised when a surrogate cannot be loaded or used (the message says why)."""


class FeatureNet(nn.Module):
    """MLP trunk with a prior-mean head and an embedding head."""

    def __init__(self, in_dim: int, hidden: int = 128, emb: int = 16, residual_mean: bool = False) -> None:
        super().__init__()
        self.residual_mean = residual_mean
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean_head = nn.Linear(hidden, 1)
        self.emb_head = nn.Linear(hidden, emb)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        # The prior mean is a learned correction of the last observed score (0
        # without a prefix): "the next epoch scores about what the last did" is
        # built in, the network learns how curves move on from there.
        mean = self.mean_head(h).squeeze(-1)
        if self.residual_mean:
            mean = mean + x[:, LAST_SCORE_COLUMN]
        return mean, self.emb_head(h)


class DeepKernelGP(gpytorch.models.ExactGP):
    """ExactGP whose mean and kernel inputs come from a :class:`FeatureNet`."""

    def __init__(self, net: FeatureNet, likelihood: gpytorch.likelihoods.GaussianLikelihood) -> None:
        super().__init__(None, None, likelihood)
        self.net = net
        self.covar = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5))

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        mean, z = self.net(x)
        return gpytorch.distributions.MultivariateNormal(mean, self.covar(z))


class Surrogate:
    """A meta-trained performance surrogate plus its cost model.

    Use :meth:`predict` to get posterior means and standard deviations of
    scores for query rows, conditioned on observed rows of the same dataset.
    """

    def __init__(
        self,
        features: FeatureBuilder,
        cost: CostModel,
        hidden: int = 128,
        emb: int = 16,
        record: dict[str, Any] | None = None,
        residual_mean: bool = False,
    ) -> None:
        self.features = features
        self.cost = cost
        self.hidden = hidden
        self.emb = emb
        self.residual_mean = residual_mean
        self.record = dict(record or {})
        self.likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-5)
        )
        self.gp = DeepKernelGP(FeatureNet(features.dim, hidden, emb, residual_mean), self.likelihood)
        self.gp.eval()
        self.likelihood.eval()

    # ------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(
        self,
        x_obs: np.ndarray,
        y_obs: np.ndarray,
        x_query: np.ndarray,
        extra_noise: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std of the (noise-free) score at each query row.

        ``extra_noise`` (optional, one variance per observation) is added to the
        meta-learned observation noise, e.g. the sampling variance of a score
        measured on a small validation set.

        Exact GP conditioning computed directly with a Cholesky factor (the
        same maths as gpytorch's exact prediction, without its caches), so a
        decision costs milliseconds for hundreds of observations.
        """
        xq = torch.as_tensor(x_query, dtype=torch.float32)
        mq, zq = self.gp.net(xq)
        outputscale = self.gp.covar.outputscale
        prior_var = outputscale.expand(len(xq))
        if len(x_obs) == 0:
            return mq.numpy().astype(np.float64), prior_var.sqrt().numpy().astype(np.float64)
        xo = torch.as_tensor(x_obs, dtype=torch.float32).double()
        yo = torch.as_tensor(y_obs, dtype=torch.float64)
        mo, zo = self.gp.net(xo.float())
        kernel = self.gp.covar
        k_oo = kernel(zo).to_dense().double()
        noise = self.likelihood.noise.double()
        k_oo = k_oo + noise * torch.eye(len(zo), dtype=torch.float64)
        if extra_noise is not None:
            k_oo = k_oo + torch.diag(torch.as_tensor(extra_noise, dtype=torch.float64))
        chol = torch.linalg.cholesky(k_oo + 1e-8 * torch.eye(len(zo), dtype=torch.float64))
        k_qo = kernel(zq, zo).to_dense().double()
        resid = (yo - mo.double()).unsqueeze(-1)
        alpha = torch.cholesky_solve(resid, chol)
        mean = mq.double() + (k_qo @ alpha).squeeze(-1)
        v = torch.linalg.solve_triangular(chol, k_qo.T, upper=False)
        var = (prior_var.double() - (v * v).sum(0)).clamp_min(1e-10)
        return mean.numpy(), var.sqrt().numpy()

    def refit(self, x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int,
              scope: str = "all") -> Surrogate:
        """A copy of this surrogate fitted to one task's observations.

        The network and GP hyperparameters start from this surrogate's weights
        and take ``steps`` Adam steps (learning rate ``lr``) on the exact
        marginal likelihood of rows ``x`` with scores ``y``; ``seed`` seeds
        torch, so the copy is a pure function of the inputs. This surrogate is
        left untouched. ``scope="kernel"`` fits only the kernel's output scale and
        lengthscale, the observation noise and the prior mean's constant (the
        network's features and the rest of its mean stay meta-trained).
        """
        import copy

        if scope not in ("all", "kernel"):
            raise ValueError(f"refit scope must be 'all' or 'kernel', got {scope!r}")
        sur = copy.deepcopy(self)
        gp, lik = sur.gp, sur.likelihood
        xt = torch.as_tensor(x, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        torch.manual_seed(seed)
        gp.train()
        lik.train()
        gp.set_train_data(xt, yt, strict=False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, gp)
        params = [p for n, p in gp.named_parameters()
                  if scope == "all" or not n.startswith("net.") or n == "net.mean_head.bias"]
        opt = torch.optim.Adam(params, lr=lr)
        with gpytorch.settings.max_cholesky_size(4096):
            for _ in range(steps):
                opt.zero_grad()
                loss = -mll(gp(xt), yt)
                loss.backward()
                opt.step()
        gp.eval()
        lik.eval()
        return sur

    @torch.no_grad()
    def prior_mean(self, x: np.ndarray) -> np.ndarray:
        """The meta-learned zero-shot prediction (GP prior mean) for each row."""
        m, _ = self.gp.net(torch.as_tensor(x, dtype=torch.float32))
        return m.numpy().astype(np.float64)

    # ---------------------------------------------------------------- I/O
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """All learnable tensors (network, kernel, likelihood) by name."""
        out = {f"gp.{k}": v.detach().clone().contiguous() for k, v in self.gp.state_dict().items()}
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``surrogate.safetensors`` + ``surrogate.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file(self.state_tensors(), str(d / WEIGHTS_FILE))
        spec = {
            "format_version": FORMAT_VERSION,
            "architecture": {"kind": "deep-kernel-gp", "hidden": self.hidden, "emb": self.emb,
                             "kernel": "matern52", "in_dim": self.features.dim,
                             "residual_mean": self.residual_mean},
            "features": self.features.to_dict(),
            "cost_model": self.cost.to_dict(),
            "record": self.record,
        }
        (d / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Surrogate:
        """Load a surrogate written by :meth:`save` (no code is executed)."""
        d = Path(directory)
        spec_path, weights_path = d / SPEC_FILE, d / WEIGHTS_FILE
        if not spec_path.is_file() or not weights_path.is_file():
            raise SurrogateError(
                f"no surrogate in {d}: expected {SPEC_FILE} and {WEIGHTS_FILE} (run `hubtune metatrain`)"
            )
        try:
            spec = json.loads(spec_path.read_text())
        except json.JSONDecodeError as exc:
            raise SurrogateError(f"{spec_path} is not valid JSON: {exc}") from None
        if spec.get("format_version") != FORMAT_VERSION:
            raise SurrogateError(
                f"{spec_path} has format_version {spec.get('format_version')!r}; this hubtune reads {FORMAT_VERSION}"
            )
        arch = spec["architecture"]
        sur = cls(
            FeatureBuilder.from_dict(spec["features"]),
            CostModel.from_dict(spec["cost_model"]),
            hidden=int(arch["hidden"]),
            emb=int(arch["emb"]),
            record=spec.get("record", {}),
            residual_mean=bool(arch.get("residual_mean", False)),
        )
        tensors = load_file(str(weights_path))
        state = {k[len("gp."):]: v for k, v in tensors.items() if k.startswith("gp.")}
        try:
            sur.gp.load_state_dict(state)
        except RuntimeError as exc:
            raise SurrogateError(f"{weights_path} does not match its spec: {exc}") from None
        sur.gp.eval()
        sur.likelihood.eval()
        return sur
