"""Pricing batches by predicted ΔMPL per source, and the ledger columns it fills."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from tests.models.conftest import make_run
from v2p.callbacks import EconomicsCallback
from v2p.callbacks.pricing import DataPricer
from v2p.data.sources import DataSource
from v2p.economics import contribution_shares


def trained_pricer(w0: float = 0.2, w1: float = 0.5, **kwargs) -> DataPricer:
    """A pricer whose estimator has learned ΔMPL per batch = w0 + w1 * novelty."""
    pricer = DataPricer(3, min_samples=5, **kwargs)
    for x in (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0):
        pricer.estimator.update([x], w0 + w1 * x)
    return pricer


def test_proportional_attribution_sums_to_the_batch_total():
    pricer = trained_pricer(attribution="proportional")
    novelty = torch.tensor([0.1, 2.0, -0.5, 1.5, 0.3, 0.0])
    source = torch.tensor([0, 1, 1, 2, 0, 2])
    value = pricer.price_batch(novelty, source)
    w0, w1 = pricer._weights()
    assert w0 == pytest.approx(0.2, abs=0.05) and w1 == pytest.approx(0.5, abs=0.05)
    # The batch's prediction is the estimator's at the batch's mean novelty ...
    assert value.delta_mpl.item() == pytest.approx(w0 + w1 * novelty.mean().item(), rel=1e-5)
    # ... and the sources' parts add up to it exactly, each from its own transitions.
    assert value.per_source.sum().item() == pytest.approx(value.delta_mpl.item(), rel=1e-6)
    own = [(w0 + w1 * novelty[source == k]).sum().item() / 6 for k in range(3)]
    torch.testing.assert_close(value.per_source, torch.tensor(own), rtol=1e-5, atol=1e-6)


def test_marginal_attribution_credits_customers_only_beyond_the_platforms_data():
    pricer = trained_pricer()  # marginal by default; source 0 is the platform
    # Source 1 duplicates the platform's data (same novelty); source 2 is more novel.
    novelty = torch.tensor([0.5, 1.5, 0.5, 1.5, 3.0, 4.0])
    source = torch.tensor([0, 0, 1, 1, 2, 2])
    value = pricer.price_batch(novelty, source)
    w0, w1 = pricer._weights()
    assert value.delta_mpl.item() == pytest.approx(w0 + w1 * novelty.mean().item(), rel=1e-5)
    assert value.per_source.sum().item() == pytest.approx(value.delta_mpl.item(), rel=1e-6)
    reference = 1.0  # the platform transitions' mean novelty
    assert value.per_source[1].item() == pytest.approx(0.0, abs=1e-6)
    expected = w1 * ((3.0 - reference) + (4.0 - reference)) / 6
    assert value.per_source[2].item() == pytest.approx(expected, rel=1e-5)
    # Under the proportional split the duplicate would earn as much as the platform's own data.
    proportional = trained_pricer(attribution="proportional").price_batch(novelty, source)
    assert proportional.per_source[1].item() == pytest.approx(
        proportional.per_source[0].item(), rel=1e-6
    )
    assert proportional.per_source[1].item() > 0.1


def test_marginal_attribution_of_a_batch_without_platform_data_is_proportional():
    novelty, source = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([1, 2, 2])
    marginal = trained_pricer().price_batch(novelty, source)
    proportional = trained_pricer(attribution="proportional").price_batch(novelty, source)
    torch.testing.assert_close(marginal.per_source, proportional.per_source)
    with pytest.raises(ValueError, match="attribution must be one of"):
        DataPricer(3, attribution="shapley")
    with pytest.raises(ValueError, match=r"platform_ids \[3\]"):
        DataPricer(3, platform_ids=[3])


def test_nothing_is_predicted_or_priced_before_the_estimator_has_min_samples():
    pricer = DataPricer(2, min_samples=10)
    value = pricer.price_batch(torch.tensor([5.0, 1.0]), torch.tensor([0, 1]))
    assert value.delta_mpl.item() == 0.0 and value.per_source.abs().sum().item() == 0.0
    window = pricer.close_window()
    assert window.kappa == 0.0 and window.delta_mpl == [0.0, 0.0]
    assert pricer.shift_price(0.0, 0.6, window.kappa) == 0.0


def test_window_closes_with_source_novelty_and_the_estimator_learns_per_batch():
    pricer = DataPricer(3, min_samples=0)
    pricer.price_batch(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    pricer.price_batch(torch.tensor([2.0, 2.0]), torch.tensor([0, 0]))
    window = pricer.close_window()
    assert window.batches == 2 and window.mean_novelty == pytest.approx(2.0)
    assert window.novelty[0] == pytest.approx(5.0 / 3) and window.novelty[1] == 3.0
    assert math.isnan(window.novelty[2])  # no transition of source 2 was trained on
    assert pricer.close_window() is None  # a new, empty window
    pricer.learn(window, realised_delta_mpl=0.8)
    assert pricer.estimator.n_seen == 1
    # One sample at feature 2.0 with target 0.8 / 2 batches; the ridge prior shrinks toward 0.
    assert 0.0 < pricer.estimator.predict([2.0]) < 0.4


def test_pricer_state_round_trips_mid_window():
    pricer = trained_pricer()
    pricer.price_batch(torch.tensor([0.5, 1.0]), torch.tensor([0, 2]))
    restored = DataPricer(3, min_samples=5)
    restored.load_state_dict(pricer.state_dict())
    a = pricer.price_batch(torch.tensor([0.7]), torch.tensor([1]))
    b = restored.price_batch(torch.tensor([0.7]), torch.tensor([1]))
    torch.testing.assert_close(a.per_source, b.per_source)
    assert pricer.close_window() == restored.close_window()


def test_bad_pricing_arguments_are_named():
    with pytest.raises(ValueError, match="price_horizon_hours"):
        EconomicsCallback(price_horizon_hours=-1.0)
    with pytest.raises(ValueError, match="value_ridge"):
        EconomicsCallback(value_ridge=0.0)
    with pytest.raises(ValueError, match="value_attribution"):
        EconomicsCallback(value_attribution="volume")


def test_training_with_novelty_fills_the_ledger_pricing_columns(tmp_path):
    economics = EconomicsCallback(value_min_samples=2, update_every=1)
    sources = [DataSource("platform", 1), DataSource("customer", 1, {"price_per_unit": 0.9})]
    model, dm, trainer = make_run(
        tmp_path,
        max_steps=300,  # one update per collection step: 5 shifts per site after warm-up
        callbacks=[economics],
        data_kwargs={
            "sources": sources,
            "updates_per_step": 1,
            "updates_per_epoch": 300,
            "eval_episodes": 1,
        },
        model_kwargs={"novelty_online": True, "novelty_batch": 8, "novelty_hidden_dim": 32},
    )
    trainer.fit(model, dm)
    with open(economics.ledger_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 8 and {r["source"] for r in rows} == {"platform", "customer"}
    for row in rows:
        for column in ("novelty", "delta_mpl_cust", "data_price", "s_cust", "s_plat"):
            assert row[column] != "", (column, row)
        cust, total = float(row["delta_mpl_cust"]), float(row["delta_mpl_total"])
        if row["source"] == "platform":
            assert cust == 0.0 and float(row["data_price"]) == 0.0
        assert cust >= 0.0
        if float(row["spread"]) > 0:  # shares follow from the attributed ΔMPL (section 5)
            s_cust, _ = contribution_shares(cust, total)
            assert float(row["s_cust"]) == pytest.approx(s_cust, rel=1e-9, abs=1e-12)
    # The estimator learned once per closed window, and once it had its samples the batches
    # were valued (before that every prediction is exactly 0).
    assert economics.pricer.estimator.n_seen >= 4
    metrics = trainer.logged_metrics
    assert {"econ/data_price", "econ/value/platform", "econ/value/customer"} <= set(metrics)
    assert metrics["econ/value/customer"] != 0.0 and metrics["econ/batch_delta_mpl"] != 0.0
