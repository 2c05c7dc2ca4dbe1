"""Each source's contribution at each site by first-order gradient attribution (TracIn,
ECONOMICS.md 7.1), the ``gradient`` method of ``SACModule(attribution=...)``.

Over a window of updates (from one evaluation to the next), source ``k``'s first-order
contribution to a site objective ``J_j`` is

    D[j, k] = sum_t  <grad J_j, delta_k(t)>,    delta_k(t) = -eta_t * P_t * grad L_k(theta_t)

where ``L_k`` is source ``k``'s part of the SAC batch loss (the batch mean restricted to its
transitions, so the parts add up to the loss), ``P_t`` Adam's preconditioner
``1 / (sqrt(v_hat_t) + eps)`` at that update and ``eta_t`` its learning rate: ``delta_k`` is
``k``'s part of the step, and summed over the sources ``D[j, :]`` is the first-order change of
``J_j`` under the preconditioned step. (Adam's momentum spreads a gradient over later steps;
like TracIn with Adam, this credits it at the step it was computed.) Practical choices:

- **Sampled updates.** The per-source gradients are taken every ``every``-th update and weighted
  by ``every``, an unbiased sample of the sum (TracIn-CP sums over checkpoints likewise).
- **One gradient of J per window.** The step parts are summed over the window and dotted with
  ``grad J_j`` at the window's end (TracIn-CP with a checkpoint per evaluation), so ``J`` is
  differentiated once per evaluation, not once per update.
- **J_j = minus the SAC loss on the site's own evaluation transitions**, the critic's TD error
  and the actor's objective on what the platform itself observed at site ``j`` (its evaluation
  runs, with the rewards and error rates the platform measured), never on anything a source
  logged: data with corrupted rewards moves the critic away from the site's real returns,
  which shows as a negative part of the TD term. (How far each term ranks sources as
  retraining does is measured in ``bench/attribution.py``; docs/attribution.md.)
- **Which terms of J.** The critic's parameters (with the encoder they train) see only the TD
  term of ``J_j`` and the actor's only the actor term, so the dot products over each block are
  the contributions to the critic's fit of the site (``objective: critic``) and to the actor's
  objective there (``actor``); ``both`` is their sum, the whole first-order change of ``J_j``.
- **Raw or cosine.** Raw dot products are dominated by the sources with the largest gradients
  (corrupted data has huge ones); ``normalise: cosine`` divides each step part by its norm and
  ``grad J_j`` by its own, block by block, in the preconditioner's metric, so each sampled
  update of each source votes with its direction only.
- Every combination (:data:`VARIANTS`) is accumulated; the settings pick the one credited, and
  ``variants`` holds all of them for comparison (``bench/attribution.py``).

From J-units to the ledger's units: at each evaluation the policy's expected MPL at every site
is measured on the platform's evaluation runs, and the window's change of it at site ``j`` is
split among the sources in proportion to ``D[j, k]`` (over the sum of ``|D[j, :]|``, so the
parts never exceed the change). Source ``k``'s contribution at site ``j`` is the sum of its
parts over the windows so far [units/hr]; what the ledger credits is its value at ``k``'s own
sites (:class:`~v2p.contracts.AttributionEvaluation`, whose ``site_mpl[1 + k]`` is the policy's
MPL less ``k``'s contributions: the first-order MPL without ``k``'s data).

Nothing here draws from a random generator the training uses, so the policy trains draw for
draw as without attribution (``tests/models/test_tracin.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from v2p.contracts import AttributionEvaluation, EvalBatch, EvalTransitions, ReplaySample
from v2p.models.evaluation import expected_site_mpl

NORMALISATIONS = ("raw", "cosine")
OBJECTIVES = ("both", "critic", "actor")  # which terms of the site objective are attributed
BLOCKS = ("critic", "actor")  # the attributed parameters: encoder + critic, then the actor
VARIANTS = tuple(f"{o}/{n}" for o in OBJECTIVES for n in NORMALISATIONS)


def per_source_gradients(
    per_sample_loss: torch.Tensor,
    source: torch.Tensor,
    num_sources: int,
    params: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Each source's gradient of its part of the batch mean of ``per_sample_loss`` (B,), the
    parameters flattened and concatenated: (S, N), zero rows for sources not in the batch.

    The parts add up: the rows sum to the gradient of ``per_sample_loss.mean()``. The graph is
    kept for the update's own backward.
    """
    batch = per_sample_loss.shape[0]
    rows = []
    for k in range(num_sources):
        mask = source == k
        if not bool(mask.any()):
            rows.append(per_sample_loss.new_zeros(flat_size(params)))
            continue
        part = per_sample_loss[mask].sum() / batch
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        rows.append(flatten(grads, params))
    return torch.stack(rows)


