"""Training: labeled Parquet -> windows -> the transformer -> an artifact folder.

One visible loop. Loss = BCE(anomaly, pos_weight for the imbalance)
+ scenario_weight * CE(scenario) + recon_weight * MSE(reconstruction, normal windows
only). Validation PR-AUC of the combined score decides early stopping; the global
threshold is the (1 - target_fpr) quantile of the scores of normal validation windows.
Test metrics are computed once, at the end, with the chosen model and threshold.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from core.config import WindowConfig, check_geometry
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig
from model.artifact import load_artifact, save_artifact
from model.config import TrainConfig, preset
from model.rules import Rules
from model.transformer import ScoringModel, count_params, resolve_device, resolve_dtype
from model.windows import WindowSet, fit_normalization, load_windows, time_split


@torch.no_grad()
def predict(model: ScoringModel, x: np.ndarray, batch: int = 2048) -> dict[str, np.ndarray]:
    """Served outputs for raw windows x [N, T, F] (numpy in, numpy out)."""
    model.eval()
    dev = model.mean.device
    outs: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(x), batch):
        res = model(torch.from_numpy(x[s : s + batch]).to(dev))
        for k, v in res.items():
            outs.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


@torch.no_grad()
def calibrate(model: ScoringModel, x_normal: np.ndarray) -> None:
    """Fit the reconstruction-error statistics on normal (held-out) windows."""
    model.eval()
    dev = model.mean.device
    errs = []
    for s in range(0, len(x_normal), 2048):
        xb = model.normalize(torch.from_numpy(x_normal[s : s + 2048]).to(dev))
        _, _, recon = model.net(xb.to(next(model.net.parameters()).dtype))
        errs.append(model.errors(xb, recon).cpu())
    err = torch.cat(errs).double()  # [N, F]
    log_tot, log_ch = torch.log(err.mean(dim=1) + 1e-8), torch.log(err + 1e-8)
    model.recon_mu.fill_(log_tot.mean())
    model.recon_sd.fill_(log_tot.std().clamp_min(1e-3))
    model.chan_mu.copy_(log_ch.mean(dim=0))
    model.chan_sd.copy_(log_ch.std(dim=0).clamp_min(1e-3))


MIN_ABUSIVE_VAL = 30  # validation windows of known abuse the scenario calibration needs


def conditional_scenario_probs(probs: np.ndarray) -> np.ndarray:
    """[N, S] scenario_probs -> [N, S-1] P(scenario | abuse): the manipulation part renormalized.

    >>> conditional_scenario_probs(np.array([[0.5, 0.25, 0.25]])).tolist()
    [[0.5, 0.5]]
    """
    rest = probs[:, 1:]
    return rest / np.clip(rest.sum(axis=1, keepdims=True), 1e-12, None)


def fit_temperature(cond: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Temperature T minimizing the negative log-likelihood of the true scenario under
    softmax(log(cond) / T) (a grid over 0.2..5, then refined), and the NLL at 1 and at T.

    `cond`: [N, K] P(scenario | abuse) at temperature 1; `truth`: [N] indices into K.

    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(2000, 4)) * 3
    >>> truth = np.array([rng.choice(4, p=np.exp(r / 3) / np.exp(r / 3).sum()) for r in logits])
    >>> cond = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # overconfident by 3x
    >>> t, before, after = fit_temperature(cond, truth)
    >>> 2.5 < t < 3.6 and after < before
    True
    """
    logc = np.log(np.clip(cond, 1e-12, None))
    rows = np.arange(len(truth))

    def nll(t: float) -> float:
        z = logc / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, truth] - np.log(np.exp(z).sum(axis=1))).mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 33))
    best = min(grid, key=nll)
    fine = best * np.exp(np.linspace(-0.06, 0.06, 13))
    best = float(min(fine, key=nll))
    return best, nll(1.0), nll(best)


