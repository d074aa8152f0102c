"""The training-time model: `BrainCaptioner` (the networks a bundle serves) plus what only training needs — the image
side of the brain–image contrastive space, the contrastive temperatures, the frozen LM and the frozen-encoder targets —
with one method per loss. A step's losses come back as one `Losses` record by name, BLIP-2 style: the stage method
(`ssl_losses`, `caption_losses`) computes the named parts in a fixed order (the order of the random draws is part of
what makes a run reproducible) and their weighted sum. Optimisation and logging are train.py's `BrainLM`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .model import BrainCaptioner, ModelConfig
from .train_config import TrainSection


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


@dataclass
class Losses:
    """One step's losses by name; a part is None where the stage has no such loss (or its weight is 0 this step).
    `total` is their weighted sum, the one back-propagated."""
    total: torch.Tensor
    # masked brain modeling (ssl)
    mae: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    # stages 1 and 2, in the order they are computed
    itc_text: torch.Tensor | None = None
    emb: torch.Tensor | None = None
    itc_image: torch.Tensor | None = None
    itm: torch.Tensor | None = None
    itg: torch.Tensor | None = None
    align: torch.Tensor | None = None
    lm: torch.Tensor | None = None
    gen_mse: torch.Tensor | None = None

    def parts(self) -> dict[str, torch.Tensor]:
        """The computed parts (not `total`), by name."""
        return {f.name: v for f in fields(self) if f.name != "total" and (v := getattr(self, f.name)) is not None}


class TrainingModel(nn.Module):
    """BrainCaptioner + training-only heads, frozen LM and targets; one method per loss.

    targets: {cap_emb [S, K, E], cap_tok [S, K, L] (-1 padded), img_feat [S, F] | None, img [S, 3, H, W] | None,
    kw_tok [S, Q] (when weights.align > 0)} indexed by stimulus. lm: the frozen LM (kept out of the module tree: not
    checkpointed, not DDP-synced). gen: the generation settings (prefix / suffix ids of the prompt, eos ids)."""

    def __init__(self, mcfg: ModelConfig, train: TrainSection, stage: str, subjects: list[str], targets: dict, lm, gen: dict):
        super().__init__()
        self.train_cfg, self.stage, self.subjects, self.gen = train, stage, subjects, gen
        self.weights = train.weights
        # construction order = the order of the initialisers' random draws
        self.model = BrainCaptioner(mcfg)
        self.img_side = nn.Linear(mcfg.image_feat_dim, mcfg.image_embed_dim)
        self.scale_text = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.scale_img = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.t = targets
        self._lm = [lm]
        cap = targets.get("cap_tok")
        vocab = torch.unique(cap[cap >= 0]) if cap is not None else torch.zeros(0, dtype=torch.int64)
        self.vocab = vocab  # the Q-Former generation head scores only the caption vocabulary
        remap = torch.full((int(lm.s.vocab_size),), -1, dtype=torch.int64)
        remap[vocab] = torch.arange(len(vocab))
        self.remap = remap
        if "kw_tok" in targets:
            self.kw_vocab = torch.unique(torch.cat([targets["kw_tok"].reshape(-1), vocab]))
            kr = torch.full((int(lm.s.vocab_size),), 0, dtype=torch.int64)
            kr[self.kw_vocab] = torch.arange(len(self.kw_vocab))
            self.kw_remap = kr
        self.prefix_kv = None
        # stage 2 may keep the encoder fixed: no gradient through it, no dropout in it
        self.freeze_encoder = stage == "stage2" and train.stage2.freeze_encoder

    @property
    def lm(self):
        return self._lm[0]

    def prepare(self, device):
        """Targets, LM and vocabulary maps onto the device; stage 2 caches the prompt prefix's KV once."""
        self.t = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.t.items()}
        self._lm[0] = self.lm.to(device)
        self.vocab, self.remap = self.vocab.to(device), self.remap.to(device)
        if hasattr(self, "kw_vocab"):
            self.kw_vocab, self.kw_remap = self.kw_vocab.to(device), self.kw_remap.to(device)
        if self.stage == "stage2":
            ids = torch.tensor([self.gen["prefix_ids"]], device=device)
            with torch.no_grad():
                P = ids.shape[1]
                _, pres = self.lm.hidden(self.lm.embed_tokens(ids), torch.ones(1, P, dtype=torch.int64, device=device),
                                         torch.arange(P, device=device)[None], *[p.to(device) for p in self.lm.empty_past(1)])
            self.prefix_kv = pres

    def forward(self, batch: dict, step: int) -> Losses:
        """One single-subject batch (data.collate_single_subject) → this stage's losses. step: the optimiser step
        (stage 2 computes the LM loss every lm_every steps)."""
        sub = self.subjects[int(batch["subject_index"])]
        if self.stage == "ssl":
            return self.ssl_losses(sub, batch["voxels"], batch.get("target"), self.partner_groups(batch))
        return self.caption_losses(sub, batch["voxels"], batch["stim"], step)

    # ---- masked brain modeling --------------------------------------------------------------------------------------

    def partner_groups(self, batch):
        """The batch's cross-subject targets grouped by the other subject: [(subject, rows, voxels [n, V])]."""
        if "partner_subject" not in batch:
            return None
        ps = batch["partner_subject"]
        dev = batch["voxels"].device
        groups = []
        for k in sorted(set(ps.tolist()) - {-1}):
            rows = (ps == k).nonzero().squeeze(1)
            groups.append((self.subjects[k], rows, torch.stack([batch["partner_voxels"][int(r)] for r in rows]).to(dev)))
        return groups

    def ssl_losses(self, sub, x, target=None, partners=None) -> Losses:
        """Masked reconstruction (mae), and with partners the cross-subject reconstruction (cross, target cross) and
        contrast (contrast_weight > 0): BrainEncoder.masked_modeling."""
        sc = self.train_cfg.ssl
        cw = sc.contrast_weight
        out = self.model.encoder.masked_modeling(sub, x, target=target, norm_patches=sc.norm_patches, partners=partners,
                                                 decode_partners=sc.target == "cross", contrast_partners=cw > 0)
        total = out["mae"]
        if "cross" in out:
            total = total + sc.cross_weight * out["cross"]
        if "contrast" in out:
            total = total + cw * out["contrast"]
        return Losses(total=total, **out)

    # ---- stages 1 and 2 ---------------------------------------------------------------------------------------------

    def caption_losses(self, sub, x, stim, step: int) -> Losses:
        """Stage 1: itc_text, emb, itc_image, itm, itg, gen_mse; stage 2: itc_text, emb, itc_image, align, lm, gen_mse.
        Each loss is computed when its weight is > 0 (and its targets exist)."""
        W, t, B = self.weights, self.t, len(x)
        ke = torch.randint(0, t["cap_emb"].shape[1], (B,), device=x.device)  # embedded references
        k = torch.randint(0, t["cap_tok"].shape[1], (B,), device=x.device)   # all references (LM / ITG targets)
        if self.freeze_encoder:
            with torch.no_grad():
                bt = self.model.encoder(sub, x)
        else:
            bt = self.model.encoder(sub, x)
        qf = self.model.qformer
        q = qf.queries(bt)
        same = stim[:, None] == stim[None, :]
        txt = t["cap_emb"][stim, ke]
        ce = qf.caption_embedding(q)
        out = Losses(total=None)
        out.itc_text = self.itc_text_loss(ce, txt, same)
        total = W.itc_text * out.itc_text
        if W.emb > 0:
            out.emb = self.emb_loss(ce, stim)
            total = total + W.emb * out.emb
        if t.get("img_feat") is not None and W.itc_image > 0:
            out.itc_image = self.itc_image_loss(q, stim, same)
            total = total + W.itc_image * out.itc_image
        if self.stage == "stage2":
            k = self.lm_reference(stim, k)
        tok = t["cap_tok"][stim, k]                              # [B, L] with -1 padding
        if self.stage == "stage1":
            pad = tok < 0
            if W.itm > 0 and (~same).any():
                out.itm = self.itm_loss(bt, tok, pad, ce.detach(), txt, same)
                total = total + W.itm * out.itm
            if W.itg > 0:
                out.itg = self.itg_loss(bt, tok, pad)
                total = total + W.itg * out.itg
        if self.stage == "stage2":
            sc = self.train_cfg.stage2
            sp = qf.lm_proj(q)
            if W.align > 0 and "kw_tok" in t:
                out.align = self.align_loss(sp, t["kw_tok"][stim])
                total = total + W.align * out.align
            if W.lm > 0 and sc.lm_every > 0 and step % sc.lm_every == 0:
                nb = int(sc.lm_batch or B)
                out.lm = self.lm_loss(sp[:nb], tok[:nb])
                total = total + W.lm * out.lm
        if t.get("img") is not None and W.generator > 0:
            out.gen_mse = self.generator_loss(txt, bt, stim)
            total = total + W.generator * out.gen_mse
        out.total = total
        return out

    def lm_reference(self, stim, k):
        """Stage 2: which reference of each trial's stimulus the LM learns (k: the randomly drawn one)."""
        sc, t, B = self.train_cfg.stage2, self.t, len(stim)
        if sc.short_captions:
            # the LM loss (the expensive part on CPU) uses one of the n shortest references per stimulus
            lens = (t["cap_tok"][stim] >= 0).sum(-1)             # [B, K]
            short = lens.argsort(dim=1, stable=True)[:, :sc.short_captions]
            k = short[torch.arange(B, device=stim.device), torch.randint(0, short.shape[1], (B,), device=stim.device)]
        if sc.reference == "consensus":
            # the LM learns one caption per scene — the reference closest to the other four (MiniLM) — so that the soft
            # prompt has to carry content, not which of five phrasings was drawn; greedy decoding then aims at the consensus
            k = consensus_reference(t["cap_emb"][stim])
        return k

    def itc_text_loss(self, ce, txt, same):
        """Brain–text contrastive: caption embeddings against one reference embedding per trial."""
        return contrastive(ce, txt, same, self.scale_text.exp().clamp(max=100))

    def emb_loss(self, ce, stim):
        """Regression onto the mean reference embedding (the ridge baseline's target): steadies the contrastive space."""
        mean_txt = F.normalize(self.t["cap_emb"][stim].mean(1), dim=-1)
        return (1 - (ce * mean_txt).sum(-1)).mean()

    def itc_image_loss(self, q, stim, same):
        """Brain–image contrastive against the frozen image encoder's features (through the learned image side)."""
        ie = self.model.qformer.image_embedding(q)
        im = F.normalize(self.img_side(self.t["img_feat"][stim]), dim=-1)
        return contrastive(ie, im, same, self.scale_img.exp().clamp(max=100))

    def itm_loss(self, bt, tok, pad, ce, txt, same):
        """Brain–text matching: positives, plus one hard negative text per brain and one hard negative brain per text,
        drawn from the contrastive similarities (BLIP-2)."""
        qf = self.model.qformer
        B = bt.shape[0]
        temb = F.embedding(tok.clamp_min(0), self.lm.embed_tokens.weight)
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

    def itg_loss(self, bt, tok, pad):
        """Brain-grounded generation: the Q-Former's text stream predicts each caption token from the queries and the
        tokens before it (logits over the caption vocabulary)."""
        qf = self.model.qformer
        B = bt.shape[0]
        emb_table = self.lm.embed_tokens.weight
        start = torch.full((B, 1), self.gen["eos_token_ids"][0], dtype=torch.int64, device=bt.device)
        inp = torch.cat([start, tok[:, :-1].clamp_min(0)], 1)
        inpad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=bt.device), pad[:, :-1]], 1)
        _, th = qf.joint(bt, F.embedding(inp, emb_table), "gen", inpad)
        logits = qf.gen_out(th) @ emb_table[self.vocab].t()
        tgt = torch.where(pad, torch.full_like(tok, -1), self.remap[tok.clamp_min(0)])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-1)

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

    def generator_loss(self, txt, bt, stim):
        """The image generator draws the stimulus from the reference's text embedding and the (detached) brain tokens."""
        img = self.model.generator(txt, bt.detach())
        return F.mse_loss(img, self.t["img"][stim])

    # ---- weights ----------------------------------------------------------------------------------------------------

    def weights_state(self) -> dict:
        """The `weights` of a <stage>.pt (evaluate, export and the next stage read it)."""
        return {"model": self.model.state_dict(), "img_side": self.img_side.state_dict(),
                "scale_text": self.scale_text.detach().cpu(), "scale_img": self.scale_img.detach().cpu()}

    def load_weights_state(self, weights: dict) -> None:
        """A <stage>.pt's weights; adapters of subjects this model lacks (masked brain modeling may have seen more,
        data.ssl_subjects) stay behind."""
        own = set(self.model.encoder.adapters)
        state = {k: v for k, v in weights["model"].items()
                 if not (k.startswith("encoder.adapters.") and k.split(".")[2] not in own)}
        self.model.load_state_dict(state)
        self.img_side.load_state_dict(weights["img_side"])
        self.scale_text.data.copy_(weights["scale_text"])
        self.scale_img.data.copy_(weights["scale_img"])
