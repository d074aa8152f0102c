"""Training with Lightning: the same command on CPU, one GPU, or many GPUs / nodes (DDP under torchrun or SLURM).

  python -m mindsemantix.train --config models/configs/default.yaml --stage all --out models/runs/default [--seed 0]
  torchrun --nproc_per_node 4 -m mindsemantix.train --config ... --devices 4 --strategy ddp      (multi-GPU)
  srun python -m mindsemantix.train --config ... --devices 4 --num-nodes 2 --strategy ddp        (SLURM)

Stages (each starts from the previous stage's weights, `<out>/<stage>.pt`):
  ssl     masked brain modeling (MAE over voxel patches, 75 % masked) across all subjects' training trials
  stage1  BLIP-2 style: brain–text contrastive (frozen MiniLM), brain–image contrastive (frozen EfficientNet-Lite0),
          brain–text matching with hard negatives, brain-grounded generation; + the image generator
  stage2  soft prompt (linear projection of the query outputs) into the frozen LM, LM loss on caption tokens only
  all     ssl → stage1 → stage2 (`--no-ssl` skips ssl: the ablation without pretraining)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .model import BrainCaptioner, ModelConfig
from .train_config import ConfigError, DataConfig, TrainingConfig, TrainSection, load_config, section
from .util import log

STAGES = ("ssl", "stage1", "stage2")


# ---- data ---------------------------------------------------------------------------------------------------------

def load_corpus(dcfg: DataConfig | dict):
    """The corpus a config's data section names (a plain dict: the data section of a run's saved config)."""
    from . import data as D
    d = section(DataConfig, dcfg, "data", "the data section")
    if d.source == "sim":
        if d.root is None:
            raise ConfigError("data.root is not set: give the simulated dataset's folder with --data DIR or data.root in the config.")
        return D.load_sim(Path(d.root), d.field, d.subjects)
    if d.subjects is None or d.captions is None:
        raise ConfigError(f"data.source {d.source} needs data.subjects (id → files) and data.captions: set both in the config.")
    if d.source == "nsd-hdf5":
        return D.load_nsd_hdf5(d.subjects, Path(d.captions), d.stim_info, None, d.stimuli_h5)
    return D.load_nsd_wds(d.subjects, Path(d.captions), d.stim_info)


# ---- losses -------------------------------------------------------------------------------------------------------

def contrastive(a, b, same, scale, smoothing=0.1):
    """Symmetric InfoNCE with several positives (same stimulus) and label smoothing."""
    logits = scale * a @ b.t()
    t = same.float()
    n = t.shape[1]
    t1 = (1 - smoothing) * t / t.sum(1, keepdim=True) + smoothing / n
    t2 = (1 - smoothing) * t.t() / t.t().sum(1, keepdim=True) + smoothing / n
    return 0.5 * (-(t1 * F.log_softmax(logits, 1)).sum(1).mean() - (t2 * F.log_softmax(logits.t(), 1)).sum(1).mean())


def consensus_reference(emb):
    """[B, K, E] normalised reference embeddings → [B] index of the reference most similar to the others."""
    return (emb @ emb.transpose(1, 2)).sum(-1).argmax(-1)


# ---- Lightning module ---------------------------------------------------------------------------------------------

def _lightning():
    import lightning as L
    return L


class BrainLM(_lightning().LightningModule):
    def __init__(self, mcfg: ModelConfig, tcfg: TrainSection, stage: str, subjects: list[str], targets: dict, lm, gen: dict, seed: int = 0):
        super().__init__()
        self.mcfg, self.tcfg, self.stage, self.subjects, self.seed = mcfg, tcfg, stage, subjects, seed
        self.model = BrainCaptioner(mcfg)
        self.img_side = nn.Linear(mcfg.image_feat_dim, mcfg.image_embed_dim)
        self.scale_text = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.scale_img = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.t = targets
        self._lm = [lm]  # frozen, kept out of the module tree (not checkpointed, not DDP-synced)
        self.gen = gen
        self.weights = tcfg.weights
        cap = targets.get("cap_tok")
        vocab = torch.unique(cap[cap >= 0]) if cap is not None else torch.zeros(0, dtype=torch.int64)
        self.vocab = vocab  # Q-Former generation head scores only the caption vocabulary
        remap = torch.full((int(lm.s.vocab_size),), -1, dtype=torch.int64)
        remap[vocab] = torch.arange(len(vocab))
        self.remap = remap
        if "kw_tok" in targets:
            self.kw_vocab = torch.unique(torch.cat([targets["kw_tok"].reshape(-1), vocab]))
            kr = torch.full((int(lm.s.vocab_size),), 0, dtype=torch.int64)
            kr[self.kw_vocab] = torch.arange(len(self.kw_vocab))
            self.kw_remap = kr
        self.prefix_kv = None
        self.t0 = None
        self.freeze_encoder = stage == "stage2" and tcfg.stage2.freeze_encoder
        if stage == "ssl":  # only the encoder (and its MAE decoder) trains
            for n, p in self.named_parameters():
                if not n.startswith("model.encoder."):
                    p.requires_grad_(False)
        if self.freeze_encoder:
            for p in self.model.encoder.parameters():
                p.requires_grad_(False)
        if stage != "ssl" and tcfg.stage(stage).readout_lr_mult == 0:
            self.freeze_readouts()

    @property
    def lm(self):
        return self._lm[0]

    def on_fit_start(self):
        dev = self.device
        self.t = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in self.t.items()}
        self._lm[0] = self.lm.to(dev)
        self.vocab, self.remap = self.vocab.to(dev), self.remap.to(dev)
        if hasattr(self, "kw_vocab"):
            self.kw_vocab, self.kw_remap = self.kw_vocab.to(dev), self.kw_remap.to(dev)
        if self.stage == "stage2":
            ids = torch.tensor([self.gen["prefix_ids"]], device=dev)
            with torch.no_grad():
                P = ids.shape[1]
                _, pres = self.lm.hidden(self.lm.embed_tokens(ids), torch.ones(1, P, dtype=torch.int64, device=dev),
                                         torch.arange(P, device=dev)[None], *[p.to(dev) for p in self.lm.empty_past(1)])
            self.prefix_kv = pres
        self.t0 = time.time()

    def on_train_epoch_start(self):
        if self.freeze_encoder:
            self.model.encoder.eval()  # frozen: no dropout either

    def freeze_readouts(self):
        """Masked brain modeling leaves the subject read-outs as they are (ssl.readout=pca fitted them already)."""
        for a in self.model.encoder.adapters.values():
            a.read.requires_grad_(False)

    def trainable(self):
        if self.stage == "ssl":
            return [p for p in self.model.encoder.parameters() if p.requires_grad]
        return [p for n, p in self.named_parameters()]

    def configure_optimizers(self):
        tc = self.tcfg.stage(self.stage)
        enc = set(id(p) for p in self.model.encoder.parameters())
        if self.stage == "ssl":
            groups = [{"params": self.trainable(), "lr": tc.lr}]
        else:
            mult = tc.encoder_lr_mult
            rmult = mult if tc.readout_lr_mult is None else tc.readout_lr_mult  # the subject read-outs' own rate; 0: frozen in __init__
            rest = [p for p in self.parameters() if id(p) not in enc]
            encoder = list(self.model.encoder.parameters())
            read = []
            if rmult != mult:
                ids = set(id(p) for a in self.model.encoder.adapters.values() for p in a.read.parameters())
                read = [p for p in encoder if id(p) in ids] if rmult > 0 else []
                encoder = [p for p in encoder if id(p) not in ids]
            # encoder first, as checkpoints written before readout_lr_mult existed expect when resumed
            groups = [{"params": encoder, "lr": tc.lr * mult}, {"params": rest, "lr": tc.lr}]
            groups += [{"params": read, "lr": tc.lr * rmult}] if read else []
            if self.freeze_encoder:
                groups = [groups[1]]
        opt = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
        steps, warm = tc.steps, max(1, int(tc.steps * tc.warmup))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))) * 0.9 + 0.1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- steps --
    def training_step(self, batch, _):
        sub = self.subjects[int(batch["subject_index"])]
        x, stim = batch["voxels"], batch["stim"]
        logs = {}
        if self.stage == "ssl":
            sc = self.tcfg.ssl
            cw = sc.contrast_weight
            logs = self.model.encoder.masked_modeling(sub, x, target=batch.get("target"), norm_patches=sc.norm_patches,
                                                      partners=self.partner_groups(batch), decode_partners=sc.target == "cross",
                                                      contrast_partners=cw > 0)
            loss = logs["mae"]
            if "cross" in logs:
                loss = loss + sc.cross_weight * logs["cross"]
            if "contrast" in logs:
                loss = loss + cw * logs["contrast"]
        else:
            loss, logs = self.stage_losses(sub, x, stim)
        for k, v in logs.items():
            self.log(f"train/{k}", v.detach(), prog_bar=k in ("loss", "mae", "lm", "itc_text"), batch_size=len(x), sync_dist=False)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(x))
        every = self.tcfg.log_every
        if self.global_rank == 0 and (self.global_step % every == 0):
            parts = " ".join(f"{k}={float(v.detach()):.4f}" for k, v in logs.items())
            log(f"{self.stage} step {self.global_step}/{self.tcfg.stage(self.stage).steps} loss={float(loss.detach()):.4f} {parts} "
                f"({time.time() - self.t0:.0f} s)")
        return loss

    def partner_groups(self, batch):
        """The batch's cross-subject targets grouped by the other subject: [(subject, rows, voxels [n, V])]."""
        if "partner_subject" not in batch:
            return None
        ps = batch["partner_subject"]
        groups = []
        for k in sorted(set(ps.tolist()) - {-1}):
            rows = (ps == k).nonzero().squeeze(1)
            groups.append((self.subjects[k], rows, torch.stack([batch["partner_voxels"][int(r)] for r in rows]).to(self.device)))
        return groups

    def stage_losses(self, sub, x, stim):
        W = self.weights
        t = self.t
        B = len(x)
        k = torch.randint(0, t["cap_emb"].shape[1], (B,), device=x.device)  # embedded references
        ke = k
        k = torch.randint(0, t["cap_tok"].shape[1], (B,), device=x.device)  # all references (LM / ITG targets)
        if self.freeze_encoder:
            with torch.no_grad():
                bt = self.model.encoder(sub, x)
        else:
            bt = self.model.encoder(sub, x)
        qf = self.model.qformer
        q = qf.queries(bt)
        same = stim[:, None] == stim[None, :]
        logs = {}
        txt = t["cap_emb"][stim, ke]
        ce = qf.caption_embedding(q)
        logs["itc_text"] = contrastive(ce, txt, same, self.scale_text.exp().clamp(max=100))
        total = W.itc_text * logs["itc_text"]
        if W.emb > 0:
            # regression onto the mean reference embedding (the ridge baseline's target): steadies the contrastive space
            mean_txt = F.normalize(t["cap_emb"][stim].mean(1), dim=-1)
            logs["emb"] = (1 - (ce * mean_txt).sum(-1)).mean()
            total = total + W.emb * logs["emb"]
        if t.get("img_feat") is not None and W.itc_image > 0:
            ie = qf.image_embedding(q)
            im = F.normalize(self.img_side(t["img_feat"][stim]), dim=-1)
            logs["itc_image"] = contrastive(ie, im, same, self.scale_img.exp().clamp(max=100))
            total = total + W.itc_image * logs["itc_image"]
        if self.stage == "stage2" and self.tcfg.stage2.short_captions:
            # the LM loss (the expensive part on CPU) uses one of the n shortest references per stimulus
            n = self.tcfg.stage2.short_captions
            lens = (t["cap_tok"][stim] >= 0).sum(-1)             # [B, K]
            short = lens.argsort(dim=1, stable=True)[:, :n]
            k = short[torch.arange(B, device=x.device), torch.randint(0, short.shape[1], (B,), device=x.device)]
        if self.stage == "stage2" and self.tcfg.stage2.reference == "consensus":
            # the LM learns one caption per scene — the reference closest to the other four (MiniLM) — so that the soft
            # prompt has to carry content, not which of five phrasings was drawn; greedy decoding then aims at the consensus
            k = consensus_reference(t["cap_emb"][stim])
        tok = t["cap_tok"][stim, k]                              # [B, L] with -1 padding
        if self.stage == "stage1":
            emb_table = self.lm.embed_tokens.weight
            pad = tok < 0
            temb = F.embedding(tok.clamp_min(0), emb_table)
            if W.itm > 0 and (~same).any():
                logs["itm"] = self.itm_loss(bt, temb, pad, ce.detach(), txt, same)
                total = total + W.itm * logs["itm"]
            if W.itg > 0:
                start = torch.full((B, 1), self.gen["eos_token_ids"][0], dtype=torch.int64, device=x.device)
                inp = torch.cat([start, tok[:, :-1].clamp_min(0)], 1)
                inpad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=x.device), pad[:, :-1]], 1)
                _, th = qf.joint(bt, F.embedding(inp, emb_table), "gen", inpad)
                logits = qf.gen_out(th) @ emb_table[self.vocab].t()
                tgt = torch.where(pad, torch.full_like(tok, -1), self.remap[tok.clamp_min(0)])
                logs["itg"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-1)
                total = total + W.itg * logs["itg"]
        if self.stage == "stage2":
            sc = self.tcfg.stage2
            sp = qf.lm_proj(q)
            if W.align > 0 and "kw_tok" in t:
                logs["align"] = self.align_loss(sp, t["kw_tok"][stim])
                total = total + W.align * logs["align"]
            every = sc.lm_every
            if W.lm > 0 and every > 0 and self.global_step % every == 0:
                nb = int(sc.lm_batch or B)
                logs["lm"] = self.lm_loss(sp[:nb], tok[:nb])
                total = total + W.lm * logs["lm"]
        if t.get("img") is not None and W.generator > 0:
            img = self.model.generator(txt, bt.detach())
            logs["gen_mse"] = F.mse_loss(img, t["img"][stim])
            total = total + W.generator * logs["gen_mse"]
        logs["loss"] = total
        return total, logs

    def itm_loss(self, bt, temb, pad, ce, txt, same):
        """Brain–text matching: positives, plus one hard negative text per brain and one hard negative brain per text,
        drawn from the contrastive similarities (BLIP-2)."""
        qf = self.model.qformer
        B = bt.shape[0]
        with torch.no_grad():
            sim = ce @ txt.t()
            w = torch.softmax(sim * 10, 1).masked_fill(same, 0) + (~same).float() * 1e-6
            neg_t = torch.multinomial(w.masked_fill(same, 0), 1).squeeze(1)
            neg_b = torch.multinomial(w.t().masked_fill(same.t(), 0), 1).squeeze(1)
        bt_all = torch.cat([bt, bt, bt[neg_b]])
        te_all = torch.cat([temb, temb[neg_t], temb])
        pad_all = torch.cat([pad, pad[neg_t], pad])
        qo, _ = qf.joint(bt_all, te_all, "match", pad_all)
        logits = qf.itm_head(qo.mean(1))
        labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(bt.device)
        return F.cross_entropy(logits, labels)

    def align_loss(self, sp, kw):
        """Soft prompt slot i → the LM embedding of keyword token i: cosine classification over the caption vocabulary
        plus MSE to the embedding (so the LM reads words it knows, at their own scale). No LM forward needed."""
        E = self.lm.embed_tokens.weight
        cand = self.kw_vocab
        logits = F.normalize(sp, dim=-1) @ F.normalize(E[cand], dim=-1).t() / 0.05
        ce = F.cross_entropy(logits.reshape(-1, len(cand)), self.kw_remap[kw].reshape(-1))
        mse = F.mse_loss(sp, E[kw]) / E.pow(2).mean()
        return ce + mse

    def lm_loss(self, soft_prompt, tok):
        """embed(prefix) (cached KV) ++ soft prompt ++ embed(suffix) ++ caption; cross-entropy on caption tokens only."""
        lm = self.lm
        B, Qn, _ = soft_prompt.shape
        dev = soft_prompt.device
        suf = torch.tensor(self.gen["suffix_ids"], device=dev)
        E = lm.embed_tokens.weight
        L = int((tok >= 0).sum(1).max())
        tok = tok[:, :L]
        seq = torch.cat([soft_prompt, F.embedding(suf, E)[None].expand(B, -1, -1), F.embedding(tok.clamp_min(0), E)], 1)
        P = self.prefix_kv[0].shape[2]
        S = seq.shape[1]
        past = [p.expand(B, -1, -1, -1) for p in self.prefix_kv]
        h, _ = lm.hidden(seq, torch.ones(B, P + S, dtype=torch.int64, device=dev), (P + torch.arange(S, device=dev))[None].expand(B, -1), *past)
        start = Qn + len(suf) - 1                  # hidden state that predicts the first caption token
        logits = lm.lm_head(h[:, start:start + L])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok.reshape(-1), ignore_index=-1)

    def train_dataloader(self):
        from .data import TrialDataset, SubjectBatchSampler, collate_single_subject
        from torch.utils.data import DataLoader
        ds = self.trainer.datamodule_ds
        bs = self.tcfg.stage(self.stage).batch_size
        sampler = SubjectBatchSampler(ds, self.tcfg.batch_size if bs is None else bs, seed=self.seed, rank=self.global_rank,
                                      world=self.trainer.world_size)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_single_subject, num_workers=0)

    def weights_state(self):
        return {"model": self.model.state_dict(), "img_side": self.img_side.state_dict(),
                "scale_text": self.scale_text.detach().cpu(), "scale_img": self.scale_img.detach().cpu()}


