"""Training and held-out evaluation of the learned lung mask (``lungcad_preprocess.lung_net``).

Folds are fixed by design, not by results: the studies sorted by name, fold ``i`` holds out
every third one from ``i`` (six studies: three folds of two). Each fold model never sees its
held-out studies; it is scored on them: the share of each reference lesion inside the mask
(classical alone, and with the network's additions) and the lung volume it adds. The shipped
model is then trained on every study. Loss: weighted binary cross-entropy plus soft Dice;
AdamW, warm-up and cosine decay; checkpoints (CPU tensors) with resume.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from lungcad_inference.training.loop import bce_dice, warmup_cosine, write_checkpoint
from lungcad_inference.training.lung_mask_data import LowStudy, MassSampleConfig

log = logging.getLogger(__name__)
CHECKPOINT = "lung_mask_checkpoint.pt"


@dataclass(frozen=True)
class LungMaskTrainConfig:
    widths: tuple[int, ...] = (8, 16, 32, 64, 64)
    batch: int = 8
    iterations: int = 1500
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 100
    folds: int = 3
    sample: MassSampleConfig = field(default_factory=MassSampleConfig)

    def network_kwargs(self) -> dict[str, Any]:
        return {"slices": self.sample.slices, "widths": list(self.widths)}


def lr_at(step: int, config: LungMaskTrainConfig) -> float:
    return warmup_cosine(step, config.lr, config.warmup, config.iterations)


def train_lung_mask(studies: list[LowStudy], config: LungMaskTrainConfig, out_dir: Path,
                    progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train on ``studies`` (on the network's 4 mm grid: ``lung_mask_data.coarsen``); resumes
    from ``out_dir``'s checkpoint when there is one."""
    import torch
    from tqdm import tqdm

    from lungcad_inference.training.lung_mask_data import draw_sample
    from lungcad_preprocess.lung_net import build_network, normalise

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast = torch.channels_last
    model = build_network(**config.network_kwargs()).to(memory_format=fast)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"loss": []}
    start = 0
    ckpt = out_dir / CHECKPOINT
    if ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        start, history = int(blob["step"]), blob["history"]
        rng.bit_generator.state = blob["rng"]
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(start, config.iterations), desc="lung mask", disable=not progress,
               mininterval=10, initial=start, total=config.iterations)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, config)
        drawn = [draw_sample(rng, studies[int(rng.integers(len(studies)))], config.sample)
                 for _ in range(config.batch)]
        x = torch.from_numpy(normalise(np.stack([d[0] for d in drawn]))).to(memory_format=fast)
        t = torch.from_numpy(np.stack([d[1] for d in drawn]))
        w = torch.from_numpy(np.stack([d[2] for d in drawn]))
        loss = bce_dice(model(x), t, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        history["loss"].append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-50:]):.3f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.iterations:
            write_checkpoint(ckpt, model, opt, step + 1, history=history,
                             rng=rng.bit_generator.state)
    model.eval()
    summary = {"wall_s_this_run": round(time.perf_counter() - t0, 1),
               "final_loss": float(np.mean(history["loss"][-100:])) if history["loss"] else None,
               "studies": [s.name for s in studies]}
    (out_dir / "lung_mask_history.json").write_text(json.dumps(
        {"summary": summary, "history": history}, default=str))
    _plot_loss(history["loss"], out_dir / "lung_mask_loss.png")
    return model, summary


