"""Two CPU processes with DDP (gloo) under torchrun run every stage for a few steps, like a multi-GPU / SLURM job."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from mindsemantix import fixtures as FX

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    # A fixed rendezvous port collides with any other torchrun on the machine (another test run, a training job).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_gloo(tmp_path):
    data = FX.write_sim(tmp_path / "sim", {"sim01": 70, "sim02": 53})
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "mindsemantix.train",
           "--config", str(REPO / "models/configs/tiny.yaml"), "--data", str(data), "--out", str(out), "--stage", "all",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress-bar", "--threads", "1"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "[rank: 1]" in log and "[rank: 0]" in log                       # two ranks really ran
    for stage in ("ssl", "stage1", "stage2"):
        blob = torch.load(out / f"{stage}.pt", weights_only=False)
        assert blob["steps"] == 3 and all(torch.isfinite(torch.tensor(v)) for v in blob["metrics"].values())
        assert (out / stage / "checkpoints" / "last.ckpt").exists()
        assert (out / stage / "version_0" / "metrics.csv").exists()
    s1, s2 = torch.load(out / "stage1.pt", weights_only=False), torch.load(out / "stage2.pt", weights_only=False)
    assert "train/lm" in s2["metrics"] and "train/itm" in s1["metrics"]
    # stage 2 started from stage 1's weights and changed the Q-Former's projection into the LM
    assert not torch.equal(s1["weights"]["model"]["qformer.lm_proj.weight"], s2["weights"]["model"]["qformer.lm_proj.weight"])
