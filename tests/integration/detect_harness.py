"""The real detection job for tests, plus a tap on its scored windows.

    python tests/integration/detect_harness.py [job flags] --scored-topic T

Same `build_pipeline`, same Kafka sources and sinks as `jobs/detect_anomalies.py`
(mini cluster, like `python jobs/detect_anomalies.py`), and the scored windows are
also written at-least-once to `--scored-topic`, so a test can see that windows were
scored even when none crosses a threshold.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from pyflink.common import Types  # noqa: E402

from core.records import scored_windows  # noqa: E402
from jobs import detect_anomalies as job  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scored-topic", required=True)
    extra, rest = p.parse_known_args()
    cfg, a = job.parse_args(rest)
    cfg = job.with_model_geometry(cfg, a)
    env, t_env = job.make_env(cfg, job.local_jars())
    main_view, side_view, topic = job.register_source(t_env, cfg, a.backtest, a.bounded)
    k = cfg.kafka
    pipe = job.build_pipeline(
        t_env,
        main_view,
        side_view,
        cfg,
        alerts_sink=job.kafka_string_sink(cfg, k.alerts_topic, True),
        dead_letter_sink=job.kafka_string_sink(cfg, k.dead_letter_topic, False),
        fast_alerts_sink=job.kafka_string_sink(cfg, k.alerts_fast_topic, False)
        if cfg.fast_alerts
        else None,
        source_topic=topic,
    )
    tap = job.kafka_string_sink(cfg, extra.scored_topic, False)
    windows = pipe.scored.flat_map(  # one ScoredWindow JSON per window of each batch
        lambda r: [w.to_json() for w in scored_windows(r)], output_type=Types.STRING()
    ).name("scored-unbatch").uid("scored-unbatch")
    windows.sink_to(tap).name("scored-tap").uid("scored-tap")
    env.execute(cfg.job_name)


if __name__ == "__main__":
    main()
