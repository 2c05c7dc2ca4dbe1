"""Section 7: the online ΔMPL estimator and the data price."""

import pickle

import numpy as np
import pytest

from v2p.economics import OnlineDataValueEstimator, data_price


def planted(n: int, seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Samples of y = 2x + 1 + noise, x ~ U(0, 3). Shapes (n, 1) and (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 3.0, size=(n, 1))
    y = 2.0 * x[:, 0] + 1.0 + rng.normal(0.0, noise, size=n)
    return x, y


def fitted(n: int, seed: int = 0, **kwargs) -> OnlineDataValueEstimator:
    estimator = OnlineDataValueEstimator(**kwargs)
    for features, target in zip(*planted(n, seed), strict=True):
        estimator.update(features, target)
    return estimator


def test_returns_zero_until_min_samples():
    estimator = OnlineDataValueEstimator(min_samples=10)
    x, y = planted(10)
    for features, target in zip(x[:9], y[:9], strict=True):
        estimator.update(features, target)
    assert estimator.n_seen == 9
    assert estimator.predict([1.5]) == 0.0
    assert estimator.kappa([1.5]) == 0.0
    estimator.update(x[9], y[9])
    assert estimator.n_seen == 10
    assert estimator.predict([1.5]) > 1.0


def test_predict_then_update_returns_the_prediction_made_before_learning():
    estimator = fitted(30)
    twin = fitted(30)
    before = twin.predict([2.0])
    returned = estimator.predict_then_update([2.0], 50.0)  # a surprising outcome
    assert returned == before
    assert estimator.predict([2.0]) > before  # it did learn from the sample afterwards
    assert estimator.n_seen == 31


def test_recovers_a_planted_linear_relation():
    estimator = fitted(2000)
    np.testing.assert_allclose(estimator.weights, [1.0, 2.0], atol=0.05)
    assert estimator.predict([1.5]) == pytest.approx(4.0, abs=0.03)
    assert estimator.noise_variance == pytest.approx(0.09, rel=0.1)


def test_rank_one_updates_equal_the_batch_ridge_solution():
    x, y = planted(50, seed=3)
    estimator = fitted(50, seed=3, ridge=2.0)
    design = np.column_stack([np.ones(50), x])  # (N, D)
    gram = design.T @ design + 2.0 * np.eye(2)
    weights = np.linalg.solve(gram, design.T @ y)
    np.testing.assert_allclose(estimator.weights, weights, rtol=1e-10)
    # The running residual variance is the ridge objective at its optimum, over N.
    objective = np.sum((y - design @ weights) ** 2) + 2.0 * weights @ weights
    assert estimator.noise_variance == pytest.approx(objective / 50, rel=1e-10)
    # kappa from the batch posterior: std of the mean = sqrt(sigma^2 * x^T gram^-1 x).
    query = np.array([1.0, 1.2])
    mean = query @ weights
    std = np.sqrt(objective / 50 * query @ np.linalg.solve(gram, query))
    assert estimator.kappa([1.2]) == pytest.approx((mean - 1.645 * std) / mean, rel=1e-9)


def test_kappa_is_a_discount_that_grows_with_evidence_and_is_zero_for_a_non_positive_mean():
    few, many = fitted(12), fitted(2000)
    k_few, k_many = few.kappa([1.5]), many.kappa([1.5])
    assert 0.0 <= k_few < k_many <= 1.0
    assert k_many > 0.95
    # y = 2x + 1 is negative at x = -2: no premium for data predicted to hurt.
    assert many.predict([-2.0]) < 0 and many.kappa([-2.0]) == 0.0
    # Huge z drives the lower bound below 0: clipped to 0, never negative.
    assert fitted(12, confidence_z=1e6).kappa([1.5]) == 0.0


def test_state_dict_round_trip_is_exact():
    estimator = fitted(40, n_features=1)
    state = pickle.loads(pickle.dumps(estimator.state_dict()))
    restored = OnlineDataValueEstimator()
    restored.load_state_dict(state)
    assert restored.n_seen == 40
    for query in ([0.0], [1.3], [2.9]):
        assert restored.predict(query) == estimator.predict(query)
        assert restored.kappa(query) == estimator.kappa(query)
    assert restored.predict_then_update([1.0], 3.0) == estimator.predict_then_update([1.0], 3.0)
    assert restored.predict([1.0]) == estimator.predict([1.0])


def test_state_of_another_shape_is_refused():
    state = fitted(12).state_dict()
    with pytest.raises(ValueError, match="n_features=2"):
        OnlineDataValueEstimator(n_features=2).load_state_dict(state)


def test_several_features():
    rng = np.random.default_rng(1)
    estimator = OnlineDataValueEstimator(n_features=3, min_samples=5)
    true = np.array([0.5, -1.0, 2.0, 0.0])  # intercept, then weights
    for _ in range(500):
        features = rng.normal(size=3)
        estimator.update(features, true[0] + features @ true[1:] + rng.normal(0, 0.05))
    np.testing.assert_allclose(estimator.weights, true, atol=0.02)


@pytest.mark.parametrize(
    "features", [[1.0, 2.0], [], [[1.0]], [float("nan")], [float("inf")], "1.0"]
)
def test_features_are_validated(features):
    estimator = OnlineDataValueEstimator(n_features=1)
    with pytest.raises(ValueError, match="features"):
        estimator.predict(features)
    with pytest.raises(ValueError, match="features"):
        estimator.update(features, 1.0)


def test_bad_targets_and_settings_raise():
    with pytest.raises(ValueError, match="realised_delta_mpl"):
        OnlineDataValueEstimator().update([1.0], float("nan"))
    with pytest.raises(ValueError, match="ridge"):
        OnlineDataValueEstimator(ridge=0.0)
    with pytest.raises(ValueError, match="min_samples"):
        OnlineDataValueEstimator(min_samples=-1)
    with pytest.raises(ValueError, match="n_features"):
        OnlineDataValueEstimator(n_features=0)


def test_data_price_closed_form():
    # 0.30 $/unit * 0.8 * 2.0 units/hr * 1000 hr * 5 deployments = 2400 $
    assert data_price(2.0, 0.30, 0.8, 1000.0, scale=5.0) == pytest.approx(2400.0)
    assert data_price(2.0, 0.30, 0.8, 1000.0) == pytest.approx(480.0)
    # A negative expected ΔMPL prices at 0, never negative.
    assert data_price(-2.0, 0.30, 0.8, 1000.0) == 0.0
    prices = data_price(np.array([1.0, -1.0, 3.0]), 0.5, np.array([1.0, 1.0, 0.5]), 10.0)
    np.testing.assert_allclose(prices, [5.0, 0.0, 7.5])
