"""Image backbones of the features stage: VGG-19 fc7 (4096-d, as the papers) and ResNet-50 (2048-d pooled).

torchvision builds the networks when it is importable. Otherwise this module's own definitions are used;
they follow torchvision's architectures exactly (ResNet-50 is torchvision's "V1.5": the stride of a
down-sampling bottleneck sits on its 3x3 convolution) and use the same ``state_dict`` key names
(``features.0.weight``, ``classifier.3.weight``; ``layer1.0.conv1.weight``, ``fc.weight``), so a
torchvision checkpoint file loads into either with ``torch.load(..., weights_only=True)``.

Weights never come from the network: ``imagenet`` looks for torchvision's checkpoint in its cache
(``$TORCH_HOME/hub/checkpoints``, see :func:`imagenet_checkpoint`), a path loads that file, and
``random`` gives a seeded random initialisation (tests, smoke runs).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..store import sha256_file

log = logging.getLogger(__name__)

#: Output dimension of each backbone's feature layer.
FEATURE_DIMS = {"vgg19": 4096, "resnet50": 2048}
#: What the feature vector is, for the provenance attributes.
FEATURE_LAYERS = {
    "vgg19": "fc7 after ReLU (classifier.4 in torchvision's VGG)",
    "resnet50": "global average pool before fc (2048-d)",
}
#: torchvision's ImageNet checkpoint file names (the cache keeps the download URL's basename), in order of
#: preference: ResNet-50 IMAGENET1K_V1 was trained with the 256/224 preprocessing used here.
IMAGENET_FILES = {
    "vgg19": ("vgg19-dcbb9e9d.pth",),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# 16 3x3 convolutions in five blocks, each block closed by a 2x2 max pool (configuration "E").
_VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)


class WeightsError(ValueError):
    """A weight file is missing or does not fit the architecture; the message names the file and the fix."""


# ------------------------------------------------------------------------------------------ architectures
class VGG19(nn.Module):
    """VGG-19 (no batch norm) with torchvision's module layout: ``features``, ``avgpool``, ``classifier``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )
        # torchvision's initialisation, so a random backbone has the activation scale of theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 with the stride -> 1x1, expansion 4), torchvision's key names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    """ResNet-50 with torchvision's module names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
            stride = 1 if i == 0 else 2
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(inplanes, planes, stride if b == 0 else 1))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled_resnet(self, x))


def pooled_resnet(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 2048-d global-average-pooled activations of a ResNet-50 (ours or torchvision's)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def fc7_vgg(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 4096-d fc7 activations (after ReLU, dropout inactive in eval mode) of a VGG-19."""
    x = torch.flatten(model.avgpool(model.features(x)), 1)
    return model.classifier[:5](x)


_FEATURES: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "vgg19": fc7_vgg,
    "resnet50": pooled_resnet,
}


# ----------------------------------------------------------------------------------------------- weights
def _check_backbone(name: str) -> None:
    if name not in FEATURE_DIMS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(FEATURE_DIMS)}")


def build_architecture(name: str, seed: int = 0, prefer_torchvision: bool = True) -> tuple[nn.Module, str]:
    """Randomly initialised ``name`` network (seeded; the global RNG is left untouched) and who built it.

    Returns ``(model, "torchvision")`` when torchvision is importable and ``prefer_torchvision``, else
    ``(model, "cmhash")`` from this module's definitions (same architecture and key names).
    """
    _check_backbone(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if prefer_torchvision:
            try:
                from torchvision import models as tv_models  # optional: not installable everywhere
            except ImportError:
                pass
            else:
                return getattr(tv_models, name)(weights=None), "torchvision"
        return (VGG19() if name == "vgg19" else ResNet50()), "cmhash"


def imagenet_checkpoint(name: str) -> Path:
    """torchvision's cached ImageNet checkpoint of ``name``; :class:`WeightsError` (with the fix) if absent.

    The cache is ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints``), where torchvision stores a download.
    """
    _check_backbone(name)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for file_name in IMAGENET_FILES[name]:
        if (folder / file_name).is_file():
            return folder / file_name
    wanted = folder / IMAGENET_FILES[name][0]
    raise WeightsError(
        f"weights 'imagenet' for {name}: {wanted} not found (torchvision's cache; nothing is downloaded here). "
        f"Copy torchvision's checkpoint there (on a machine with internet: python -c \"import torchvision; "
        f"torchvision.models.{name}(weights='IMAGENET1K_V1')\" fills that cache; or download "
        f"https://download.pytorch.org/models/{IMAGENET_FILES[name][0]}), or set the dataset's folder.weights "
        "to the path of a .pth file."
    )


def load_state_dict_file(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a torchvision-format ``state_dict`` file into ``model``; errors name the file and the keys."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; set folder.weights to an existing .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable torch state_dict file ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint {"state_dict": ..., ...}
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict (dict of tensors), found {type(state).__name__}")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path} does not fit torchvision's {name}: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}, {len(wrong)} shape mismatch(es) {wrong[:3]}. "
            f"Use a checkpoint of torchvision.models.{name} (e.g. {IMAGENET_FILES[name][0]})."
        )
    model.load_state_dict(state)


def load_backbone(name: str, weights: str, seed: int = 0) -> tuple[nn.Module, dict[str, str]]:
    """``name`` in eval mode with ``weights`` (``imagenet`` | ``random`` | a file path) and its provenance."""
    _check_backbone(name)
    path = None
    if weights != "random":
        # Find the file before building the network, so a missing file fails at once.
        path = imagenet_checkpoint(name) if weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} not found; set folder.weights to an existing .pth file")
    model, built_by = build_architecture(name, seed)
    info = {"backbone": name, "built_by": built_by, "layer": FEATURE_LAYERS[name]}
    if path is None:
        info["weights"] = f"random initialisation (seed {int(seed)})"
    else:
        load_state_dict_file(model, path, name)
        info.update(weights=str(path), weights_sha256=sha256_file(path))
    return model.eval(), info