def calibrate_scenarios(model: ScoringModel, va: WindowSet) -> dict[str, Any]:
    """Temperature-scale the scenario head on the validation windows of known abuse, so
    that an alert's P(scenario | abuse) is a calibrated probability (the job names a
    scenario only above min_scenario_probability of it). Too few such windows: left at 1."""
    abusive = np.flatnonzero((va.y == 1) & (va.scenario > 0))
    if len(abusive) < MIN_ABUSIVE_VAL:
        model.scen_temperature.fill_(1.0)
        return {"scenario_temperature": 1.0, "scenario_calibration_windows": int(len(abusive))}
    model.scen_temperature.fill_(1.0)
    cond = conditional_scenario_probs(predict(model, va.x[abusive])["scenario_probs"])
    truth = va.scenario[abusive] - 1
    t, before, after = fit_temperature(cond, truth)
    model.scen_temperature.fill_(t)
    return {"scenario_temperature": round(t, 4), "scenario_calibration_windows": int(len(abusive)),
            "scenario_nll_before": round(before, 4), "scenario_nll_after": round(after, 4)}  # fmt: skip


def evaluate(model: ScoringModel, ws: WindowSet, threshold: float | None = None) -> dict[str, Any]:
    """PR-AUC / ROC-AUC of the combined score; at a threshold also precision, recall, FPR."""
    out = predict(model, ws.x)
    score, y = out["score"], ws.y.astype(int)
    m: dict[str, Any] = {"windows": len(y), "positives": int(y.sum())}
    if 0 < y.sum() < len(y):
        m["pr_auc"] = float(average_precision_score(y, score))
        m["roc_auc"] = float(roc_auc_score(y, score))
        m["pr_auc_supervised_head"] = float(average_precision_score(y, out["logit"]))
        m["pr_auc_recon_error"] = float(average_precision_score(y, out["recon_error"]))
    if threshold is not None:
        alert = score >= threshold
        tp, fp = int((alert & (y == 1)).sum()), int((alert & (y == 0)).sum())
        m["precision"] = tp / max(int(alert.sum()), 1)
        m["recall"] = tp / max(int(y.sum()), 1)
        m["fpr"] = fp / max(int((y == 0).sum()), 1)
        pred_scen = out["scenario_probs"][:, 1:].argmax(axis=1) + 1
        anom = y == 1
        m["scenario_accuracy"] = float((pred_scen[anom] == ws.scenario[anom]).mean()) if anom.any() else None
        # what an alert would say of the flagged abusive windows: a scenario named when
        # P(scenario | abuse) clears the job's default bar, and how often it is right
        hit = alert & anom
        if hit.any():
            conf = conditional_scenario_probs(out["scenario_probs"][hit]).max(axis=1)
            named = conf >= ThresholdConfig().min_scenario_probability
            m["scenario_named_share"] = float(named.mean())
            m["scenario_named_accuracy"] = (float((pred_scen[hit][named] == ws.scenario[hit][named]).mean())
                                            if named.any() else None)  # fmt: skip
        m["recall_by_scenario"] = {
            SCENARIOS[s]: float(alert[ws.scenario == s].mean()) for s in range(1, len(SCENARIOS))
            if (ws.scenario == s).any()
        }
    return m


