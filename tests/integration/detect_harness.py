"""The real detection job for tests, plus a tap on its scored windows.

    python tests/integration/detect_harness.py [job flags] --scored-topic T

Runs the job's own entry point, `jobs/detect_anomalies.main` (same flags, sources,
`build_pipeline` and sinks; the mini cluster, like `python jobs/detect_anomalies.py`),
and attaches one more sink before the job starts: the scored windows, written
at-least-once to `--scored-topic`, so a test can see that windows were scored even
when none crosses a threshold.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from pyflink.common import Types  # noqa: E402

from core.job_config import JobConfig  # noqa: E402
from core.records import scored_windows  # noqa: E402
from jobs import detect_anomalies as job  # noqa: E402


def tap_scored(topic: str):  # noqa: ANN201
    """An `extend` for job.main: the scored windows, one ScoredWindow JSON each, to `topic`."""

    def extend(pipe: job.Pipeline, cfg: JobConfig) -> None:
        windows = pipe.scored.flat_map(  # one ScoredWindow JSON per window of each batch
            lambda r: [w.to_json() for w in scored_windows(r)], output_type=Types.STRING()
        ).name("scored-unbatch").uid("scored-unbatch")
        windows.sink_to(job.kafka_string_sink(cfg, topic, False)).name("scored-tap").uid("scored-tap")

    return extend


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scored-topic", required=True)
    extra, rest = p.parse_known_args()
    job.main(rest, extend=tap_scored(extra.scored_topic))


if __name__ == "__main__":
    main()
