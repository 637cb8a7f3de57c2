"""model/rules.py: the rules baseline, also the job's degraded-mode scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.features import CHANNELS, N_CHANNELS
from core.schemas import SCENARIOS
from model.rules import RULE_CHANNELS, RULES, THRESHOLD, Rules

T = 12


def fitted(seed: int = 0) -> tuple[Rules, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = rng.normal(0, 1, (500, T, N_CHANNELS)).astype(np.float32)
    rules = Rules()
    rules.fit_normal(normal)
    return rules, normal


def test_round_trip_and_scale(tmp_path):
    rules, normal = fitted()
    again = Rules.load(rules.save(tmp_path).parent)  # an artifact folder holding rules.json
    assert np.array_equal(again.score(normal), rules.score(normal))
    assert again.version() == rules.version() and rules.version().startswith("rules-")
    scores = rules.score(normal)
    # each rule is scaled to 1 at its 99.9 % quantile of these 500 windows, so each passes
    # it on ~1 of them: the max of 8 rules on at most ~8 (plus quantile interpolation)
    assert 0 < np.sum(scores > THRESHOLD) <= 2 * len(RULES)


def test_a_triggered_rule_leads_the_scenario_and_names_its_channels():
    rules, normal = fitted()
    x = normal[:3].copy()
    x[1, :, CHANNELS.index("self_cross_share")] += 50.0  # an obvious wash trade
    probs, z = rules.scenario_probs(x), rules.channel_scores(x)
    assert np.allclose(probs.sum(1), 1.0)
    assert SCENARIOS[int(np.argmax(probs[1]))] == "wash_trade"
    assert int(np.argmax(z[1])) == CHANNELS.index("self_cross_share") and z[1].max() > THRESHOLD
    untriggered = rules.score(x) <= THRESHOLD
    assert np.all(probs[untriggered, SCENARIOS.index("normal")] == 1.0)
    assert set(RULE_CHANNELS) == set(RULES)


def test_missing_or_foreign_calibration_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="darkpool train"):
        Rules.load(tmp_path)
    rules, _ = fitted()
    d = rules.to_dict()
    d["channels"] = d["channels"][:-1]
    (tmp_path / "rules.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="retrain"):
        Rules.load(tmp_path)
