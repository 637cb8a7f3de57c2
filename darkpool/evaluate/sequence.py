"""Deep sequence baselines: an LSTM and a temporal 1-D CNN, one small training loop.

Same inputs as the transformer (raw [N, T, F] windows, standardized with statistics
fitted on the training windows only), same loss family (BCE with a positive-class
weight for the imbalance), early stopping on validation PR-AUC, a wall-clock budget.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from model.windows import WindowSet, fit_normalization


@dataclass(frozen=True)
class SeqConfig:
    hidden: int = 64  # LSTM hidden size / CNN channels
    epochs: int = 8  # upper bound on passes over the training windows
    max_seconds: float = 300.0  # wall-clock budget per model (best model kept)
    batch_size: int = 256
    lr: float = 2e-3
    patience: int = 2  # epochs without a better validation PR-AUC before stopping
    seed: int = 0


class LSTMNet(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, F] -> [B]
        h, _ = self.lstm(x)
        return self.head(torch.cat([h[:, -1], h.mean(1)], dim=1)).squeeze(1)


class CNNNet(nn.Module):
    """Two dilated temporal convolutions, then max + mean pooling over time."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.c1 = nn.Conv1d(n_in, hidden, kernel_size=3, padding=1)
        self.c2 = nn.Conv1d(hidden, hidden, kernel_size=3, padding=2, dilation=2)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, F] -> [B]
        h = F.relu(self.c2(F.relu(self.c1(x.transpose(1, 2)))))  # [B, C, T]
        return self.head(torch.cat([h.amax(2), h.mean(2)], dim=1)).squeeze(1)


NETS = {"lstm": LSTMNet, "cnn": CNNNet}


@dataclass
class SequenceDetector:
    name: str  # "lstm" or "cnn"
    cfg: SeqConfig = SeqConfig()

    def _norm(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x - self.mean) / self.std)

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        torch.manual_seed(self.cfg.seed)
        rng = np.random.default_rng(self.cfg.seed)
        self.mean, self.std = fit_normalization(train.x)  # training windows only
        self.net = NETS[self.name](train.x.shape[2], self.cfg.hidden)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=0.01)
        n_pos = int(train.y.sum())
        pos_weight = torch.tensor(min((len(train) - n_pos) / max(n_pos, 1), 100.0))
        xt, yt = self._norm(train.x), torch.from_numpy(train.y.astype(np.float32))
        best, best_state, bad, t0 = -1.0, None, 0, time.time()
        steps = int(np.ceil(len(train) / self.cfg.batch_size))
        for epoch in range(self.cfg.epochs):
            self.net.train()
            perm = torch.from_numpy(rng.permutation(len(train)))
            for b in tqdm(range(steps), desc=f"{self.name} epoch {epoch + 1}", unit="step", mininterval=2.0, leave=False):
                bi = perm[b * self.cfg.batch_size : (b + 1) * self.cfg.batch_size]
                loss = F.binary_cross_entropy_with_logits(self.net(xt[bi]), yt[bi], pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if time.time() - t0 > self.cfg.max_seconds:
                    break  # budget spent mid-epoch: validate what we have, then stop
            ap = float(average_precision_score(val.y, self.score(val.x))) if 0 < val.y.sum() < len(val) else -loss.item()
            if ap > best + 1e-4:
                best, best_state, bad = ap, copy.deepcopy(self.net.state_dict()), 0
            else:
                bad += 1
            if bad >= self.cfg.patience or time.time() - t0 > self.cfg.max_seconds:
                break
        self.net.load_state_dict(best_state)
        self.epochs_run, self.best_val_pr_auc = epoch + 1, best

    @torch.no_grad()
    def score(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        # the logit, not its sigmoid: float32 sigmoids saturate to ties at 1.0 and blur the ranking
        return np.concatenate([self.net(self._norm(x[s : s + 4096])).numpy()
                               for s in range(0, len(x), 4096)]) if len(x) else np.zeros(0, np.float32)
