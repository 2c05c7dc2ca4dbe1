"""The ex-ante novelty quote (ECONOMICS.md 7.2), and the ledger columns it fills."""

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
    """A pricer whose estimator has learned ΔMPL = w0 + w1 * novelty."""
    pricer = DataPricer(3, min_samples=5, **kwargs)
    for x in (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0):
        pricer.estimator.update([x], w0 + w1 * x)
    return pricer


def test_batch_quote_is_the_estimators_at_each_sources_mean_novelty():
    pricer = trained_pricer()
    novelty = torch.tensor([0.1, 2.0, -0.5, 1.5, 0.3, 0.0])
    source = torch.tensor([0, 1, 1, 2, 0, 0])
    value = pricer.price_batch(novelty, source)
    w0, w1 = pricer._weights()
    assert w0 == pytest.approx(0.2, abs=0.05) and w1 == pytest.approx(0.5, abs=0.05)
    assert value.delta_mpl.item() == pytest.approx(w0 + w1 * novelty.mean().item(), rel=1e-5)
    own = [w0 + w1 * novelty[source == k].mean().item() for k in range(3)]
    torch.testing.assert_close(value.per_source, torch.tensor(own), rtol=1e-5, atol=1e-6)
    # A source without transitions in the batch is quoted nothing.
    assert pricer.price_batch(novelty[:1], source[:1]).per_source[1:].abs().sum() == 0.0


def test_nothing_is_predicted_or_priced_before_the_estimator_has_min_samples():
    pricer = DataPricer(2, min_samples=10)
    value = pricer.price_batch(torch.tensor([5.0, 1.0]), torch.tensor([0, 1]))
    assert value.delta_mpl.item() == 0.0 and value.per_source.abs().sum().item() == 0.0
    assert pricer.shift_price(1, 0.6) == 0.0  # no quote, whatever the novelty


def test_the_quote_learns_from_the_attributions_one_sample_per_source():
    pricer = DataPricer(3, min_samples=0)
    pricer.price_batch(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    pricer.price_batch(torch.tensor([2.0, 5.0]), torch.tensor([0, 1]))
    assert pricer.window_novelty()[:2] == pytest.approx([1.5, 4.0])
    assert math.isnan(pricer.window_novelty()[2])  # no transition of source 2 was scored
    learnt = pricer.learn([0.0, 8.0, 3.0], sources=[1, 2])
    # Source 2 was never scored, so it teaches nothing; source 1 is one sample, predicted
    # (0 before any sample) before it was learnt from.
    assert [(q.source, q.novelty, q.predicted, q.attributed) for q in learnt] == [
        (1, 4.0, 0.0, 8.0)
    ]
    assert pricer.estimator.n_seen == 1 and pricer.quotes == learnt
    assert 0.0 < pricer.quote(1)[0] < 8.0  # the ridge prior shrinks toward 0
    # The window closed; a source that is not scored again keeps its latest mean novelty.
    pricer.price_batch(torch.tensor([0.0]), torch.tensor([0]))
    assert pricer.window_novelty()[:2] == pytest.approx([0.0, 4.0])


def test_graded_attributions_teach_a_quote_that_ranks_sources_by_novelty():
    pricer = DataPricer(3, min_samples=4)
    for _ in range(6):  # source 1 twice as novel as source 2, and worth twice as much
        pricer.price_batch(torch.tensor([0.0, 4.0, 2.0]), torch.tensor([0, 1, 2]))
        pricer.learn([0.0, 40.0, 20.0], sources=[1, 2])
    (pots, _), (pans, _) = pricer.quote(1), pricer.quote(2)
    assert pots == pytest.approx(40.0, rel=0.1) and pans == pytest.approx(20.0, rel=0.1)
    assert pricer.shift_price(1, 0.6) > pricer.shift_price(2, 0.6) > 0.0


def test_pricer_state_round_trips_mid_window():
    pricer = trained_pricer()
    pricer.price_batch(torch.tensor([0.5, 1.0]), torch.tensor([0, 2]))
    restored = DataPricer(3, min_samples=5)
    restored.load_state_dict(pricer.state_dict())
    a = pricer.price_batch(torch.tensor([0.7]), torch.tensor([1]))
    b = restored.price_batch(torch.tensor([0.7]), torch.tensor([1]))
    torch.testing.assert_close(a.per_source, b.per_source)
    assert pricer.learn([0.0, 1.0, 2.0], [1, 2]) == restored.learn([0.0, 1.0, 2.0], [1, 2])
    assert pricer.quotes == restored.quotes


def test_a_pricer_state_from_before_the_amendment_is_refused():
    old = DataPricer(1).state_dict()
    del old["quotes"]
    with pytest.raises(ValueError, match="raw site MPL changes"):
        DataPricer(1).load_state_dict(old)


def test_bad_pricing_arguments_are_named():
    with pytest.raises(ValueError, match="price_horizon_hours"):
        EconomicsCallback(price_horizon_hours=-1.0)
    with pytest.raises(ValueError, match="value_ridge"):
        EconomicsCallback(value_ridge=0.0)
    with pytest.raises(TypeError, match="value_attribution"):  # removed on 2026-12-01
        EconomicsCallback(value_attribution="marginal")


def test_training_with_attribution_and_novelty_fills_the_ledger_columns(tmp_path):
    economics = EconomicsCallback(value_min_samples=2, update_every=1)
    sources = [DataSource("platform", 1), DataSource("customer", 1, {"price_per_unit": 0.9})]
    model, dm, trainer = make_run(
        tmp_path,
        max_steps=320,  # one update per collection step: 5 shifts per site after warm-up
        callbacks=[economics],
        data_kwargs={
            "sources": sources,
            "updates_per_step": 1,
            "updates_per_epoch": 80,
            "eval_episodes": 1,
        },
        model_kwargs={
            "novelty_online": True,
            "novelty_batch": 8,
            "novelty_hidden_dim": 32,
            "source_names": ["platform", "customer"],
            "attribution": {"hidden_dim": 16},
        },
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
    # The customer was credited its contribution's high-water mark over the evaluations the
    # callback took, and nothing more.
    evaluations = model.attribution.evaluations
    taken = evaluations[: economics._evaluations_seen]
    assert taken == evaluations and len(taken) == 4  # the last one too, at the end of the fit
    high_water = max(0.0, *(e.contributions[1] for e in taken))
    credited = sum(float(r["delta_mpl_cust"]) for r in rows if r["source"] == "customer")
    assert credited == pytest.approx(economics._credited[1], rel=1e-9)
    paid_before_the_last = max(0.0, *(e.contributions[1] for e in taken[:-1]))
    assert credited == pytest.approx(paid_before_the_last, rel=1e-9, abs=1e-12)
    assert credited <= high_water + 1e-9
    # Every evaluation of both sources is in attribution.csv, negative ones included.
    with open(economics.ledger_path.with_name("attribution.csv")) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * len(taken)
    assert [float(r["contribution"]) for r in table[1::2]] == pytest.approx(
        [e.contributions[1] for e in taken]
    )
    # The quote learnt once per evaluation taken, and then priced the batches.
    assert economics.pricer.estimator.n_seen == len(taken)
    metrics = trainer.logged_metrics
    assert {"econ/data_price", "econ/value/platform", "econ/value/customer"} <= set(metrics)
    assert metrics["econ/value/customer"] != 0.0 and metrics["econ/batch_delta_mpl"] != 0.0
    assert {"attribution/platform", "attribution/customer"} <= set(metrics)
