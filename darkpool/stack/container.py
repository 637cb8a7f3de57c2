"""Render the Flink config inside a container (docker/flink-entrypoint.sh).

The container gets the same flink-conf/config.yaml as the local stack (mounted
read-only), the memory of the stack profile `DARKPOOL_PROFILE` names (settings.PROFILES;
the image sets `production`, as docker/compose.yaml does), then `FLINK_PROPERTIES`, the
usual Flink-image variable of `key: value` lines, for what differs there (host names,
bind addresses, paths in volumes); a key set there wins over the profile's:

    python -m darkpool.stack.container /opt/darkpool/flink-conf/config.yaml /tmp/flink-conf
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from darkpool.stack.flink import flink_home, merge_dotted
from darkpool.stack.settings import profile

# what a container runs when DARKPOOL_PROFILE is unset: the containers are the deployment
CONTAINER_PROFILE = "production"


def parse_properties(text: str) -> dict[str, Any]:
    """`key: value` lines (blank lines and # comments skipped) -> {dotted key: YAML value}."""
    from ruamel.yaml import YAML

    props: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"FLINK_PROPERTIES line {n} is not `key: value`: {line!r}")
        props[key.strip()] = YAML(typ="safe").load(value.strip()) if value.strip() else ""
    return props


def render(base_yaml: str, properties: str, profile_name: str = CONTAINER_PROFILE) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    with_memory = merge_dotted(yaml.load(base_yaml) or {}, profile(profile_name).flink_overrides())
    merged = merge_dotted(with_memory, parse_properties(properties))
    out = io.StringIO()
    yaml.default_flow_style = False
    yaml.dump(merged, out)
    return out.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base, out_dir = Path(argv[0]), Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in (flink_home() / "conf").glob("log*"):
        shutil.copy(f, out_dir / f.name)
    try:
        text = render(base.read_text(), os.environ.get("FLINK_PROPERTIES", ""),
                      os.environ.get("DARKPOOL_PROFILE") or CONTAINER_PROFILE)  # fmt: skip
    except ValueError as exc:  # an unknown profile, a malformed FLINK_PROPERTIES line
        print(f"flink config: {exc}", file=sys.stderr)
        return 2
    (out_dir / "config.yaml").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