def _sample_train(ws: WindowSet, idx: np.ndarray, tcfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Training window indices: optional undersampling of normals, then a size cap."""
    pos, neg = idx[ws.y[idx] == 1], idx[ws.y[idx] == 0]
    if tcfg.normal_keep < 1.0:
        neg = rng.choice(neg, size=max(1, int(len(neg) * tcfg.normal_keep)), replace=False)
    keep = np.concatenate([pos, neg])
    if len(keep) > tcfg.max_train_windows:
        keep = rng.choice(keep, size=tcfg.max_train_windows, replace=False)
    return np.sort(keep)


@torch.no_grad()
def _ema_update(ema: ScoringModel, model: ScoringModel, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, over the encoder's parameters."""
    for pe, p in zip(ema.net.parameters(), model.net.parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)


@dataclasses.dataclass
class Fitted:
    """A trained, calibrated model and what its training saw."""

    model: ScoringModel
    threshold: float  # (1 - target_fpr) quantile of normal validation scores
    best: dict[str, Any]  # validation metrics at the kept step (+ "step")
    steps: int  # optimizer steps run
    train_used: int  # training windows sampled (see _sample_train)


MIN_NORMAL_VAL = 20  # normal validation windows the calibration needs at least


def fit(tr: WindowSet, va: WindowSet, tcfg: TrainConfig, wcfg: WindowConfig | None = None,
        log=print, desc: str = "train") -> Fitted:
    """Train on the windows `tr`, early-stop and calibrate on `va`.

    Takes windows, not a path, so that callers with their own selection of windows
    (the evaluation harness's leave-one-scenario-out) train exactly what `darkpool
    train` trains.
    """
    wcfg = wcfg or WindowConfig()
    t0 = time.time()
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    try:
        device = resolve_device(tcfg.device)
    except RuntimeError as exc:  # cuda asked for where there is none: a bad setting, said as one
        raise ValueError(str(exc)) from None
    dtype = resolve_dtype(tcfg.dtype, device)
    if tr.y.sum() == 0 or va.y.sum() == 0:
        raise ValueError("training or validation windows contain no anomaly: generate data with episodes")
    if int((va.y == 0).sum()) < MIN_NORMAL_VAL:  # the threshold and score calibration need them
        raise ValueError(
            f"the validation part has {int((va.y == 0).sum())} normal windows (fewer than {MIN_NORMAL_VAL}) to "
            "calibrate the threshold on: use a longer history or fewer injected episodes (--rate)"
        )

    if tcfg.init_from:  # fine-tuning: the artifact's network, weights and input scaling
        start = load_artifact(tcfg.init_from)
        check_geometry(wcfg, start.window, str(tcfg.init_from))
        model = start.model.float()
        log(f"fine-tuning {tcfg.init_from} (version {start.version}); its normalization is kept")
    else:
        cfg = preset(tcfg.preset, n_buckets=wcfg.n_buckets, ignored_channels=tuple(tcfg.ignored_channels))
        model = ScoringModel(cfg)
        mean, std = fit_normalization(tr.x)  # training windows only
        model.mean.copy_(torch.from_numpy(mean))
        model.std.copy_(torch.from_numpy(std))
    model.to(device)
    model.net.to(dtype)
    log(f"model {tcfg.preset}: {count_params(model) / 1e6:.2f}M parameters on {device} {dtype}")

    idx = _sample_train(tr, np.arange(len(tr)), tcfg, rng)
    n_pos = int(tr.y[idx].sum())
    pos_weight = torch.tensor(min((len(idx) - n_pos) / max(n_pos, 1), 100.0), device=device)
    opt = torch.optim.AdamW(model.net.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps_per_epoch = math.ceil(len(idx) / tcfg.batch_size)
    total = steps_per_epoch * tcfg.max_epochs
    eval_every = max(1, steps_per_epoch // tcfg.evals_per_epoch)
    xt = torch.from_numpy(tr.x)
    yt, st = torch.from_numpy(tr.y.astype(np.float32)), torch.from_numpy(tr.scenario)
    val_normal = va.x[va.y == 0]

    # the model judged at each evaluation (and kept): the raw weights, or their moving average
    ema = copy.deepcopy(model) if tcfg.ema_decay else None
    # averaging horizon at most a tenth of the run: on a short run (tiny data, LOSO) a fixed
    # 0.995 (~200 steps) would average mostly the untrained start and stop early on it
    ema_decay = max(0.0, min(tcfg.ema_decay, 1.0 - 10.0 / total))
    judged = ema or model
    best: dict[str, Any] = {"pr_auc": -1.0}
    best_state, bad_evals, step = None, 0, 0
    stop = False
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=2.0)
    for _epoch in range(tcfg.max_epochs):
        perm = rng.permutation(idx)
        for b in range(steps_per_epoch):
            model.net.train()
            bi = torch.from_numpy(perm[b * tcfg.batch_size : (b + 1) * tcfg.batch_size])
            x = model.normalize(xt[bi].to(device))
            y, s = yt[bi].to(device), st[bi].to(device)
            logit, scen, recon = model.net(x.to(dtype))
            loss = F.binary_cross_entropy_with_logits(logit.float(), y, pos_weight=pos_weight)
            loss = loss + tcfg.scenario_weight * F.cross_entropy(scen.float(), s)
            normal = y == 0
            if normal.any():
                loss = loss + tcfg.recon_weight * (recon.float()[normal] - x[normal]).pow(2).mean()
            lr = tcfg.lr * min(1.0, (step + 1) / tcfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), 1.0)
            opt.step()
            if ema is not None:
                _ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
            step += 1
            bar.update(1)
            if step % eval_every == 0 or step == total:
                calibrate(judged, val_normal)
                m = evaluate(judged, va)
                bar.set_postfix(loss=f"{loss.item():.3f}", val_pr_auc=f"{m['pr_auc']:.3f}")
                if m["pr_auc"] > best["pr_auc"] + 1e-4:
                    best, best_state, bad_evals = {**m, "step": step}, copy.deepcopy(judged.state_dict()), 0
                else:
                    bad_evals += 1
                if bad_evals >= tcfg.patience:
                    stop = True
                elif time.time() - t0 > tcfg.max_minutes * 60:
                    log(f"time budget of {tcfg.max_minutes} min reached; keeping the best model")
                    stop = True
            if stop:
                break
        if stop:
            break
    bar.close()

    model.load_state_dict(best_state)
    calibrate(model, val_normal)
    best = {**best, **calibrate_scenarios(model, va)}
    val_scores = predict(model, val_normal)["score"]
    threshold = float(np.quantile(val_scores, 1 - tcfg.target_fpr))
    return Fitted(model, threshold, best, step, len(idx))


def train(data: Path, out: Path, tcfg: TrainConfig, wcfg: WindowConfig | None = None,
          log=print) -> dict[str, Any]:
    """Train on `data` (events.parquet), write the artifact to `out`; returns metrics."""
    wcfg = wcfg or WindowConfig()
    t0 = time.time()
    ws = load_windows(data, wcfg.n_buckets, wcfg.slide_ns)
    split = time_split(ws.end_pane, wcfg.n_buckets, tcfg.val_frac, tcfg.test_frac)
    tr, va, te = ws.subset(split.train), ws.subset(split.val), ws.subset(split.test)
    log(f"windows: {ws.summary()} in {time.time() - t0:.1f}s; train {len(tr)} val {len(va)} test {len(te)}")
    f = fit(tr, va, tcfg, wcfg, log)
    model, threshold = f.model, f.threshold
    metrics = {
        "preset": tcfg.preset,
        "best_step": f.best["step"],
        "steps": f.steps,
        "train_seconds": round(time.time() - t0, 1),
        "windows": {"train": tr.summary(), "train_used": f.train_used, "val": va.summary(), "test": te.summary()},
        "val": evaluate(model, va, threshold),
        "test": evaluate(model, te, threshold),
        "threshold": threshold,
        "scenario_calibration": {k: v for k, v in f.best.items() if k.startswith("scenario_")},
    }
    version = save_artifact(out, model, threshold, tcfg.target_fpr, metrics, {
        "train": dataclasses.asdict(tcfg),
        "window": {"size_s": wcfg.size_s, "slide_s": wcfg.slide_s, "n_buckets": wcfg.n_buckets},
    })
    metrics["version"] = version
    # The job's degraded mode (scorer down) scores with these rules: same normal windows.
    rules = Rules()
    rules.fit(tr, va)
    rules.save(out)
    log(f"artifact {out} version {version}: val PR-AUC {metrics['val'].get('pr_auc', float('nan')):.3f} "
        f"test PR-AUC {metrics['test'].get('pr_auc', float('nan')):.3f} threshold {threshold:.4f}")
    return metrics