# --------------------------------------------------------------------------------------------- images
def preprocess_image(path: str | os.PathLike, crop: int = 224) -> np.ndarray:
    """ImageNet evaluation preprocessing with Pillow: ``3 x crop x crop`` float32, normalised.

    The shorter side is resized (bilinear, antialiased) to ``crop * 256 / 224`` (256 for the standard
    224 crop), then the centre ``crop x crop`` is cut out, scaled to [0, 1] and normalised with the
    ImageNet mean and std — torchvision's ``Resize(256), CenterCrop(224), ToTensor(), Normalize``.
    """
    from PIL import Image  # imported here: only the features stage needs Pillow

    resize = round(crop * 256 / 224)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's errors for missing/corrupt files
        raise ValueError(f"{path}: cannot read the image ({exc}); replace or remove this file") from None
    w, h = img.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    if size != (w, h):
        img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = round((w - crop) / 2.0), round((h - crop) / 2.0)
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class Progress:
    """A one-line progress bar on an interactive terminal, otherwise a log line about every 10%."""

    def __init__(self, total: int, what: str, stream=None) -> None:
        self.total, self.what, self.done = max(int(total), 1), what, 0
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._next_log = 0.1

    def update(self, n: int) -> None:
        self.done += int(n)
        frac = self.done / self.total
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        if self.interactive:
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r{self.what} [{bar:<30}] {self.done}/{self.total} ({rate:.1f}/s)")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif frac >= self._next_log or self.done >= self.total:
            log.info("%s: %d/%d (%.0f%%, %.1f/s)", self.what, self.done, self.total, 100 * frac, rate)
            self._next_log = np.floor(frac * 10 + 1) / 10


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class ImageFeatures:
    """Features of a list of image files (row i = file i) and how they were made."""

    features: np.ndarray
    info: dict[str, str | int]


@torch.no_grad()
def extract_image_features(
    paths: Sequence[str | os.PathLike],
    backbone: str = "vgg19",
    weights: str = "imagenet",
    *,
    image_size: int = 224,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    threads: int = 1,
    seed: int = 0,
) -> ImageFeatures:
    """Run the images through ``backbone`` in batches: float32 ``len(paths) x FEATURE_DIMS[backbone]``.

    Images are decoded and preprocessed (:func:`preprocess_image`) by ``threads`` threads while the
    network runs on ``device``; every file is read once even if it appears several times in ``paths``.
    """
    if int(image_size) < 32:
        raise ValueError(f"image_size must be >= 32 (VGG's five 2x2 pools need it), got {image_size}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    model, info = load_backbone(backbone, weights, seed)
    model.to(device)
    head = _FEATURES[backbone]
    unique = list(dict.fromkeys(str(p) for p in paths))
    out = np.empty((len(unique), FEATURE_DIMS[backbone]), dtype=np.float32)
    progress = Progress(len(unique), f"{backbone} features")
    log.info("%s (%s, %s) on %s: %d image(s), batch %d", backbone, info["built_by"], info["weights"], device,
             len(unique), batch_size)
    row = 0
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:

        def submit(batch: Sequence[str]) -> list:
            return [pool.submit(preprocess_image, p, int(image_size)) for p in batch]

        batches = _batches(unique, int(batch_size))
        pending = submit(next(batches)) if unique else None
        while pending is not None:
            x = np.stack([f.result() for f in pending])
            nxt = next(batches, None)
            # Decode the next batch while the network works on this one.
            pending = submit(nxt) if nxt is not None else None
            y = head(model, torch.from_numpy(x).to(device))
            out[row : row + len(x)] = y.float().cpu().numpy()
            row += len(x)
            progress.update(len(x))
    index = {p: i for i, p in enumerate(unique)}
    info.update(image_size=int(image_size), preprocessing=f"resize {round(image_size * 256 / 224)}, "
                f"center crop {int(image_size)}, ImageNet mean/std")
    return ImageFeatures(features=out[[index[str(p)] for p in paths]], info=info)
