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

from .model import ModelConfig
from .objectives import TrainingModel, consensus_reference, contrastive  # noqa: F401 (contrastive, consensus_reference: imported from here)
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


# ---- Lightning module ---------------------------------------------------------------------------------------------

def _lightning():
    import lightning as L
    return L


# a Lightning checkpoint written before the losses moved into TrainingModel (net.*) names these at the top
_LEGACY_KEYS = ("model.", "img_side.", "scale_text", "scale_img")


class BrainLM(_lightning().LightningModule):
    """Optimisation and logging of one stage: which parameters train and at what rate, the schedule, the log. The
    model and its losses are `self.net` (objectives.TrainingModel); the batches come from datamodule.TrialDataModule."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainSection, stage: str, subjects: list[str], targets: dict, lm, gen: dict):
        super().__init__()
        self.tcfg, self.stage = tcfg, stage
        self.net = TrainingModel(mcfg, tcfg, stage, subjects, targets, lm, gen)
        self.t0 = None
        encoder = self.net.model.encoder
        if stage == "ssl":  # only the encoder (and its MAE decoder) trains
            mine = {id(p) for p in encoder.parameters()}
            for p in self.parameters():
                if id(p) not in mine:
                    p.requires_grad_(False)
        if self.net.freeze_encoder:
            for p in encoder.parameters():
                p.requires_grad_(False)
        if stage != "ssl" and tcfg.stage(stage).readout_lr_mult == 0:
            self.freeze_readouts()
        self._register_load_state_dict_pre_hook(self._legacy_keys)

    @staticmethod
    def _legacy_keys(state_dict, prefix, *_):
        for k in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _LEGACY_KEYS))]:
            state_dict[prefix + "net." + k[len(prefix):]] = state_dict.pop(k)

    def on_fit_start(self):
        self.net.prepare(self.device)
        self.t0 = time.time()

    def on_train_epoch_start(self):
        if self.net.freeze_encoder:
            self.net.model.encoder.eval()  # frozen: no dropout either

    def freeze_readouts(self):
        """Masked brain modeling leaves the subject read-outs as they are (ssl.readout=pca fitted them already)."""
        for a in self.net.model.encoder.adapters.values():
            a.read.requires_grad_(False)

    def trainable(self):
        if self.stage == "ssl":
            return [p for p in self.net.model.encoder.parameters() if p.requires_grad]
        return [p for n, p in self.named_parameters()]

    def configure_optimizers(self):
        tc = self.tcfg.stage(self.stage)
        model = self.net.model
        enc = {id(p) for p in model.encoder.parameters()}
        if self.stage == "ssl":
            groups = [{"params": self.trainable(), "lr": tc.lr}]
        else:
            mult = tc.encoder_lr_mult
            rmult = mult if tc.readout_lr_mult is None else tc.readout_lr_mult  # the subject read-outs' own rate; 0: frozen in __init__
            rest = [p for p in self.parameters() if id(p) not in enc]
            encoder = list(model.encoder.parameters())
            read = []
            if rmult != mult:
                ids = {id(p) for a in model.encoder.adapters.values() for p in a.read.parameters()}
                read = [p for p in encoder if id(p) in ids] if rmult > 0 else []
                encoder = [p for p in encoder if id(p) not in ids]
            # encoder first, as checkpoints written before readout_lr_mult existed expect when resumed
            groups = [{"params": encoder, "lr": tc.lr * mult}, {"params": rest, "lr": tc.lr}]
            groups += [{"params": read, "lr": tc.lr * rmult}] if read else []
            if self.net.freeze_encoder:
                groups = [groups[1]]
        opt = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
        steps, warm = tc.steps, max(1, int(tc.steps * tc.warmup))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))) * 0.9 + 0.1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, _):
        losses = self.net(batch, self.global_step)
        n = len(batch["voxels"])
        parts = losses.parts()
        for k, v in parts.items():
            self.log(f"train/{k}", v.detach(), prog_bar=k in ("mae", "lm", "itc_text"), batch_size=n, sync_dist=False)
        self.log("train/loss", losses.total.detach(), prog_bar=True, batch_size=n)
        if self.global_rank == 0 and (self.global_step % self.tcfg.log_every == 0):
            shown = " ".join(f"{k}={float(v.detach()):.4f}" for k, v in parts.items())
            log(f"{self.stage} step {self.global_step}/{self.tcfg.stage(self.stage).steps} loss={float(losses.total.detach()):.4f} {shown} "
                f"({time.time() - self.t0:.0f} s)")
        return losses.total


# ---- driver -------------------------------------------------------------------------------------------------------

def model_config(cfg: TrainingConfig, corpus) -> ModelConfig:
    return dataclasses.replace(cfg.model, subjects={s: d.voxels for s, d in corpus.subjects.items()})


def run_stage(stage: str, cfg: TrainingConfig, corpus, targets, lm, gen, out: Path, init: Path | None, args) -> Path:
    L = _lightning()
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from .data import repeated_share
    from .datamodule import TrialDataModule
    tc = cfg.train
    L.seed_everything(args.seed + STAGES.index(stage), workers=True)
    mcfg = model_config(cfg, corpus)
    module = BrainLM(mcfg, tc, stage, list(corpus.subjects), targets, lm, gen)
    if init is not None and init.is_dir():
        # an exported bundle: its serving weights exactly (ONNX graphs / shared.safetensors), every other module — MAE
        # decoder, ITM / ITG heads, image projections, contrastive temperatures — at its fresh initialisation
        from .frozen_shared import load_bundle_weights, fresh_summary
        rep = load_bundle_weights(module.net.model, init)
        fresh = rep["fresh"] + [f"img_side.{k}" for k in module.net.img_side.state_dict()] + ["scale_text", "scale_img"]
        log(f"{stage}: initialised from the bundle {init} ({rep['loaded']} tensors: shared {rep['sources']['shared']}, read-outs "
            f"{', '.join(rep['sources']['adapters'])}, generator {rep['sources']['generator'] or 'none (fresh)'}); "
            f"not in the bundle, fresh: {fresh_summary(fresh)}")
    elif init is not None and init.exists():
        module.net.load_weights_state(torch.load(init, map_location="cpu", weights_only=False)["weights"])
        log(f"{stage}: initialised from {init}")
    if stage == "ssl" and tc.ssl.readout == "pca":
        for s, d in corpus.subjects.items():
            share = module.net.model.encoder.adapters[s].fit_principal(torch.from_numpy(d.train_x))
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
    bs = tc.stage(stage).batch_size
    data = TrialDataModule(corpus, tc.batch_size if bs is None else bs, seed=args.seed, repeat_targets=target == "repeats",
                           cross_targets=partners)
    if partners:
        n = data.partnered_trials()
        if n == 0:
            raise ValueError("train.ssl.target=cross and train.ssl.contrast_weight need training stimuli that more than one "
                             "subject saw, and these subjects share none: add subjects with data.ssl_subjects, or use "
                             "train.ssl.target=self with contrast_weight 0.")
        log(f"ssl: {n} of {len(data.dataset)} training trials have another subject's trial of the same stimulus")
    t0 = time.time()
    trainer.fit(module, datamodule=data, ckpt_path=args.resume if args.resume else None)
    final = out / f"{stage}.pt"
    if trainer.global_rank == 0:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        torch.save({"config": cfg.to_dict(), "model_config": mcfg.to_dict(), "stage": stage, "seed": args.seed, "steps": steps,
                    "weights": module.net.weights_state(), "metrics": metrics, "seconds": time.time() - t0,
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
