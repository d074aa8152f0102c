"""HRF timing, noise autocorrelation and head-motion statistics of the simulator."""
import numpy as np

from mindsemantix.sim.design import TR, make_run
from mindsemantix.sim.hrf import boxcar_regressors, hrf
from mindsemantix.sim.noise import TAU_AR, NoiseModel, ar1, framewise_displacement, motion_trace
from mindsemantix.sim.rng import stream


def test_hrf_peaks_at_5s_and_undershoots():
    t = np.arange(0, 32, 0.05)
    h = hrf(t)
    assert 4.7 <= t[h.argmax()] <= 5.3
    assert h.max() == 1.0 or abs(h.max() - 1) < 1e-6
    assert h[(t > 12) & (t < 20)].min() < -0.05  # post-stimulus undershoot
    # a 3 s image peaks about 6 s after onset, inside the estimator's 4–8 s window
    x = boxcar_regressors(t, np.array([0.0]), 3.0)[:, 0]
    assert 5.5 <= t[x.argmax()] <= 7.0


def test_ar1_noise_has_the_documented_autocorrelation():
    rng = stream(7, "test-ar")
    rho = np.exp(-TR / TAU_AR)
    x = ar1(rng, 4000, 50, rho)
    r1 = np.mean([np.corrcoef(x[:-1, k], x[1:, k])[0, 1] for k in range(50)])
    assert abs(r1 - rho) < 0.03
    assert abs(x.std() - 1) < 0.05


def test_structured_noise_is_autocorrelated_and_drifts():
    rng = stream(3, "test-noise")
    xyz = rng.uniform(-40, 40, (300, 3))
    nm = NoiseModel(rng, xyz)
    times = np.arange(400) * TR
    Y = nm.run(rng, times, motion=None, residual_motion=False)
    d = Y - Y.mean(0)
    r1 = np.mean(np.sum(d[1:] * d[:-1], 0) / np.sum(d * d, 0))
    assert r1 > 0.4            # drift + AR(1): strongly positively autocorrelated, unlike white thermal noise
    spec = np.abs(np.fft.rfft(d, axis=0)) ** 2
    f = np.fft.rfftfreq(len(times), TR)
    assert spec[(f > 0) & (f < 0.01)].mean() > 5 * spec[f > 0.1].mean()   # slow drift dominates the spectrum


def test_motion_statistics_are_realistic():
    rng = stream(11, "test-motion")
    fds, jumps, peak = [], 0, []
    for _ in range(40):
        m = motion_trace(rng, 180, TR)
        fd = framewise_displacement(m)
        fds.append(fd)
        jumps += int((fd > 0.5).sum())
        peak.append(np.abs(m[:, :3]).max())
    fd = np.concatenate(fds)
    assert 0.03 < np.median(fd) < 0.25          # typical framewise displacement of a cooperative subject (mm)
    assert (fd > 0.5).mean() < 0.03             # large frame-to-frame jumps are occasional…
    assert jumps >= 3                           # …but they do happen
    assert np.median(peak) < 1.5 and max(peak) < 6.0


def test_run_design_is_nsd_like():
    d = make_run(list(range(60)), [0] * 60, stream(1, "x"))
    gaps = np.diff(d.onsets)
    assert len(d.onsets) == 60 and set(np.round(gaps, 6)) <= {4.0, 8.0, 12.0} and (gaps == 4.0).mean() > 0.8
    assert d.times[-1] > d.onsets[-1] + 10
