"""The one ridge implementation (mindsemantix.ridge) behind the bundle's baseline and the simulator's decoder."""
import numpy as np

from mindsemantix.ridge import Ridge, choose_penalty, fit_ridge, mean_cosine


def _reference(X, Y, a):
    """Ridge with an intercept as a least-squares problem: [Xc; √a I] W ≈ [Yc; 0]."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    A = np.vstack([Xc, np.sqrt(a) * np.eye(X.shape[1])])
    W = np.linalg.lstsq(A, np.vstack([Yc, np.zeros((X.shape[1], Y.shape[1]))]), rcond=None)[0]
    return W, Y.mean(0) - X.mean(0) @ W


def test_dual_and_primal_forms_are_ridge():
    rng = np.random.default_rng(0)
    for n, V in ((30, 80), (80, 30)):                       # more voxels than trials (dual), fewer (primal)
        X, Y = rng.standard_normal((n, V)), rng.standard_normal((n, 4))
        r = Ridge(X)
        assert r.dual == (V > n)
        for a in (0.5, 10.0):
            W, b = r.fit(Y, a)
            Wr, br = _reference(X, Y, a)
            np.testing.assert_allclose(W, Wr, atol=1e-9)
            np.testing.assert_allclose(b, br, atol=1e-9)


def test_penalty_is_chosen_on_held_out_training_trials():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 50))
    Y = X @ rng.standard_normal((50, 8)) + 0.1 * rng.standard_normal((200, 8))
    # a clean linear map: the smallest penalty predicts the held-out trials best
    assert choose_penalty(X, Y, (1e-2, 1e2, 1e4), mean_cosine) == 1e-2
    # pure noise targets: shrinking everything scores better than fitting the noise
    noise = rng.standard_normal((200, 8))
    assert choose_penalty(X, noise, (1e-2, 1e4), lambda P, T: -float(((P - T) ** 2).mean())) == 1e4
    # a tie keeps the first penalty
    assert choose_penalty(X, Y, (3.0, 1.0), lambda P, T: 0.0) == 3.0
    W, b, a = fit_ridge(X.astype(np.float32), Y.astype(np.float32), alphas=(1e-2, 1e4))
    assert a == 1e-2 and W.dtype == np.float32 and W.shape == (50, 8) and b.shape == (8,)
    assert mean_cosine(X @ W + b, Y) > 0.99
