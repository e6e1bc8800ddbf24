"""Malignancy training and patient-level cross-validation on real nodule VOIs, with a size-only
baseline (logistic regression on the log of the nodule's own segmented diameter) fitted in the
same folds."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.nodule_size import size_features
from lungcad_inference.training.malignancy_data import MalignancySet, augment_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MalignancyTrainConfig:
    channels: tuple[int, int, int] = (12, 24, 48)
    dropout: float = 0.3
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    folds: int = 5
    seed: int = 0
    threads: int = 2
    use_size: bool = True
    device: str = "cpu"  # "cpu" or "cuda" (resolved by the CLI from --device)
    amp: bool = False  # float16 autocast + GradScaler, CUDA only

    def network_kwargs(self) -> dict[str, Any]:
        return {"spatial_dims": 3, "in_channels": 1, "out_channels": 1,
                "channels": list(self.channels), "n_features": 1 if self.use_size else 0,
                "dropout": self.dropout}


CONFIGS = {
    "small": MalignancyTrainConfig(),
    "large": MalignancyTrainConfig(channels=(32, 64, 128), epochs=80, batch=64, threads=8),
}


def _features(data: MalignancySet) -> np.ndarray:
    return np.stack([size_features(d) for d in data.seg_diameter_mm])


def train_malignancy(data: MalignancySet, config: MalignancyTrainConfig,
                     progress: bool = True) -> Any:
    """Train :class:`MalignancyNet` on ``data`` (labels 0/1) on ``config.device``; returns it
    in eval mode, on that device. Batches are augmented on the CPU, then moved."""
    import torch
    from tqdm import tqdm

    from lungcad_inference.networks import MalignancyNet
    from lungcad_inference.training.device import amp_enabled, autocast, grad_scaler

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    dev = config.device
    fast = torch.channels_last_3d  # the same arithmetic, faster 3-D convolutions on the CPU
    model = MalignancyNet(**config.network_kwargs()).to(dev, memory_format=fast)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data.labels)
    steps = config.epochs * int(np.ceil(n / config.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                pct_start=0.15)
    feats = torch.from_numpy(_features(data))
    y = torch.from_numpy(data.labels.astype(np.float32))
    pos_weight = torch.tensor(float((y == 0).sum()) / max(1.0, float((y == 1).sum())))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight).to(dev)
    amp = amp_enabled(dev, config.amp)
    scaler = grad_scaler(amp)
    model.train()
    bar = tqdm(range(config.epochs), desc="malignancy", disable=not progress, mininterval=5)
    for _ in bar:
        order = rng.permutation(n)
        losses = []
        for b in range(0, n, config.batch):
            idx = order[b:b + config.batch]
            x = torch.from_numpy(augment_batch(rng, data.images[idx], True)[:, None]).to(
                dev, memory_format=fast)
            f = feats[idx].to(dev) if config.use_size else None
            with autocast(dev, amp):
                logit = model(x, f)[:, 0]
            loss = loss_fn(logit.float(), y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses):.3f}")
    return model.eval()


def predict_malignancy(model: Any, data: MalignancySet, use_size: bool = True) -> np.ndarray:
    """Malignancy probabilities of ``data``, computed on the model's device."""
    import torch

    from lungcad_inference.training.device import module_device

    dev = module_device(model)
    rng = np.random.default_rng(0)
    probs = []
    with torch.inference_mode():
        for b in range(0, len(data.labels), 64):
            sl = slice(b, b + 64)
            x = torch.from_numpy(augment_batch(rng, data.images[sl], False)[:, None]).to(dev)
            f = torch.from_numpy(_features(data.subset(np.arange(len(data.labels))[sl]))).to(dev)
            logit = model(x, f if use_size else None)[:, 0]
            probs.append(torch.sigmoid(logit.float()).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros(0)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50
                 ) -> np.ndarray:
    """Newton-Raphson logistic regression; ``x`` (n, k) -> weights (k + 1,) with intercept."""
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-a @ w))
        g = a.T @ (p - y) + l2 * w
        h = (a * (p * (1 - p))[:, None]).T @ a + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return w


def predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.column_stack([np.ones(len(x)), x]) @ w))


def cross_validate(data: MalignancySet, folds: np.ndarray, config: MalignancyTrainConfig,
                   progress: bool = True, models: list[Any] | None = None
                   ) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities: ``cnn`` (image + size), and size-only logistic baselines on
    the own-segmentation, VOI-mask and readers' diameters. Fold models are appended to
    ``models`` when given."""
    out = {k: np.zeros(len(data.labels)) for k in ("cnn", "size_seg", "size_mask",
                                                     "size_readers")}
    t0 = time.perf_counter()
    for k in range(config.folds):
        tr, te = np.nonzero(folds != k)[0], np.nonzero(folds == k)[0]
        model = train_malignancy(data.subset(tr), config, progress)
        out["cnn"][te] = predict_malignancy(model, data.subset(te), config.use_size)
        if models is not None:
            models.append(model)
        for name, d in (("size_seg", data.seg_diameter_mm), ("size_mask", data.mask_diameter_mm),
                        ("size_readers", data.reader_diameter_mm)):
            x = np.log(np.maximum(d, 1.0))[:, None]
            w = fit_logistic(x[tr], data.labels[tr].astype(float))
            out[name][te] = predict_logistic(w, x[te])
        log.info("malignancy fold done", extra={"fold": k, "test": len(te),
                                                "elapsed_s": round(time.perf_counter() - t0)})
    return out


def config_dict(config: MalignancyTrainConfig) -> dict[str, Any]:
    return asdict(config)


def save_predictions(path: Path, data: MalignancySet, probs: np.ndarray) -> None:
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "nodule_id", "malignancy_probability", "label",
                    "segmented_diameter_mm"])
        for p, n, q, y, d in zip(data.patients, data.nodule_ids, probs, data.labels,
                                 data.seg_diameter_mm, strict=True):
            w.writerow([p, n, f"{q:.6f}", "" if y < 0 else int(y), f"{d:.2f}"])
