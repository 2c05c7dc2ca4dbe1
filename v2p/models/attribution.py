"""Each source's contribution at each site, from leave-one-source-out heads (ECONOMICS.md 7.1).

Beside the policy it trains, SAC trains an ensemble of small SAC heads on the same batches:
head 0 on every source's transitions, head ``1 + k`` on every source's but source ``k``'s. The
heads are counterfactual runs in miniature (the leave-one-out of Data-OOB and Data Shapley,
with the retraining done alongside instead of afterwards): at every evaluation the platform
runs each head's deterministic policy at every site, and source ``k``'s contribution at site
``j`` is

    C[k, j] = MPL_j(head 0) - MPL_j(head 1 + k)                           [units/hr]

the expected MPL (the task model's expected completions per hour of the actions taken) that
the heads reach at site ``j`` with ``k``'s data, minus without it. It is measured on the
platform's own evaluation runs at the site, never on what a source logged, so a source whose
logged rewards are corrupted cannot vouch for itself: its head learns from them, and the
platform sees what that does to the work. A duplicate of another source's data adds nothing
its twin does not bring, so leaving it out changes nothing. ``C`` is the value of the data
up to now, not a per-update increment: it starts at 0 (the heads start equal) and moves as
the heads learn.

Why heads beside the policy rather than gradient attribution of the policy itself: a
first-order (TracIn) attribution credits a duplicate of the platform's data like the data it
copies, and splits a site's progress by gradient alignment, so it credits training progress
that would have happened anyway; the counterfactual measures what the data adds. The heads
learn from the replay the main policy collects, with the main run's reward (the same
Lagrangian penalty) and hyper-parameters, so they learn the same task; they read the raw
observation by default, since a latent from the shared encoder has learnt from every source
and would carry a left-out source's value into its head.

What this costs and how far the heads' values agree with real leave-one-out retraining is
measured by ``bench/attribution.py`` (docs/benchmarks.md, docs/attribution.md).

The heads draw their initial weights and policy noise from a generator of their own, so the
main run is the same draw for draw with and without them (and a resumed run restores it).
Every head sees the same noise (common random numbers), which keeps their differences to what
they were trained on.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from v2p.contracts import PLATFORM, AttributionEvaluation, EvalBatch, ReplaySample
from v2p.models.components import LOG_STD_MAX, LOG_STD_MIN, box_affine, squashed_gaussian
from v2p.models.ensemble import ensemble_mlp
from v2p.models.evaluation import expected_site_mpl
from v2p.models.tracin import NORMALISATIONS, OBJECTIVES, GradientAttribution, flat_size
from v2p.validation import check_int, check_scalar

INPUTS = ("observation", "latent")
METHODS = ("counterfactual", "gradient")


@dataclass(frozen=True)
class AttributionSettings:
    """How each source's contribution is measured (``model.init_args.attribution``).

    Args:
        method: ``counterfactual`` (leave-one-source-out heads, :class:`CounterfactualHeads`)
            or ``gradient`` (first-order attribution of the policy's own updates,
            :class:`~v2p.models.tracin.GradientAttribution`).
        every, objective, normalise: of the gradient method: take the per-source gradients
            every ``every``-th update; credit the contributions to the site objective's
            ``both`` terms, its ``critic`` (TD) or its ``actor`` term, ``raw`` or ``cosine``
            (:mod:`v2p.models.tracin`).
        hidden_dim, hidden_layers: of each head's actor and critics.
        lr: Adam learning rate of the heads.
        batch: transitions of each training batch the heads train on (its first ``batch``;
            None: all of it). Fewer is cheaper and noisier.
        inputs: ``observation`` (flat observations, the default) or ``latent`` (the main
            encoder's detached latent; for pixels, where the heads cannot afford an encoder).
    """

    method: str = "counterfactual"
    every: int = 10
    objective: str = "actor"  # measured best of the gradient variants (docs/attribution.md)
    normalise: str = "raw"
    hidden_dim: int = 64
    hidden_layers: int = 2
    lr: float = 1e-3
    batch: int | None = None
    inputs: str = "observation"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"attribution.method must be one of {METHODS}, got {self.method!r}")
        check_int("attribution.every", self.every, ge=1)
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"attribution.objective must be one of {OBJECTIVES}, got {self.objective!r}"
            )
        if self.normalise not in NORMALISATIONS:
            raise ValueError(
                f"attribution.normalise must be one of {NORMALISATIONS}, got {self.normalise!r}"
            )
        check_int("attribution.hidden_dim", self.hidden_dim, ge=1)
        check_int("attribution.hidden_layers", self.hidden_layers, ge=1)
        check_scalar("attribution.lr", self.lr, gt=0)
        if self.batch is not None:
            check_int("attribution.batch", self.batch, ge=1)
        if self.inputs not in INPUTS:
            raise ValueError(f"attribution.inputs must be one of {INPUTS}, got {self.inputs!r}")

    @classmethod
    def of(
        cls, value: AttributionSettings | Mapping[str, Any] | None
    ) -> AttributionSettings | None:
        """Settings from a config value (a checkpoint's hyper-parameters hold a plain dict)."""
        if value is None or isinstance(value, AttributionSettings):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"attribution has unknown settings {sorted(unknown)}; expected some of "
                    f"{sorted(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        raise ValueError(f"attribution must be a mapping of settings or None, got {value!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CounterfactualHeads(nn.Module):
    """Leave-one-source-out SAC heads and the contributions they measure (module docstring).

    Args:
        num_sources: data sources the transitions' ``source`` ids index (at least 2).
        input_dim: size of what the heads read (the flat observation or the latent).
        action_low, action_high: the action box.
        settings: :class:`AttributionSettings`.
        gamma, tau, init_alpha, target_entropy: as the main SAC run's.
        seed: of the heads' own generator (initial weights and policy noise).
    """

    def __init__(
        self,
        num_sources: int,
        input_dim: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        settings: AttributionSettings,
        gamma: float,
        tau: float,
        init_alpha: float,
        target_entropy: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.num_sources = check_int("num_sources", num_sources, ge=2)
        self.settings = settings
        self.gamma, self.tau, self.target_entropy = gamma, tau, target_entropy
        heads = 1 + num_sources
        action_dim = action_low.numel()
        # include[h, k]: head h trains on source k's transitions.
        include = torch.ones(heads, num_sources)
        include[1:].fill_diagonal_(0.0)
        self.register_buffer("include", include, persistent=False)
        scale, bias = box_affine(action_low.float(), action_high.float())
        self.register_buffer("action_scale", scale, persistent=False)
        self.register_buffer("action_bias", bias, persistent=False)
        self._generator = torch.Generator().manual_seed(seed)
        width, layers = settings.hidden_dim, settings.hidden_layers
        self.actor = ensemble_mlp(heads, input_dim, 2 * action_dim, width, layers, self._generator)
        # Twin critics as 2H heads: [Q1 of every head; Q2 of every head], Q1 and Q2 drawn
        # apart (twins that start equal stay equal, and their minimum is no twin trick).
        self.critic = ensemble_mlp(
            2 * heads, input_dim + action_dim, 1, width, layers, self._generator, groups=2
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((heads,), math.log(init_alpha)))
        self.evaluations: list[AttributionEvaluation] = []

    @property
    def heads(self) -> int:
        return 1 + self.num_sources

    # ------------------------------------------------------------------ policy

    def _policy(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std (H, B, A) of every head's policy at inputs (B, D) or (H, B, D)."""
        if x.dim() == 2:
            x = x.expand(self.heads, -1, -1)
        mean, log_std = self.actor(x).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def _sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self._policy(x)
        # One draw for every head (common random numbers), from the heads' own CPU generator.
        noise = torch.randn(mean.shape[1:], generator=self._generator).to(mean.device)
        return squashed_gaussian(mean, log_std, noise, self.action_scale, self.action_bias)

    def _q(self, params: Mapping[str, torch.Tensor] | None, net: nn.Module, x, action):
        """Twin Q (2, H, B) of every head; ``params`` replaces the net's weights if given."""
        h = self.heads
        xa = torch.cat([x.expand(h, -1, -1) if x.dim() == 2 else x, action], dim=-1)
        xa = xa.repeat(2, 1, 1)  # (2H, B, D + A)
        q = net(xa) if params is None else functional_call(net, params, (xa,))
        return q.squeeze(-1).view(2, h, -1)

    @torch.no_grad()
    def act(self, x: torch.Tensor, head: int) -> torch.Tensor:
        """Head ``head``'s deterministic actions (B, A) at inputs (B, D)."""
        mean, _ = self._policy(x)
        return torch.tanh(mean[head]) * self.action_scale + self.action_bias

    # ---------------------------------------------------------------- training

    def losses(
        self,
        x: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        x_next: torch.Tensor,
        terminated: torch.Tensor,
        source: torch.Tensor,
    ) -> torch.Tensor:
        """SAC losses of every head on the transitions of the sources it includes.

        ``x``/``x_next`` (B, D) are the heads' inputs, ``reward`` (B,) the main run's
        (penalised, scaled) reward. Each head's losses are means over its own transitions.
        """
        mask = self.include[:, source]  # (H, B)
        count = mask.sum(1).clamp_min(1.0)  # (H,)
        alpha = self.log_alpha.exp().detach()[:, None]  # (H, 1)
        with torch.no_grad():
            next_action, next_log_prob = self._sample(x_next)
            q_next = self._q(None, self.critic_target, x_next, next_action).min(0).values
            soft_value = q_next - alpha * next_log_prob
            target = reward + self.gamma * (1.0 - terminated) * soft_value  # (H, B)
        q = self._q(None, self.critic, x, action.expand(self.heads, -1, -1))  # (2, H, B)
        critic = ((q - target).square().sum(0) * mask).sum(1) / count

        new_action, log_prob = self._sample(x)
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q_pi = self._q(frozen, self.critic, x, new_action).min(0).values
        actor = ((alpha * log_prob - q_pi) * mask).sum(1) / count
        entropy_gap = (log_prob.detach() + self.target_entropy) * mask
        alpha_loss = -(self.log_alpha * entropy_gap.sum(1) / count)
        total = (critic + actor + alpha_loss).sum()
        return total

    def sample_losses(
        self, s: ReplaySample, z: torch.Tensor, z_next: torch.Tensor, reward: torch.Tensor
    ) -> torch.Tensor:
        """The summed losses of every head on the first ``settings.batch`` transitions of a
        replay sample; ``z``/``z_next`` are the main encoder's detached latents of it and
        ``reward`` the main run's (penalised, scaled) reward."""
        n = self.settings.batch or reward.shape[0]
        if self.settings.inputs == "observation":
            x, x_next = s.obs[:n].float(), s.next_obs[:n].float()
        else:
            x, x_next = z[:n], z_next[:n]
        return self.losses(x, s.action[:n], reward[:n], x_next, s.terminated[:n], s.source[:n])

    @torch.no_grad()
    def soft_update_target(self) -> None:
        torch._foreach_lerp_(
            list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau
        )

    # -------------------------------------------------------------- evaluation

    def evaluate(
        self,
        run_episodes: Callable[[Callable[..., np.ndarray]], EvalBatch],
        encode: Callable[[np.ndarray], torch.Tensor],
        global_step: int,
    ) -> AttributionEvaluation:
        """Run every head's deterministic policy at every site and record the contributions.

        ``run_episodes(act)`` runs the platform's evaluation episodes with the policy ``act``
        (the data module's ``evaluate``); ``encode`` turns the envs' observations into the
        heads' inputs.
        """
        site_mpl = []
        env_steps = 0
        for head in range(self.heads):

            def act(obs: np.ndarray, deterministic: bool = True, head: int = head) -> np.ndarray:
                return self.act(encode(obs), head).cpu().numpy()

            batch = run_episodes(act)
            env_steps = batch.env_steps
            site_mpl.append(expected_site_mpl(batch, self.num_sources))
        contributions = [site_mpl[0][k] - site_mpl[1 + k][k] for k in range(self.num_sources)]
        evaluation = AttributionEvaluation(global_step, env_steps, site_mpl, contributions)
        self.evaluations.append(evaluation)
        return evaluation

    @property
    def contributions(self) -> list[float] | None:
        """Each source's contribution at its own sites at the latest evaluation (units/hr),
        unclipped; None before the first."""
        return None if not self.evaluations else list(self.evaluations[-1].contributions)

    # ------------------------------------------------------------ checkpointing

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "generator": self._generator.get_state(),
            "evaluations": [list(e) for e in self.evaluations],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self.evaluations = [AttributionEvaluation(*e) for e in state["evaluations"]]


def build_attribution(
    settings: AttributionSettings | None,
    source_names: Sequence[str] | None,
    observation_shape: Sequence[int],
    latent_dim: int,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
    attributed_blocks: Sequence[Sequence[torch.Tensor]],
    *,
    gamma: float,
    tau: float,
    init_alpha: float,
    target_entropy: float,
) -> CounterfactualHeads | GradientAttribution | None:
    """What measures each source's contribution in a SAC model over these sources (None
    without settings). ``attributed_blocks`` are the policy's parameters whose updates the
    gradient method attributes: the critic's (with the encoder), then the actor's.

    The heads' generator is seeded from ``torch.initial_seed()`` (what ``seed_everything``
    set), which draws nothing from the global RNG.
    """
    if settings is None:
        return None
    names = list(source_names or [PLATFORM])
    if len(names) < 2:
        raise ValueError(
            f"attribution measures each source's contribution, but the data has one source "
            f"{names}: give data.init_args.sources, or set attribution to null"
        )
    if settings.method == "gradient":
        return GradientAttribution(
            len(names),
            [flat_size(block) for block in attributed_blocks],
            settings.every,
            settings.objective,
            settings.normalise,
        )
    if settings.inputs == "observation":
        if len(observation_shape) != 1:
            raise ValueError(
                f"attribution.inputs=observation needs flat observations; these are shaped "
                f"{tuple(observation_shape)}: set attribution.inputs=latent"
            )
        input_dim = int(observation_shape[0])
    else:
        input_dim = latent_dim
    return CounterfactualHeads(
        len(names),
        input_dim,
        action_low,
        action_high,
        settings,
        gamma=gamma,
        tau=tau,
        init_alpha=init_alpha,
        target_entropy=target_entropy,
        seed=torch.initial_seed() % 2**63,
    )
