"""First-order gradient attribution (v2p/models/tracin.py): the per-source parts add up to the
first-order change of a site objective, they rank sources as exact leave-one-out does on a
toy, and the policy they sit beside trains exactly as without them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.models.test_attribution import fit_without_and_with
from v2p.models.attribution import AttributionSettings
from v2p.models.sac import SACModule
from v2p.models.tracin import (
    GradientAttribution,
    adam_step_scale,
    flat_size,
    flatten,
    per_source_gradients,
    site_objective_gradients,
)


def toy(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()  # exact moves
    with torch.no_grad():  # weights from the seeded generator, not the global one
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))

    def data(n):
        return torch.randn(n, 3, generator=g).double(), torch.randn(n, generator=g).double()

    (x, y), (test_x, test_y) = data(12), data(5)
    return model, x, y, torch.arange(12) % 3, test_x, test_y


def objective(model, x, y) -> torch.Tensor:
    """J: minus the mean squared error on held-out data."""
    return -(model(x).squeeze(-1) - y).square().mean()


def test_per_source_parts_add_up_to_the_batch_gradient():
    model, x, y, source, *_ = toy()
    params = list(model.parameters())
    per_sample = (model(x).squeeze(-1) - y).square()
    parts = per_source_gradients(per_sample, source, 4, params)  # source 3 has no samples
    whole = flatten(torch.autograd.grad(per_sample.mean(), params), params)
    assert parts.shape == (4, flat_size(params))
    assert torch.equal(parts[3], torch.zeros_like(parts[3]))
    torch.testing.assert_close(parts.sum(0), whole)


def test_one_adam_update_parts_add_up_to_the_first_order_change_of_j():
    """On Adam's first step the parts -lr * P * g_k add up to the actual move, and their dot
    products with grad J to J's change, to first order: checked against finite differences."""
    model, x, y, source, test_x, test_y = toy()
    params = list(model.parameters())
    lr = 1e-6  # small enough for the first-order terms to dominate
    optimizer = torch.optim.Adam(params, lr=lr)
    before = [p.detach().clone() for p in params]
    j_before = objective(model, test_x, test_y)
    grad_j = flatten(torch.autograd.grad(j_before, params), params)

    per_sample = (model(x).squeeze(-1) - y).square()
    gradients = per_source_gradients(per_sample, source, 3, params)
    optimizer.zero_grad()
    per_sample.mean().backward()
    optimizer.step()
    blocks = [flat_size(params[:2]), flat_size(params[2:])]  # "critic" and "actor" blocks
    attribution = GradientAttribution(3, blocks, every=1, objective="both").double()
    attribution.record_step(gradients, adam_step_scale(optimizer, params))

    moved = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(params, before, strict=True)])
    torch.testing.assert_close(attribution.step_raw.sum(0), moved, rtol=1e-6, atol=1e-12)
    parts = attribution.step_raw @ grad_j  # each source's first-order change of J
    with torch.no_grad():
        actual = float(objective(model, test_x, test_y) - j_before)
    assert parts.sum().item() == pytest.approx(actual, rel=1e-3)

    # Each part alone against a central finite difference of J along that source's move.
    for k in range(3):
        step = attribution.step_raw[k]
        values = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                offset = 0
                for p, b in zip(params, before, strict=True):
                    p.copy_(b + sign * step[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
                values.append(float(objective(model, test_x, test_y)))
        assert parts[k].item() == pytest.approx((values[0] - values[1]) / 2, rel=1e-3)


def train_linear(x, y, source, keep, steps: int, attribution: GradientAttribution | None, j):
    """Adam on a linear model over the sources in ``keep``; closes a window every 10 steps
    with J itself as the 'site MPL', so contributions come out in J units."""
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=0.05)
    mask = torch.isin(source, torch.tensor(keep))
    if attribution is not None:
        attribution.set_baseline([float(j(model).detach())])
    for step in range(steps):
        per_sample = (model(x[mask]).squeeze(-1) - y[mask]).square()
        gradients = per_source_gradients(per_sample, source[mask], 3, params)
        optimizer.zero_grad()
        per_sample.mean().backward()
        optimizer.step()
        if attribution is None:
            continue
        attribution.record_step(gradients, adam_step_scale(optimizer, params))
        if (step + 1) % 10 == 0:
            value = j(model)
            grad = flatten(torch.autograd.grad(value, params), params)
            attribution.close_window(
                grad[None].expand(3, -1),
                adam_step_scale(optimizer, params),
                [float(value)] * 3,
                step,
                step,
            )
    return float(j(model))


def corrupted_regression():
    """Source 0: 40 clean samples; 1: 8 clean ones; 2: 20 with negated labels. J: minus the
    mean squared error on held-out clean data."""
    g = torch.Generator().manual_seed(3)
    w = torch.tensor([1.0, -2.0, 0.5])
    counts = (40, 8, 20)
    x = torch.randn(sum(counts), 3, generator=g)
    source = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    y = x @ w + 0.1 * torch.randn(sum(counts), generator=g)
    y = torch.where(source == 2, -y, y)
    test_x = torch.randn(50, 3, generator=g)
    test_y = test_x @ w
    return x, y, source, lambda model: objective(model, test_x, test_y)


def attributed_and_leave_one_out(normalise: str) -> tuple[list[float], list[float]]:
    x, y, source, j = corrupted_regression()
    attribution = GradientAttribution(3, [4, 0], every=1, objective="both", normalise=normalise)
    with_all = train_linear(x, y, source, [0, 1, 2], 200, attribution, j)
    loo = [
        with_all - train_linear(x, y, source, [s for s in range(3) if s != k], 200, None, j)
        for k in range(3)
    ]
    assert attribution.variants[f"both/{normalise}"] == attribution.contributions
    return attribution.contributions, loo


def test_raw_attribution_ranks_sources_as_exact_leave_one_out_on_a_corrupted_regression():
    attributed, loo = attributed_and_leave_one_out("raw")
    assert loo[2] < 0 and attributed[2] < 0  # the corrupted source did harm, and is named
    assert sorted(range(3), key=loo.__getitem__) == sorted(range(3), key=attributed.__getitem__)


def test_cosine_attribution_names_the_corrupted_source_but_not_how_much_data_helped():
    """The cosine variant counts each source's direction per update, not its size: it
    credits 8 clean samples like 40 (leave-one-out: 0.7 against 8.4 here). What it does
    keep is the sign: the corrupted source comes out harmful and last."""
    attributed, loo = attributed_and_leave_one_out("cosine")
    assert loo[0] > loo[1] > 0 > loo[2]
    assert attributed[2] < 0 < min(attributed[:2])
    assert attributed[1] == pytest.approx(attributed[0], rel=0.1)


def test_site_objective_gradients_are_minus_each_sites_mean_loss_gradient():
    model, x, y, source, *_ = toy()
    params = list(model.parameters())
    per_sample = (model(x).squeeze(-1) - y).square()
    site = (source == 2).long()  # two sites, 4 and 8 transitions
    gradients = site_objective_gradients(per_sample, site, 3, params)
    for j in range(2):
        loss = -per_sample[site == j].mean()
        expected = flatten(torch.autograd.grad(loss, params, retain_graph=True), params)
        torch.testing.assert_close(gradients[j], expected)
    assert torch.equal(gradients[2], torch.zeros_like(gradients[2]))


def test_close_window_splits_each_sites_mpl_change_by_the_parts_and_keeps_the_sign():
    attribution = GradientAttribution(2, [2, 0], every=1, objective="both", normalise="raw")
    attribution.set_baseline([10.0, 20.0])
    attribution.step_raw.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    # Site 0's objective moves with parameter 0 (source 0's part, +1), site 1's with both:
    # source 0 pushes it up by 3, source 1 down by 1.
    grads = torch.tensor([[2.0, 0.0], [3.0, 1.0]])
    e = attribution.close_window(grads, torch.ones(2), [14.0, 28.0], 50, 500)
    assert e.contributions == pytest.approx([4.0, -2.0])  # site 0: all of +4; site 1: -1/4 of +8
    assert e.site_mpl[0] == [14.0, 28.0]
    assert e.site_mpl[1] == pytest.approx([10.0, 22.0])  # without source 0's parts
    assert e.site_mpl[2] == pytest.approx([14.0, 30.0])
    assert torch.equal(attribution.step_raw, torch.zeros(2, 2))  # a new window starts
    with pytest.raises(RuntimeError, match="before set_baseline"):
        GradientAttribution(2, [2, 0], 1).close_window(grads, torch.ones(2), [1, 1], 0, 0)


def test_objective_variants_attribute_the_critic_and_the_actor_blocks_apart():
    """Source 0 moved only the critic block, source 1 only the actor block: the critic
    variant credits source 0 alone, the actor variant source 1 alone, both splits the change."""
    attribution = GradientAttribution(2, [1, 1], every=1, objective="critic", normalise="raw")
    attribution.set_baseline([10.0, 10.0])
    attribution.step_raw.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    attribution.step_cosine.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    grads = torch.ones(2, 2)  # each site's objective rises with both parameters
    e = attribution.close_window(grads, torch.ones(2), [14.0, 14.0], 1, 1)
    v = attribution.variants
    assert v["critic/raw"] == pytest.approx([4.0, 0.0]) == e.contributions
    assert v["actor/raw"] == pytest.approx([0.0, 4.0])
    assert v["both/raw"] == pytest.approx([1.0, 3.0])  # in proportion 1 : 3
    assert v["both/cosine"] == pytest.approx([2.0, 2.0])  # each block's direction votes alike
    assert set(v) == {f"{o}/{n}" for o in ("both", "critic", "actor") for n in ("raw", "cosine")}


def test_gradient_settings_are_checked_by_name():
    with pytest.raises(ValueError, match=r"attribution\.method"):
        AttributionSettings(method="tracin")
    with pytest.raises(ValueError, match=r"attribution\.every"):
        AttributionSettings(method="gradient", every=0)
    with pytest.raises(ValueError, match=r"attribution\.objective"):
        AttributionSettings(method="gradient", objective="value")
    with pytest.raises(ValueError, match=r"attribution\.normalise"):
        AttributionSettings(method="gradient", normalise="unit")


GRADIENT = {"method": "gradient", "every": 2}


def test_sac_with_gradient_attribution_trains_the_policy_exactly_as_without(tmp_path):
    plain, attributed = fit_without_and_with(tmp_path, GRADIENT)
    for net in ("actor", "critic"):
        for name, tensor in getattr(plain, net).state_dict().items():
            assert torch.equal(tensor, getattr(attributed, net).state_dict()[name]), name
    evaluations = attributed.attribution.evaluations
    assert [e.global_step for e in evaluations] == [20, 40]  # updates_per_epoch 20
    assert all(math.isfinite(c) for e in evaluations for c in e.contributions)
    assert any(c != 0.0 for c in evaluations[-1].contributions)
    variants = attributed.attribution.variants
    assert variants["actor/raw"] == evaluations[-1].contributions  # the default variant
    assert variants["both/raw"] != variants["both/cosine"]
    assert variants["critic/raw"] != variants["actor/raw"]
    # No optimiser group of its own: the gradient method trains nothing. (Resume:
    # tests/models/test_attribution.py runs both methods.)
    assert len(attributed.optimizers().param_groups) == len(plain.optimizers().param_groups)


def test_gradient_attribution_refuses_a_replay_of_encoder_features():
    """Its site objectives are SAC losses on the evaluation envs' observations, which a replay
    of cached frame features does not hold."""
    model = SACModule(
        (2, 3, 32, 32),
        [0.0, 0.0],
        [1.0, 1.0],
        encoder_arch="simple3dcnn",
        freeze_encoder=True,
        cache_frame_features=True,
        source_names=["platform", "customer"],
        attribution=GRADIENT,
    )
    with pytest.raises(ValueError, match="stores encoder features"):
        model._start_gradient_attribution()


def test_gradient_attribution_refuses_a_compiled_update():
    with pytest.raises(ValueError, match="needs compile_update=false"):
        SACModule(
            (7,),
            [0.0, 0.0],
            [1.0, 1.0],
            compile_update=True,
            source_names=["platform", "customer"],
            attribution=GRADIENT,
        )


def test_gradient_attribution_refuses_an_averaged_policy():
    with pytest.raises(ValueError, match="needs policy_average_decay=None"):
        SACModule(
            (7,),
            [0.0, 0.0],
            [1.0, 1.0],
            policy_average_decay=0.99,
            source_names=["platform", "customer"],
            attribution=GRADIENT,
        )
