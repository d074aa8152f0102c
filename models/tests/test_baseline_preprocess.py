"""The numpy/scipy reference implementation used as test oracle and benchmark baseline for streams/."""
import numpy as np

from mindsemantix.baselines.oracle import legendre_design
from mindsemantix.baselines.registration import register
from mindsemantix.baselines.rigid import apply_motion, matrix_to_params, params_to_matrix


def test_params_round_trip():
    p = np.array([1.0, -2.0, 0.5, 10.0, -20.0, 30.0])
    assert np.allclose(matrix_to_params(params_to_matrix(p)), p)


def test_scipy_registration_recovers_a_known_motion():
    g = np.indices((24, 26, 20), dtype=float)
    c = np.array([11.5, 12.5, 9.5])[:, None, None, None]
    r2 = (((g - c) / np.array([7, 8, 6])[:, None, None, None]) ** 2).sum(0)
    ref = 100 * np.exp(-r2) + 40 * np.exp(-(((g - c - 3) ** 2).sum(0)) / 6)
    truth = np.array([1.0, -0.5, 0.7, 2.0, -1.5, 1.0])
    moved = apply_motion(ref, truth, [2.0, 2.0, 2.0])
    est = register(moved, ref, [2.0, 2.0, 2.0])
    assert np.abs(est - truth).max() < 0.05


def test_legendre_design_spans_polynomials_on_the_data_span():
    X = legendre_design(np.arange(10, 30), 3)
    assert X.shape == (20, 4)
    assert np.allclose(X[:, 0], 1) and np.isclose(X[0, 1], -1) and np.isclose(X[-1, 1], 1)