def _plot_loss(loss: list[float], path: Path) -> None:
    from lungcad_inference.plots import _pyplot

    if not loss:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    ax.plot(loss, alpha=0.3, label="batch")
    ax.plot(np.arange(len(smooth)) + k - 1, smooth, label=f"mean of {k}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted BCE + (1 - Dice)")
    ax.set_title("learned lung mask: training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def score_study(model: Any, study: LowStudy) -> dict[str, Any]:
    """Held-out figures on one study: each reference lesion's share inside the classical mask
    and inside the refined one, the lung volume added, and the network's time."""
    from lungcad_preprocess.lung_net import add_masses, predict_probability

    t = time.perf_counter()
    prob = predict_probability(model, study.hu.astype(np.float32))
    seconds = time.perf_counter() - t
    refined, info = add_masses(study.lungs, study.hu, prob, study.body)
    voxel_ml = float(np.prod(study.geometry.spacing)) / 1000
    comps, n = ndi.label(study.lesions)
    lesions = []
    for i in range(1, n + 1):
        m = comps == i
        size = float(m.sum())
        lesions.append({"volume_ml": round(size * voxel_ml, 2),
                        "inside_classical": round(float((m & (study.lungs > 0)).sum()) / size, 3),
                        "inside_refined": round(float((m & (refined > 0)).sum()) / size, 3)})
    classical_ml = float((study.lungs > 0).sum()) * voxel_ml
    return {"study": study.name, "lesions": lesions, "classical_ml": round(classical_ml, 1),
            "added_ml": round(float(info["added_voxels"]) * voxel_ml, 1),
            "added_percent": round(100 * info["added_voxels"] * voxel_ml / classical_ml, 2),
            "refused": info["refused"], "network_s": round(seconds, 2)}


def fold_of(names: list[str], folds: int) -> dict[str, int]:
    """Fold of each study: sorted by name, fold ``i`` = every ``folds``-th from ``i``."""
    return {name: i % folds for i, name in enumerate(sorted(names))}


def run_lung_mask(studies: list[LowStudy], config: LungMaskTrainConfig, out_dir: Path, *,
                  cv: bool = True, progress: bool = True) -> dict[str, Any]:
    """Held-out folds (when ``cv``), then the model trained on every study (``final/``)."""
    from lungcad_inference.training.lung_mask_data import coarsen

    out_dir.mkdir(parents=True, exist_ok=True)
    coarse = {s.name: coarsen(s) for s in studies}
    folds = fold_of([s.name for s in studies], config.folds)
    scores: list[dict[str, Any]] = []
    if cv:
        for f in range(config.folds):
            held = [s for s in studies if folds[s.name] == f]
            train = [coarse[s.name] for s in studies if folds[s.name] != f]
            model, _ = train_lung_mask(train, config, out_dir / f"fold{f}", progress)
            for s in held:
                scores.append({"fold": f, **score_study(model, s)})
                log.info("lung mask fold scored", extra=scores[-1])
            (out_dir / "cv_scores.json").write_text(json.dumps(scores, indent=2))
    model, summary = train_lung_mask(list(coarse.values()), config, out_dir / "final",
                                     progress)
    in_sample = [score_study(model, s) for s in studies]
    result = {"config": asdict(config), "folds": folds, "cv": scores,
              "final": summary, "final_in_sample": in_sample}
    (out_dir / "lung_mask_summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def ship_lung_mask(out_dir: Path, result: dict[str, Any], fold: int | None = None,
                   weights_dir: Path | None = None) -> Path:
    """Write ``out_dir``'s final model as the package's lung-mask weights, or with ``fold`` that
    fold's model as ``lung_mask_fold<k>.pt`` (for held-out tests); each with a sidecar of the
    config, the training studies as short hashes and the held-out fold figures."""
    import hashlib

    import torch

    from lungcad_preprocess import lung_net

    weights_dir = weights_dir or lung_net.WEIGHTS.parent
    source = out_dir / ("final" if fold is None else f"fold{fold}") / CHECKPOINT
    dest = weights_dir / ("lung_mask.pt" if fold is None else f"lung_mask_fold{fold}.pt")
    studies = (result["final"]["studies"] if fold is None else
               [name for name, f in result["folds"].items() if f != fold])
    blob = torch.load(source, map_location="cpu", weights_only=False)
    config = result["config"]
    network = {"slices": config["sample"]["slices"], "widths": list(config["widths"])}
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": blob["state_dict"], "network": network}, dest)
    sidecar = {
        "model": "lung_mask", "version": time.strftime("%Y-%m-%d"),
        "input_spacing_mm": 2.0, "network_grid_mm": 4.0,
        "hu_window": [lung_net.HU_LOW, lung_net.HU_HIGH],
        "target": "classical lung labels plus reference lesions and pasted masses",
        "fold": fold, "fold_rule": "studies sorted by name, fold = index modulo folds",
        "training_studies_sha1": sorted(hashlib.sha1(s.encode()).hexdigest()[:10]
                                        for s in studies),
        "config": config, "held_out_folds": result["cv"],
    }
    dest.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return dest