def flat_size(params: Sequence[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


def flatten(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradients (None: no dependence) as one flat vector in ``params`` order."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


@torch.no_grad()
def adam_step_scale(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``eta * P`` of an Adam optimiser's latest step, flat over ``params`` (N,).

    Adam moves ``p`` by ``-lr * m_hat / (sqrt(v_hat) + eps)``; for a gradient ``g`` of the
    step, ``-lr * g / (sqrt(v_hat) + eps)`` is its preconditioned part. Read after
    ``optimizer.step()``, when ``v_hat`` includes the step's own gradient (on the first step the
    parts add up to the actual move exactly). Parameters without state yet move by nothing.
    """
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    scales = []
    for p in params:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            scales.append(torch.zeros(p.numel(), device=p.device))
            continue
        group = group_of[id(p)]
        beta2 = group["betas"][1]
        step = float(state["step"])
        v_hat = state["exp_avg_sq"] / (1.0 - beta2**step)
        scales.append((group["lr"] / (v_hat.sqrt() + group["eps"])).reshape(-1))
    return torch.cat(scales)


class GradientAttribution(nn.Module):
    """Accumulates each source's part of the policy's steps and turns it into contributions at
    the sites at every evaluation (module docstring).

    The attributed parameters come in :data:`BLOCKS`: the critic's (with the encoder it trains)
    and the actor's. The site objective's gradient on the critic block is the TD term's and on
    the actor block the actor term's (the actor reads a detached critic), so the dot products
    over one block are the contributions to that term alone: the ``objective`` variants
    ``critic``, ``actor`` and ``both`` (their sum).

    Args:
        num_sources: sources the transitions' ``source`` ids index (at least 2).
        block_sizes: how many of the flat parameters each of :data:`BLOCKS` has, in order.
        every: take the per-source gradients every ``every``-th update (weighted by it).
        objective: which of :data:`OBJECTIVES` is credited.
        normalise: which of :data:`NORMALISATIONS` is credited.
    """

    def __init__(
        self,
        num_sources: int,
        block_sizes: Sequence[int],
        every: int,
        objective: str = "actor",
        normalise: str = "raw",
    ) -> None:
        super().__init__()
        if len(block_sizes) != len(BLOCKS):
            raise ValueError(f"block_sizes must give the sizes of {BLOCKS}, got {block_sizes}")
        self.num_sources, self.every = num_sources, every
        self.credited = VARIANTS.index(f"{objective}/{normalise}")
        bounds = np.cumsum([0, *block_sizes]).tolist()
        self.blocks = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        # Each source's summed step parts of the current window, raw and normalised per block.
        self.register_buffer("step_raw", torch.zeros(num_sources, bounds[-1]))
        self.register_buffer("step_cosine", torch.zeros(num_sources, bounds[-1]))
        # The policy's expected MPL at each site at the last evaluation (NaN: not measured).
        self.register_buffer("site_mpl_before", torch.full((num_sources,), math.nan))
        # contribution[v, k, j]: source k's contribution at site j so far under VARIANTS[v].
        self.register_buffer("contribution", torch.zeros(len(VARIANTS), num_sources, num_sources))
        self.evaluations: list[AttributionEvaluation] = []

    def due(self, global_step: int) -> bool:
        """Whether the update at ``global_step`` is one of the sampled ones."""
        return global_step % self.every == 0

    @torch.no_grad()
    def record_step(self, gradients: torch.Tensor, step_scale: torch.Tensor) -> None:
        """Add one sampled update: ``gradients`` (S, N) from :func:`per_source_gradients`,
        ``step_scale`` (N,) from :func:`adam_step_scale` of the same update."""
        parts = -self.every * step_scale * gradients  # (S, N): each source's part of the step
        self.step_raw += parts
        for block in self.blocks:
            norms = _metric_norm(gradients[:, block], step_scale[block])  # (S,)
            self.step_cosine[:, block] += parts[:, block] / norms[:, None]

    @property
    def has_baseline(self) -> bool:
        """Whether the policy's site MPL was measured before the current window."""
        return not bool(torch.isnan(self.site_mpl_before).all())

    @torch.no_grad()
    def set_baseline(self, site_mpl: Sequence[float], reduce: Any = None) -> None:
        """The policy's expected MPL at every site before training (the first window's
        start); ``reduce`` as for :meth:`close_window`."""
        now = torch.tensor(
            site_mpl, dtype=self.site_mpl_before.dtype, device=self.site_mpl_before.device
        )
        self.site_mpl_before.copy_(now if reduce is None else reduce(now))

    @torch.no_grad()
    def close_window(
        self,
        site_objective_gradients: torch.Tensor,
        step_scale: torch.Tensor,
        site_mpl: Sequence[float],
        global_step: int,
        env_steps: int,
        reduce: Any = None,
    ) -> AttributionEvaluation:
        """End the window at an evaluation and record the contributions it adds.

        ``site_objective_gradients`` (S, N): the gradient of each site's objective ``J_j``
        (zero rows for sites without evaluation transitions); ``step_scale`` (N,): the current
        ``eta * P``; ``site_mpl`` (S,): the policy's expected MPL at each site now. ``reduce``
        averages a tensor over DDP ranks (None: one process). Needs :meth:`set_baseline` first.
        """
        if not self.has_baseline:
            raise RuntimeError("GradientAttribution.close_window before set_baseline")
        grads = site_objective_gradients
        raw, cosine = [], []  # per block: (S sites, S sources)
        for block in self.blocks:
            raw.append(grads[:, block] @ self.step_raw[:, block].T)
            norms = _metric_norm(grads[:, block], step_scale[block])
            cosine.append((grads[:, block] @ self.step_cosine[:, block].T) / norms[:, None])
        per_objective = {"both": (0, 1), "critic": (0,), "actor": (1,)}
        by_normalisation = {"raw": raw, "cosine": cosine}
        dots = torch.stack(
            [
                sum(by_normalisation[n][b] for b in per_objective[o])
                for o, n in (variant.split("/") for variant in VARIANTS)
            ]
        )  # (V, sites, sources)
        now = torch.tensor(site_mpl, dtype=dots.dtype, device=dots.device)
        if reduce is not None:
            dots, now = reduce(dots), reduce(now)
        change = torch.nan_to_num(now - self.site_mpl_before)  # NaN: a site without shifts
        self.site_mpl_before.copy_(now)
        self.step_raw.zero_()
        self.step_cosine.zero_()
        share = dots / dots.abs().sum(2, keepdim=True).clamp_min(1e-30)  # (V, sites, sources)
        self.contribution += (change[None, :, None] * share).transpose(1, 2)
        chosen = self.contribution[self.credited]  # (sources, sites)
        site_rows = [now.tolist()] + [(now - chosen[k]).tolist() for k in range(self.num_sources)]
        # site_rows[1 + k]: the first-order MPL at every site without source k's data.
        evaluation = AttributionEvaluation(
            global_step, env_steps, site_rows, torch.diagonal(chosen).tolist()
        )
        self.evaluations.append(evaluation)
        return evaluation

    def evaluate(
        self,
        run_episodes: Callable[..., EvalBatch],
        per_transition_losses: Callable[[ReplaySample], torch.Tensor],
        params: Sequence[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        global_step: int,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> AttributionEvaluation:
        """Evaluate the policy at every site and close the window on what was observed there.

        ``run_episodes(observe=...)`` runs the platform's evaluation episodes with the policy
        (the data module's ``evaluate``); ``per_transition_losses(sample)`` is the SAC loss of
        each transition (B,), whose site means are the objectives differentiated.
        """
        steps: list[EvalTransitions] = []
        batch = run_episodes(observe=steps.append)
        device = params[0].device
        sample = ReplaySample(
            *(
                torch.as_tensor(np.concatenate([getattr(t, f) for t in steps]), device=device)
                for f in ("obs", "action", "reward", "err", "next_obs", "terminated", "source")
            )
        )
        # Validation runs under inference mode; the site objectives need autograd, and their
        # policy noise must not move the training's random streams.
        devices = [device] if device.type == "cuda" else []
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices):
            torch.manual_seed(global_step)
            losses = per_transition_losses(sample)
            gradients = site_objective_gradients(losses, sample.source, self.num_sources, params)
        return self.close_window(
            gradients.detach(),
            adam_step_scale(optimizer, params),
            expected_site_mpl(batch, self.num_sources),
            global_step,
            batch.env_steps,
            reduce,
        )

    @property
    def contributions(self) -> list[float] | None:
        """Each source's contribution at its own sites so far (units/hr), unclipped; None
        before the first evaluation."""
        return None if not self.evaluations else list(self.evaluations[-1].contributions)

    @property
    def variants(self) -> dict[str, list[float]]:
        """Each source's contribution at its own sites under every one of :data:`VARIANTS`."""
        return {
            name: torch.diagonal(self.contribution[v]).tolist() for v, name in enumerate(VARIANTS)
        }

    def get_extra_state(self) -> dict[str, Any]:
        return {"evaluations": [list(e) for e in self.evaluations]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.evaluations = [AttributionEvaluation(*e) for e in state["evaluations"]]


def _metric_norm(vectors: torch.Tensor, step_scale: torch.Tensor) -> torch.Tensor:
    """Row norms in the preconditioner's metric, |g|_P = sqrt(sum(P g^2)); tiny where a row is
    zero, so that dividing by it leaves the row at 0."""
    return (step_scale * vectors.square()).sum(1).sqrt().clamp_min(1e-30)


def site_objective_gradients(
    per_sample_loss: torch.Tensor,
    site: torch.Tensor,
    num_sites: int,
    params: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The gradient (S, N) of each site's objective ``J_j = -(mean loss over site j's
    transitions)``, from per-transition losses (n,) and the transitions' site ids (n,); a zero
    row for a site without transitions."""
    parts = per_source_gradients(per_sample_loss, site, num_sites, params)  # sum_j / n
    counts = torch.bincount(site, minlength=num_sites).clamp_min(1).to(parts)
    return -parts * (site.shape[0] / counts)[:, None]
