"""Fitting a new person's read-out onto a bundle's frozen shared encoder + Q-Former, and that person's ridge baseline.

Only `encoder.adapters[<id>].read` (Linear V → hidden, the shape every subject's read-out has) is trained — MindEye2's
new-subject practice (docs/notes: one subject-specific linear layer onto a shared latent space). It starts from the
top principal directions of the person's trials (the closed-form linear autoencoder training uses), then follows
the caption-embedding objectives of stage 1 (`itc_text_loss`, `emb_loss`) against the bundle's own text encoder's
embeddings of the calibration captions. A slice of the calibration stimuli is held out to pick the number of epochs
and to report retrieval; the final read-out is refitted on every trial for that many epochs.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .model import BrainCaptioner
from .util import log


@dataclass
class FitConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    patience: int = 12            # epochs without a better held-out score before stopping
    heldout_frac: float = 0.1     # share of calibration stimuli held out (whole stimuli: repeats never straddle)
    min_heldout: int = 5
    emb_weight: float = 1.0
    align_weight: float = 1.0     # weight of align_loss where the bundle has the shared code of a calibration stimulus
    align_min_trials: int = 40    # fewer calibration trials of such stimuli: no alignment (too few to fit the start)
    select: str = "top1"          # held-out criterion for the epoch: "top1" (ties: cosine), "rank" (mean rank share) or
                                  # "last" (no early stopping: every one of `epochs`)
    seed: int = 0
    progress: object = field(default=None, repr=False)  # callable(done, total, note) or None


@dataclass
class CalibrationData:
    x: np.ndarray          # [n, V] float32 trial responses (serving chain)
    stim: np.ndarray       # [n] int index into stimulus_ids
    stimulus_ids: list
    cap_emb: np.ndarray    # [S, K, E] L2-normalised embeddings of each stimulus's references
    latent: np.ndarray | None = None   # [S, hidden] the bundle's people's shared code of each stimulus (shared_latents)
    has_latent: np.ndarray | None = None   # [S] bool: the stimulus is in that table

    def aligned(self, idx: np.ndarray) -> np.ndarray:
        """Those of trials `idx` whose stimulus has a shared code."""
        if self.latent is None or self.has_latent is None:
            return idx[:0]
        return idx[self.has_latent[self.stim[idx]]]

    def target(self) -> np.ndarray:
        """[S, E] normalised mean reference embedding per stimulus (the stage-1 `emb` / ridge target)."""
        m = self.cap_emb.mean(1)
        return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-9)


def heldout_split(stim: np.ndarray, frac: float, min_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Trial indices (fit, held out), holding out whole stimuli."""
    uniq = np.unique(stim)
    k = max(min_heldout, int(round(len(uniq) * frac)))
    k = min(k, len(uniq) // 2)
    held = np.random.default_rng(seed).permutation(uniq)[:k]
    mask = np.isin(stim, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def retrieval_scores(pred: np.ndarray, stim: np.ndarray, target: np.ndarray) -> dict:
    """Single-trial retrieval among the stimuli present in `stim`: top-1 / top-5 accuracy of the trial's predicted
    embedding against every candidate stimulus's mean reference embedding, and the mean cosine to its own."""
    cands = np.unique(stim)
    p = pred / (np.linalg.norm(pred, axis=1, keepdims=True) + 1e-9)
    sim = p @ target[cands].T                       # [n, C]
    own = np.searchsorted(cands, stim)
    rank = (sim > sim[np.arange(len(stim)), own][:, None]).sum(1)
    return {"top1": float((rank == 0).mean()), "top5": float((rank < 5).mean()),
            "chance_top1": 1.0 / len(cands), "candidates": int(len(cands)), "trials": int(len(stim)),
            "cosine": float(sim[np.arange(len(stim)), own].mean()),
            "rank": float((rank / max(1, len(cands) - 1)).mean())}


class ReadoutFitter:
    """Trains one subject's read-out through the frozen shared modules (they stay in eval mode; only the read-out's
    input dropout is active)."""

    def __init__(self, model: BrainCaptioner, subject: str, data: CalibrationData, cfg: FitConfig):
        self.model, self.subject, self.data, self.cfg = model, subject, data, cfg
        self.adapter = model.encoder.adapters[subject]
        self.cap = torch.from_numpy(data.cap_emb).float()
        self.mean_txt = torch.from_numpy(data.target()).float()
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if data.latent is not None and data.has_latent is not None and data.has_latent.any():
            lat = data.latent[data.has_latent]
            self.lat = torch.from_numpy(data.latent).float()
            self.has_lat = torch.from_numpy(data.has_latent)
            self.lat_mean = torch.from_numpy(lat.mean(0)).float()
            self.lat_var = float(((lat - lat.mean(0)) ** 2).sum(1).mean())
        else:
            self.lat = None

    # ---- losses (stage 1's, train.py) ----
    def itc_text_loss(self, ce: torch.Tensor, stim: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Symmetric InfoNCE between brain caption embeddings and one random reference per trial; trials of the same
        stimulus are all positives."""
        from .train import contrastive
        k = torch.randint(0, self.cap.shape[1], (len(stim),), generator=g)
        same = stim[:, None] == stim[None, :]
        return contrastive(ce, self.cap[stim, k], same, self.log_scale.exp().clamp(max=100))

    def emb_loss(self, ce: torch.Tensor, stim: torch.Tensor) -> torch.Tensor:
        """1 − cosine to the stimulus's mean reference embedding (what retrieval and the ridge baseline aim at)."""
        return (1 - (ce * self.mean_txt[stim]).sum(-1)).mean()

    def align_loss(self, x: torch.Tensor, stim: torch.Tensor) -> torch.Tensor:
        """Squared distance of the read-out's code to the shared code of the trial's stimulus (the mean of the bundle's
        people's codes of it), over the codes' spread: keeps the new person's code where the Q-Former and the LM were
        trained to read it (shared_latents.py). Trials of stimuli not in the table add nothing."""
        if self.lat is None:
            return x.new_zeros(())
        has = self.has_lat[stim]
        if not has.any():
            return x.new_zeros(())
        code = self.adapter.read(x[has])
        return ((code - self.lat[stim[has]]) ** 2).sum(-1).mean() / self.lat_var

    @torch.no_grad()
    def code_cosine(self, idx: np.ndarray) -> float | None:
        """Mean cosine, both centred on the table's mean, of the read-out's code of trials `idx` to their shared code."""
        idx = self.data.aligned(idx)
        if not len(idx):
            return None
        code = self.adapter.read(torch.from_numpy(self.data.x[idx])) - self.lat_mean
        t = self.lat[torch.from_numpy(self.data.stim[idx].astype(np.int64))] - self.lat_mean
        return float(torch.nn.functional.cosine_similarity(code, t, dim=-1).mean())

    @torch.no_grad()
    def init_aligned(self, idx: np.ndarray, seed: int = 0) -> dict:
        """Start from a ridge map of the voxels onto the shared code (trials of `idx` whose stimulus has one), its
        penalty chosen on a fifth of those stimuli; the closed-form start the caption objectives then refine."""
        a = self.data.aligned(idx)
        x = self.data.x[a].astype(np.float64)
        z = self.data.latent[self.data.stim[a]].astype(np.float64)
        stim = self.data.stim[a]
        uniq = np.unique(stim)
        held = np.random.default_rng(seed).permutation(uniq)[:max(1, len(uniq) // 5)]
        te = np.isin(stim, held)

        def solve(xs, zs, lam):
            xm, zm = xs.mean(0), zs.mean(0)
            xc = xs - xm
            K = xc @ xc.T
            alpha = np.linalg.solve(K + lam * np.trace(K) / len(K) * np.eye(len(K)), zs - zm)
            W = xc.T @ alpha                      # [V, hidden]
            return W, zm - xm @ W

        def cos(p, t):
            p, t = p - self.lat_mean.numpy(), t - self.lat_mean.numpy()
            return float(((p * t).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1) + 1e-9)).mean())

        scores = {}
        for lam in (0.1, 0.3, 1.0, 3.0, 10.0):
            W, b = solve(x[~te], z[~te], lam)
            scores[lam] = cos(x[te] @ W + b, z[te])
        lam = max(scores, key=scores.get)
        W, b = solve(x, z, lam)
        self.adapter.read.weight.copy_(torch.from_numpy(W.T).float())
        self.adapter.read.bias.copy_(torch.from_numpy(b).float())
        return {"trials": int(len(a)), "stimuli": int(len(uniq)), "penalty": lam,
                "start_cosine_heldout": round(scores[lam], 4)}

    def caption_embedding(self, x: torch.Tensor) -> torch.Tensor:
        q = self.model.qformer.queries(self.model.encoder(self.subject, x))
        return self.model.qformer.caption_embedding(q)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        self.adapter.eval()
        return np.concatenate([self.caption_embedding(torch.from_numpy(x[i:i + batch])).numpy()
                               for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, self.cap.shape[-1]), np.float32)

    def init_principal(self, idx: np.ndarray) -> float:
        """Start from the top principal directions of these trials (no captions needed); returns variance share."""
        return self.adapter.fit_principal(torch.from_numpy(self.data.x[idx]))

    def fit(self, idx: np.ndarray, epochs: int, heldout: np.ndarray | None = None, phase: str = "fit") -> dict:
        """AdamW on the read-out for up to `epochs` epochs over trials `idx`. With `heldout`, keeps the read-out of the
        best held-out top-1 (ties: higher cosine) and stops after `patience` epochs without one."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        params = list(self.adapter.read.parameters()) + [self.log_scale]
        opt = torch.optim.AdamW([{"params": list(self.adapter.read.parameters()), "weight_decay": cfg.weight_decay},
                                 {"params": [self.log_scale], "weight_decay": 0.0}], lr=cfg.lr)
        for p in params:
            p.requires_grad_(True)
        x = torch.from_numpy(self.data.x)
        stim_all = torch.from_numpy(self.data.stim.astype(np.int64))
        best, best_state, best_epoch, history = None, None, 0, []
        bs = min(cfg.batch_size, len(idx))
        steps_per_epoch = max(1, len(idx) // bs)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
        t0 = time.time()
        for ep in range(epochs):
            self.adapter.train()  # input dropout only: the shared modules have dropout 0 and stay frozen
            perm = torch.from_numpy(idx)[torch.randperm(len(idx), generator=g)]
            for s in range(steps_per_epoch):
                b = perm[s * bs:(s + 1) * bs]
                ce = self.caption_embedding(x[b])
                loss = self.itc_text_loss(ce, stim_all[b], g) + cfg.emb_weight * self.emb_loss(ce, stim_all[b])
                if self.lat is not None and cfg.align_weight > 0:
                    loss = loss + cfg.align_weight * self.align_loss(x[b], stim_all[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            note = f"loss {loss.item():.3f}"
            if heldout is not None and len(heldout):
                sc = retrieval_scores(self.predict(self.data.x[heldout]), self.data.stim[heldout], self.data.target())
                history.append({"epoch": ep + 1, **sc})
                key = ((ep,) if cfg.select == "last" else
                       (-sc["rank"], sc["cosine"]) if cfg.select == "rank" else (sc["top1"], sc["cosine"]))
                if best is None or key > best:
                    best, best_epoch, best_state = key, ep + 1, copy.deepcopy(self.adapter.read.state_dict())
                note += f", held-out top-1 {sc['top1']:.2f} (chance {sc['chance_top1']:.2f})"
                if ep + 1 - best_epoch >= cfg.patience:
                    if cfg.progress:
                        cfg.progress(ep + 1, epochs, f"{phase}: {note}; stopped (best epoch {best_epoch})")
                    break
            if cfg.progress:
                cfg.progress(ep + 1, epochs, f"{phase}: {note}")
        for p in params:
            p.requires_grad_(False)
        if best_state is not None:
            self.adapter.read.load_state_dict(best_state)
        self.adapter.eval()
        return {"best_epoch": best_epoch or epochs, "history": history, "seconds": time.time() - t0}


def with_synthetic(data: CalibrationData, x_syn: np.ndarray, emb_syn: np.ndarray) -> CalibrationData:
    """The real trials followed by synthetic ones, each synthetic trial its own stimulus whose every reference is its
    caption embedding (stimulus indices ≥ the real stimulus count)."""
    S, K = data.cap_emb.shape[:2]
    n = len(x_syn)
    e = emb_syn / (np.linalg.norm(emb_syn, axis=1, keepdims=True) + 1e-9)
    return CalibrationData(x=np.ascontiguousarray(np.concatenate([data.x, x_syn]).astype(np.float32)),
                           stim=np.concatenate([data.stim, S + np.arange(n)]),
                           stimulus_ids=list(data.stimulus_ids) + [f"synthetic-{i}" for i in range(n)],
                           cap_emb=np.concatenate([data.cap_emb, np.repeat(e[:, None, :], K, 1)]).astype(np.float32),
                           latent=None if data.latent is None else np.concatenate(
                               [data.latent, np.zeros((n, data.latent.shape[1]), np.float32)]),
                           has_latent=None if data.has_latent is None else np.concatenate([data.has_latent, np.zeros(n, bool)]))


def fit_readout(model: BrainCaptioner, subject: str, data: CalibrationData, cfg: FitConfig,
                synthetic: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Held-out run (choose epochs, score), then the final read-out on every trial. Returns the report.
    synthetic: (responses, caption embeddings) fitted on beside the real trials (anatomy_prior.synthesize); the
    held-out slice, the principal start and every reported score use real trials only."""
    fit_idx, held_idx = heldout_split(data.stim, cfg.heldout_frac, cfg.min_heldout, cfg.seed)
    real = len(data.stim)
    work = with_synthetic(data, *synthetic) if synthetic is not None else data
    extra = np.arange(real, len(work.stim))
    all_idx = np.arange(real)
    align = cfg.align_weight > 0 and len(data.aligned(fit_idx)) >= cfg.align_min_trials
    if not align:  # too few trials of stimuli with a shared code to align on: the caption objectives alone
        cfg = replace(cfg, align_weight=0.0)
    f = ReadoutFitter(model, subject, work, cfg)

    def start(fitter: ReadoutFitter, idx: np.ndarray) -> dict:
        if align:
            a = fitter.init_aligned(idx, cfg.seed)
            log(f"calibrate: read-out initialised by a ridge map onto the bundle's shared code ({a['trials']} trials of "
                f"{a['stimuli']} stimuli the bundle's people saw; held-out cosine {a['start_cosine_heldout']:.2f})")
            return a
        share = fitter.init_principal(idx)
        log(f"calibrate: read-out initialised from the top principal directions ({share:.0%} of the variance of {len(idx)} trials)")
        return {}

    start_info = start(f, fit_idx)
    init_score = retrieval_scores(f.predict(data.x[held_idx]), data.stim[held_idx], data.target())
    init_cos = f.code_cosine(held_idx) if align else None
    r = f.fit(np.concatenate([fit_idx, extra]), cfg.epochs, held_idx, phase="held-out fit")
    held_score = retrieval_scores(f.predict(data.x[held_idx]), data.stim[held_idx], data.target())
    held_cos = f.code_cosine(held_idx) if align else None
    # final: every trial, the chosen number of epochs (at least 5), from the same kind of start
    final = ReadoutFitter(model, subject, work, cfg)
    start(final, all_idx)
    epochs = max(5, r["best_epoch"])
    r2 = final.fit(np.concatenate([all_idx, extra]), epochs, None, phase="final fit")
    alignment = ({"trials": start_info["trials"], "stimuli": start_info["stimuli"], "penalty": start_info["penalty"],
                  "weight": cfg.align_weight, "heldout_code_cosine_at_start": init_cos, "heldout_code_cosine": held_cos}
                 if align else {"used": False, "trials_with_shared_code": int(len(data.aligned(all_idx)))})
    return {"heldout": {"stimuli": int(len(np.unique(data.stim[held_idx]))), "trials": int(len(held_idx)),
                        "fit_trials": int(len(fit_idx)), "synthetic_trials": int(len(extra)), "model": held_score,
                        "model_at_init": init_score},
            "alignment": alignment, "epochs": epochs, "seconds": r["seconds"] + r2["seconds"]}


def fit_ridge_baseline(data: CalibrationData, rank: int | None, seed: int = 0, idx: np.ndarray | None = None):
    """The bundle's baseline method (evaluate.fit_baselines: ridge voxels → normalised mean reference embedding, penalty
    chosen on a held-out part of the trials; reduced rank as the export does) on this person's trials."""
    from types import SimpleNamespace
    from .evaluate import fit_baselines
    idx = np.arange(len(data.stim)) if idx is None else idx
    corpus = SimpleNamespace(subjects={"new": SimpleNamespace(train_x=data.x[idx], train_stim=data.stim[idx])})
    return fit_baselines(corpus, torch.from_numpy(data.cap_emb), rank=rank, seed=seed)["new"]