# ---- driver -------------------------------------------------------------------------------------------------------

def model_config(cfg: TrainingConfig, corpus) -> ModelConfig:
    return dataclasses.replace(cfg.model, subjects={s: d.voxels for s, d in corpus.subjects.items()})


def run_stage(stage: str, cfg: TrainingConfig, corpus, targets, lm, gen, out: Path, init: Path | None, args) -> Path:
    L = _lightning()
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from .data import TrialDataset, repeated_share
    tc = cfg.train
    L.seed_everything(args.seed + STAGES.index(stage), workers=True)
    mcfg = model_config(cfg, corpus)
    module = BrainLM(mcfg, tc, stage, list(corpus.subjects), targets, lm, gen, seed=args.seed)
    if init is not None and init.is_dir():
        # an exported bundle: its serving weights exactly (ONNX graphs / shared.safetensors), every other module — MAE
        # decoder, ITM / ITG heads, image projections, contrastive temperatures — at its fresh initialisation
        from .frozen_shared import load_bundle_weights, fresh_summary
        rep = load_bundle_weights(module.model, init)
        fresh = rep["fresh"] + [f"img_side.{k}" for k in module.img_side.state_dict()] + ["scale_text", "scale_img"]
        log(f"{stage}: initialised from the bundle {init} ({rep['loaded']} tensors: shared {rep['sources']['shared']}, read-outs "
            f"{', '.join(rep['sources']['adapters'])}, generator {rep['sources']['generator'] or 'none (fresh)'}); "
            f"not in the bundle, fresh: {fresh_summary(fresh)}")
    elif init is not None and init.exists():
        blob = torch.load(init, map_location="cpu", weights_only=False)
        own = set(module.model.encoder.adapters)
        # masked brain modeling may have seen more subjects (data.ssl_subjects) than this stage: their adapters stay behind
        state = {k: v for k, v in blob["weights"]["model"].items()
                 if not (k.startswith("encoder.adapters.") and k.split(".")[2] not in own)}
        module.model.load_state_dict(state)
        for k in ("img_side",):
            getattr(module, k).load_state_dict(blob["weights"][k])
        module.scale_text.data.copy_(blob["weights"]["scale_text"])
        module.scale_img.data.copy_(blob["weights"]["scale_img"])
        log(f"{stage}: initialised from {init}")
    if stage == "ssl" and tc.ssl.readout == "pca":
        for s, d in corpus.subjects.items():
            share = module.model.encoder.adapters[s].fit_principal(torch.from_numpy(d.train_x))
            log(f"ssl: {s} read-out = top {mcfg.hidden} principal directions of {len(d.train_x)} trials ({share:.0%} of their variance)")
        module.freeze_readouts()
    steps = tc.stage(stage).steps
    stage_dir = out / stage
    ckpt = ModelCheckpoint(dirpath=stage_dir / "checkpoints", every_n_train_steps=max(1, tc.ckpt_every),
                           save_last=True, save_top_k=-1 if tc.keep_all_ckpts else 1)
    # one subject's adapter per batch: the other adapters get no gradient on that rank in that step
    strategy = "ddp_find_unused_parameters_true" if args.strategy == "ddp" else args.strategy
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy=strategy,
        max_steps=steps, max_epochs=-1, precision=tc.precision,
        logger=CSVLogger(str(out), name=stage, version=0), callbacks=[ckpt] + ([] if args.no_progress_bar else [TQDMProgressBar(refresh_rate=max(1, steps // 50))]),
        log_every_n_steps=max(1, min(25, steps // 4)), use_distributed_sampler=False, enable_model_summary=False,
        gradient_clip_val=tc.grad_clip, deterministic=False, num_sanity_val_steps=0,
        enable_progress_bar=not args.no_progress_bar,
    )
    target = tc.ssl.target if stage == "ssl" else "self"
    if target == "repeats":
        share = repeated_share(corpus)
        if share == 0:
            raise ValueError("train.ssl.target=repeats needs training stimuli shown more than once to the same subject, and these "
                             "training trials have none (the simulator shows each training scene once), so the target would be "
                             "the trial itself: use train.ssl.target=self.")
        log(f"ssl: {share:.0%} of the training trials have another repeat of their stimulus (the rest reconstruct themselves)")
    partners = stage == "ssl" and (target == "cross" or tc.ssl.contrast_weight > 0)
    trainer.datamodule_ds = TrialDataset(corpus, "train", repeat_targets=target == "repeats", cross_targets=partners, seed=args.seed)
    if partners:
        parts = trainer.datamodule_ds.partners
        n = sum(1 for k, st in enumerate(trainer.datamodule_ds.stims) for s in st.tolist() if (k, s) in parts)
        if n == 0:
            raise ValueError("train.ssl.target=cross and train.ssl.contrast_weight need training stimuli that more than one "
                             "subject saw, and these subjects share none: add subjects with data.ssl_subjects, or use "
                             "train.ssl.target=self with contrast_weight 0.")
        log(f"ssl: {n} of {len(trainer.datamodule_ds)} training trials have another subject's trial of the same stimulus")
    t0 = time.time()
    trainer.fit(module, ckpt_path=args.resume if args.resume else None)
    final = out / f"{stage}.pt"
    if trainer.global_rank == 0:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        torch.save({"config": cfg.to_dict(), "model_config": mcfg.to_dict(), "stage": stage, "seed": args.seed, "steps": steps,
                    "weights": module.weights_state(), "metrics": metrics, "seconds": time.time() - t0,
                    **({"init_bundle": getattr(args, "bundle_identity", None)} if init is not None and init.is_dir() else {})}, final)
        log(f"{stage}: done in {time.time() - t0:.0f} s; {json.dumps({k: round(v, 4) for k, v in metrics.items()})} → {final}")
    if trainer.world_size > 1:
        torch.distributed.barrier()
    return final


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--stage", default="all", choices=[*STAGES, "all"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="override data.root")
    ap.add_argument("--no-ssl", action="store_true", help="skip masked brain modeling (ablation)")
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--devices", default="auto")
    ap.add_argument("--num-nodes", type=int, default=1)
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--resume", help="Lightning checkpoint to resume the (single) stage from")
    init = ap.add_mutually_exclusive_group()
    init.add_argument("--init", help="weights (<stage>.pt) the first stage starts from, instead of the previous stage's in --out")
    init.add_argument("--init-bundle", metavar="DIR",
                      help="an exported bundle (e.g. models/bundles/default) whose serving weights the first stage starts from; "
                           "its model_config replaces the config's architecture")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    ap.add_argument("--no-progress-bar", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.stage2.steps=10")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.devices not in ("auto",) and str(a.devices).isdigit():
        a.devices = int(a.devices)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = load_config(Path(a.config), a.set, data_root=a.data)
    bundle_manifest = None
    if a.init_bundle:
        from .frozen_shared import bundle_manifest as read_manifest, bundle_identity
        bundle_manifest = read_manifest(Path(a.init_bundle))
        cfg.model = bundle_model_config(cfg.model, bundle_manifest["model_config"])
        a.bundle_identity = bundle_identity(Path(a.init_bundle))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus = load_corpus(cfg.data)
    log(f"data: {corpus.summary()}")
    from .lm_assets import load_frozen_lm, generation_settings
    lm, tok = load_frozen_lm(cfg.lm.kind, Path(cfg.lm.cache_dir), seed=a.seed)
    gen = generation_settings(tok, lm, max_new_tokens=cfg.lm.max_new_tokens)
    tiny_te = None
    if cfg.model.text_dim != 384:  # tiny configs: a tiny random MiniLM-shaped encoder (tests only)
        from .textenc import tiny_random_encoder, load_tokenizer
        tiny_te = tiny_random_encoder(load_tokenizer().get_vocab_size(), dim=cfg.model.text_dim, seed=a.seed)
    tcfg = targets_config(cfg)
    stages = STAGES if a.stage == "all" else (a.stage,)
    if a.no_ssl:
        stages = tuple(s for s in stages if s != "ssl")
    ssl_corpus = corpus
    if "ssl" in stages and cfg.data.ssl_subjects:
        # self-supervised pretraining needs no captions: it takes every subject given, the captioning stages only `subjects`
        ssl_corpus = load_corpus(dataclasses.replace(cfg.data, subjects=cfg.data.ssl_subjects))
        missing = set(corpus.subjects) - set(ssl_corpus.subjects)
        if missing:
            raise ValueError(f"data.ssl_subjects lacks {sorted(missing)}, which the later stages train: add them to data.ssl_subjects.")
        log(f"ssl data: {ssl_corpus.summary()}")
    if bundle_manifest is not None:
        from .frozen_shared import check_bundle_subjects
        first = ssl_corpus if stages[0] == "ssl" else corpus
        check_bundle_subjects(Path(a.init_bundle), bundle_manifest, {s: d.voxels for s, d in first.subjects.items()})
    frac = cfg.data.labeled_fraction
    if frac != 1.0:
        from .data import labeled_subset
        corpus = labeled_subset(corpus, frac, seed=a.seed)  # ssl_corpus keeps every trial
        log(f"captioning stages: labeled_fraction {frac}: {corpus.summary()}")
    # masked brain modeling needs no frozen-encoder targets: an ssl-only run starts at once
    targets = build_targets_cached(corpus, tok, gen, tcfg, out, tiny_te) if stages != ("ssl",) else {}
    if targets and cfg.train.weights.align > 0:
        from .keywords import keyword_tokens
        targets["kw_tok"] = keyword_tokens(corpus.captions, tok, cfg.model.queries)
    if targets and targets.get("img_feat") is not None and cfg.model.image_feat_dim != targets["img_feat"].shape[1]:
        targets["img_feat"] = targets["img_feat"][:, :cfg.model.image_feat_dim]
    (out / "run.json").write_text(json.dumps({"config": cfg.to_dict(), "config_path": a.config, "seed": a.seed, "argv": sys.argv,
                                              "generation": gen, **({"init_bundle": a.bundle_identity} if a.init_bundle else {})},
                                             indent=2))
    for st in stages:
        prev = None
        i = STAGES.index(st)
        for j in range(i - 1, -1, -1):
            if (out / f"{STAGES[j]}.pt").exists() and not (a.no_ssl and STAGES[j] == "ssl"):
                prev = out / f"{STAGES[j]}.pt"
                break
        if a.init and st == stages[0]:
            prev = Path(a.init)
            if not prev.is_file():
                raise FileNotFoundError(f"--init {prev} is not a file; give a <stage>.pt written by this trainer (a bundle folder goes to --init-bundle).")
        if a.init_bundle and st == stages[0]:
            prev = Path(a.init_bundle)
        run_stage(st, cfg, ssl_corpus if st == "ssl" else corpus, targets, lm, gen, out, prev, a)
    log(f"train: all done in {time.time() - t0:.0f} s")
    return 0


# model_config keys a bundle fixes (the shapes of its weights and how they are wired); the others are training settings
# (dropout, masking) or belong to the training targets (image_feat_dim: the frozen image encoder's width) and stay the config's
BUNDLE_ARCHITECTURE = ("patch", "hidden", "dim", "tokens", "depth", "heads", "mlp_ratio", "dec_dim", "dec_depth", "queries",
                       "qformer_depth", "text_dim", "image_embed_dim", "lm_dim", "max_text_len", "image_size", "gen_channels")


def bundle_model_config(model: ModelConfig, bundle_mc: dict) -> ModelConfig:
    """The config's model section with the bundle's architecture (logged where they differ)."""
    changes = {}
    for k in BUNDLE_ARCHITECTURE:
        if k in bundle_mc and getattr(model, k) != bundle_mc[k]:
            log(f"init-bundle: model.{k} = {bundle_mc[k]} (the bundle's; the config has {getattr(model, k)})")
            changes[k] = bundle_mc[k]
    return dataclasses.replace(model, **changes)


def targets_config(cfg: TrainingConfig | dict) -> dict:
    """What the frozen-encoder targets depend on (a plain dict: a run's saved config, e.g. run.json's)."""
    if not isinstance(cfg, TrainingConfig):
        cfg = TrainingConfig.from_dict(cfg)
    return {"caption_max_tokens": cfg.lm.caption_max_tokens, "image_size": cfg.model.image_size, "text_dim": cfg.model.text_dim,
            "cache_dir": cfg.train.cache_dir, "embed_captions": cfg.train.embed_captions, "effnet_size": cfg.train.effnet_size}


def build_targets_cached(corpus, tok, gen, tcfg, out, tiny_te):
    from .targets import build_targets
    # under DDP, rank 0 builds the cache first; the others wait and read it
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cache = Path(tcfg.get("cache_dir") or out / "cache")
    if world > 1 and rank != 0:
        from .targets import corpus_key
        key = corpus_key(corpus, {"L": tcfg["caption_max_tokens"], "H": tcfg["image_size"], "tiny": tiny_te is not None, "E": tcfg["text_dim"],
                                  "K": tcfg.get("embed_captions"), "R": tcfg.get("effnet_size")})
        p = cache / f"targets-{key}.pt"
        for _ in range(600):
            if p.exists():
                time.sleep(0.5)
                return torch.load(p, weights_only=False)
            time.sleep(0.5)
    return build_targets(corpus, tok, gen["eos_token_ids"][0], tcfg, cache, tiny_te)


if __name__ == "__main__":
    sys.exit(main())
