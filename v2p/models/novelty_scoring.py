"""SAC's novelty model: built, trained online on the replay latents, and scoring every batch.

The novelty of a transition (ECONOMICS.md section 7.2) is its latent's denoising error under a
:class:`~v2p.models.novelty.LatentDiffusionNovelty`, either a trained checkpoint (frozen) or a
model trained online, one more loss in SAC's backward pass. The scores go to the
EconomicsCallback's price quote and, with novelty-prioritised replay, back to the replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

from v2p.checkpoint_file import read_checkpoint
from v2p.models.novelty import LatentDiffusionNovelty
from v2p.validation import check_int


class NoveltyScoring:
    """How SAC trains and reads its novelty model.

    Args:
        model: the novelty model, owned (and registered) by the LightningModule.
        online: train it on every update's latents (else it is frozen).
        fit_sources: names of the data sources whose transitions train the online model (its
            denoiser, normaliser and statistics); None: every source. With ``[platform]``
            novelty measures how far data lies from the platform's own, which is what the
            marginal attribution credits a customer for: a model fitted on every source learns
            the customers' data too, and then finds it familiar.
        batch: score only the first ``batch`` transitions of each (uniformly sampled) batch;
            None scores all of them. Scoring costs up to 10 denoiser passes per transition.
        calibration_updates: the online model's z-scoring statistics follow its errors for
            this many updates, then stay fixed: scores then fall as the model learns the data
            it keeps seeing and stay high for what it rarely sees, so novelty can tell early,
            informative training data from late, redundant data (statistics that kept
            following would z-score every batch to about 0).
    """

    def __init__(
        self,
        model: LatentDiffusionNovelty,
        online: bool,
        fit_sources: Sequence[str] | None = None,
        batch: int | None = None,
        calibration_updates: int = 1000,
    ) -> None:
        check_novelty_settings(online, fit_sources, batch, calibration_updates)
        self.model = model
        self.online = online
        self.fit_sources = None if fit_sources is None else list(fit_sources)
        self.batch = batch
        self.calibration_updates = calibration_updates
        self._fit_ids: torch.Tensor | None = None  # source ids of fit_sources, once bound

    def bind(self, trainer: L.Trainer, source_names: Sequence[str], device: torch.device) -> None:
        """Resolve ``fit_sources`` against the data module's sources; share the trainer.

        The nested model sums its normaliser statistics over ranks through the trainer's
        strategy, so every rank normalises latents alike.
        """
        if self.fit_sources is not None:
            names = list(source_names)
            unknown = [name for name in self.fit_sources if name not in names]
            if unknown:
                raise ValueError(
                    f"novelty_fit_sources {unknown} are not data sources; the sources are {names}"
                )
            self._fit_ids = torch.tensor(
                [names.index(name) for name in self.fit_sources], device=device
            )
        self.model.trainer = trainer

    def scored(self, z: torch.Tensor) -> torch.Tensor:
        """The part of a batch's latents (B, D) that is scored: (n, D)."""
        return z[: self.batch]

    def online_loss(
        self, z: torch.Tensor, source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The online model's loss on the scored latents (n, D) of sources (n,) (its
        normaliser updated first), and the fit weights it used (None: all)."""
        fit = None if self._fit_ids is None else torch.isin(source, self._fit_ids).float()
        self.model.update_normaliser(z, fit)
        return self.model.online_loss(z, weight=fit), fit

    def after_update(
        self, z: torch.Tensor, fit: torch.Tensor | None, global_step: int
    ) -> torch.Tensor:
        """Calibrate (online, early in training), then score the latents (n, D): (n,)."""
        if self.online and global_step < self.calibration_updates:
            self.model.update_statistics(z, fit)
        return self.model.score(z)


def check_novelty_settings(
    online: bool,
    fit_sources: Sequence[str] | None,
    batch: int | None,
    calibration_updates: int,
) -> None:
    """Refuse settings :class:`NoveltyScoring` cannot honour, by their SACModule names."""
    if fit_sources is not None and not online:
        raise ValueError(
            f"novelty_fit_sources={list(fit_sources)!r} chooses what the online novelty "
            "model trains on; set novelty_online=true too"
        )
    if batch is not None:
        check_int("novelty_batch", batch, ge=2)
    check_int("novelty_calibration_updates", calibration_updates, ge=1)


@contextlib.contextmanager
def _own_hyperparameters() -> Iterator[None]:
    """Let a LightningModule built inside another's ``__init__`` record its own hparams.

    LightningCLI instantiates the model inside a context that hands the model's config to
    every ``save_hyperparameters()`` call made meanwhile (``_given_hyperparameters`` in
    ``lightning.pytorch.core.mixins.hparams_mixin``), a nested module's included: the novelty
    model would otherwise get SAC's hyper-parameters instead of its own.
    """
    token = _given_hyperparameters.set(None)
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


def build_novelty_model(
    latent_dim: int,
    novelty_ckpt: str | None,
    novelty_online: bool,
    hidden_dim: int = 256,
    inputs: str = "observation",
    action_dim: int | None = None,
) -> LatentDiffusionNovelty | None:
    """The novelty model SAC scores its batches with: loaded and frozen, fresh, or none.

    ``latent_dim`` is the size of what it scores (for ``inputs: transition``, a transition's
    features of ``action_dim``-D actions)."""
    if novelty_ckpt is not None and novelty_online:
        raise ValueError(
            f"novelty_ckpt={novelty_ckpt!r} and novelty_online=true are exclusive: score with a "
            "trained model, or train one online"
        )
    if novelty_online:
        with _own_hyperparameters():
            return LatentDiffusionNovelty(
                latent_dim=latent_dim, hidden_dim=hidden_dim, inputs=inputs, action_dim=action_dim
            )
    if novelty_ckpt is None:
        return None
    model = load_novelty_checkpoint(novelty_ckpt)
    if model.hparams.get("inputs", "observation") != inputs:
        raise ValueError(
            f"novelty_ckpt {novelty_ckpt!r} scores {model.hparams.get('inputs', 'observation')}s "
            f"but novelty_inputs is {inputs!r}: train the novelty model on the same inputs"
        )
    if model.latent_dim != latent_dim:
        raise ValueError(
            f"novelty_ckpt {novelty_ckpt!r} models inputs of size {model.latent_dim}, but this "
            f"model scores inputs of size {latent_dim} (novelty_inputs: observation scores a "
            "latent of latent_dim, transition 2 x latent_dim + action_dim + 2)"
        )
    if not model._calibrated:
        raise ValueError(
            f"novelty_ckpt {novelty_ckpt!r} has no calibration statistics: train it with a "
            "validation set (python cli.py fit --config configs/novelty.yaml) so it can score"
        )
    return model.requires_grad_(False)


def load_novelty_checkpoint(path: str) -> LatentDiffusionNovelty:
    """The denoiser, normaliser and calibration of a novelty checkpoint, without its encoder.

    SAC has its own encoder, so the novelty model's copy (and the file it was read from) is
    not needed: the model is rebuilt from its hyper-parameters with ``latent_dim`` only.
    """
    checkpoint = read_checkpoint(path, "novelty checkpoint")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    state = checkpoint["state_dict"]
    if "score_timesteps" not in hparams or not any(k.startswith("denoiser.") for k in state):
        raise ValueError(f"{path!r} is not a LatentDiffusionNovelty checkpoint")
    latent_dim = int(state["z_mean"].shape[0])
    if hparams.get("inputs") == "transition" and not any(
        k.startswith("outcome_test.") for k in state
    ):
        raise ValueError(
            f"{path!r} is a transition novelty checkpoint from before the outcome test "
            "(2026-12-02): train it again (python cli.py fit --config "
            "configs/novelty_transitions.yaml)"
        )
    hparams.update(latent_dim=latent_dim, encoder_ckpt=None, observation_shape=None)
    with _own_hyperparameters():
        model = LatentDiffusionNovelty(**hparams)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("encoder.")})
    return model


__all__ = ["NoveltyScoring", "build_novelty_model", "load_novelty_checkpoint"]
