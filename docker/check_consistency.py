"""Check that docker/ mirrors the local stack: same versions, same config, valid compose,
and the production memory profile (darkpool/stack/settings.py PROFILES) throughout.

No Docker engine runs here, so this reads the files instead of building them. Each
check prints one line; exit status 1 when any fails. Run by docker/check.sh.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ruamel.yaml import YAML  # noqa: E402

from darkpool.stack import container, flink, kafka  # noqa: E402
from darkpool.stack.settings import PROFILES, StackConfig  # noqa: E402

DOCKER = ROOT / "docker"
PROFILE = PROFILES[container.CONTAINER_PROFILE]  # what the containers must run: production
failures: list[str] = []


def check(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok else ': ' + detail}")
    if not ok:
        failures.append(what)


def pom_property(pom: Path, name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find(f"m:properties/m:{name}", ns)
    if node is None or not node.text:
        raise SystemExit(f"{pom} has no <{name}> property")
    return node.text


def lock_pin(package: str) -> str | None:
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==([^\s;]+)", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def props(text: str) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def check_kafka(compose: dict) -> None:
    version = pom_property(ROOT / "deps/kafka-broker/pom.xml", "kafka.version")
    image = compose["services"]["kafka"]["image"]
    check(image == f"apache/kafka:{version}", "kafka image = deps/kafka-broker version", f"{image} vs {version}")
    env = compose["services"]["kafka"]["environment"]
    jvm = f"{env.get('KAFKA_HEAP_OPTS', '')} {env.get('KAFKA_OPTS', '')}".split()
    want = PROFILE.kafka_jvm_flags()
    heaps = [f for f in jvm if f.startswith(("-Xmx", "-Xms"))]
    check(all(f in jvm for f in want) and all(f in want for f in heaps),
          f"kafka JVM flags = the {PROFILE.name} profile's broker flags", f"{jvm} vs {list(want)}")
    command = " ".join(compose["services"]["kafka"]["command"])
    want = f"transaction.version={kafka.TRANSACTION_VERSION}"
    check(want in command, "kafka storage formatted with " + want, command)
    # same broker settings as `darkpool stack up`, except where the broker listens/stores
    local = props(kafka.server_properties(StackConfig(run_dir=Path("/x"))))
    docker = props((DOCKER / "kafka/server.properties").read_text())
    placement = {"controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs"}
    keys = (local.keys() | docker.keys()) - placement
    diff = {k for k in keys if local.get(k) != docker.get(k)}
    check(not diff, "docker/kafka/server.properties = local broker settings", f"differ in {sorted(diff)}")


def check_flink(compose: dict) -> None:
    flink_lock = lock_pin("apache-flink")
    pyproject = (ROOT / "pyproject.toml").read_text()
    check(flink_lock is not None and f'"apache-flink=={flink_lock}"' in pyproject, "apache-flink pin: requirements.lock = pyproject.toml", str(flink_lock))
    dockerfile = (DOCKER / "Dockerfile.flink").read_text()
    check("COPY deps/flink-jars/pom.xml" in dockerfile, "Dockerfile.flink fetches jars from deps/flink-jars/pom.xml")
    check("COPY udfs/jvm" in dockerfile and "udfs-jvm/pom.xml package" in dockerfile,
          "Dockerfile.flink builds the job's JVM function from udfs/jvm (like scripts/bootstrap.sh)")
    ignore = (DOCKER / "Dockerfile.flink.dockerignore").read_text()
    check("!udfs/" in ignore, "Dockerfile.flink's build context includes udfs/ (udfs/jvm sources)")
    check("requirements.lock" in dockerfile, "Dockerfile.flink installs requirements.lock")
    check(re.search(r"FROM python:3\.11[.\d]*-", dockerfile) is not None, "Dockerfile.flink runs Python 3.11 (requires-python)")
    check(re.search(r"FROM maven:\S+-17\b|FROM maven:\S+temurin-17", dockerfile) is not None, "Dockerfile.flink jar stage uses Java 17")
    arenas = re.search(r"MALLOC_ARENA_MAX=(\S+)", dockerfile)
    check(arenas is not None and arenas.group(1) == flink.MALLOC_ARENAS,
          "Dockerfile.flink MALLOC_ARENA_MAX = the local stack's (darkpool/stack/flink.py)", arenas and arenas.group(0))
    image_profile = re.search(r"^ENV DARKPOOL_PROFILE=(\S+)", dockerfile, re.MULTILINE)
    check(image_profile is not None and image_profile.group(1) == PROFILE.name,
          f"Dockerfile.flink sets DARKPOOL_PROFILE={PROFILE.name}", image_profile and image_profile.group(0))
    base = (ROOT / "flink-conf/config.yaml").read_text()
    for name in ("jobmanager", "taskmanager"):
        svc = compose["services"][name]
        mounts = [v.split(":")[0:2] for v in svc.get("volumes", [])]
        check(["../flink-conf/config.yaml", "/opt/darkpool/flink-conf/config.yaml"] in mounts, f"{name} mounts flink-conf/config.yaml")
        env = svc["environment"]
        check(env.get("DARKPOOL_PROFILE") == PROFILE.name, f"{name} runs the {PROFILE.name} profile (DARKPOOL_PROFILE)",
              repr(env.get("DARKPOOL_PROFILE")))
        rendered = YAML(typ="safe").load(container.render(base, env["FLINK_PROPERTIES"], env.get("DARKPOOL_PROFILE") or PROFILE.name))
        check(rendered["jobmanager"]["rpc"]["address"] == "jobmanager", f"{name} FLINK_PROPERTIES render onto config.yaml")
        # what the container's Flink gets = the profile's memory (FLINK_PROPERTIES must not undo it)
        got = {key: _dotted(rendered, key) for key in PROFILE.flink_overrides()}
        diff = {k: (v, PROFILE.flink_overrides()[k]) for k, v in got.items() if v != PROFILE.flink_overrides()[k]}
        check(not diff, f"{name} memory = the {PROFILE.name} profile's", f"differ (container, profile): {diff}")


def _dotted(conf: dict, key: str) -> object:
    node: object = conf
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_compose_files(compose: dict) -> None:
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            ctx = (DOCKER / build["context"]).resolve()
            check((ctx / build["dockerfile"]).exists(), f"{name}: build dockerfile exists", str(ctx / build["dockerfile"]))
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")) and "artifacts" not in src:  # artifacts appear after training
                check((DOCKER / src).exists(), f"{name}: mount source {src} exists")
        for dep in svc.get("depends_on", {}):
            check(dep in compose["services"], f"{name}: depends_on {dep} is a service")
        image = svc.get("image", "")
        check(":" in image and not image.endswith(":latest"), f"{name}: image tag pinned ({image})")


def check_exposure(compose: dict) -> None:
    """Published ports reach the host's loopback only; the scorer, which listens on the
    compose network, gets its reload token from the environment."""
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            check(str(port).startswith("127.0.0.1:"), f"{name}: port {port} published on 127.0.0.1 only")
        if "scorer" in name:
            env = svc.get("environment") or {}
            check("DARKPOOL_SCORER_TOKEN" in env, f"{name}: DARKPOOL_SCORER_TOKEN passed to the scorer")


def main() -> int:
    compose = YAML(typ="safe").load((DOCKER / "compose.yaml").read_text())
    check_kafka(compose)
    check_flink(compose)
    check_compose_files(compose)
    check_exposure(compose)
    print(f"{len(failures)} consistency check(s) failed" if failures else "docker/ is consistent with the local stack")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
