"""Where things live on disk.

Heavy, reusable installs (the Python environment, Maven jars) live in a cache outside
the clone, keyed by the hash of the file that defines them, so a fresh clone on the
same machine reuses them. Runtime state (pids, logs, Kafka data, checkpoints) lives in
`.run/` inside the clone, so two clones never share a running stack by accident.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of the install cache (override with DARKPOOL_CACHE)."""
    return Path(os.environ.get("DARKPOOL_CACHE", Path.home() / ".cache" / "darkpool"))


def run_dir() -> Path:
    """Runtime state of the local stack (override with DARKPOOL_RUN_DIR)."""
    return Path(os.environ.get("DARKPOOL_RUN_DIR", REPO_ROOT / ".run"))


def data_dir() -> Path:
    """Generated market data (override with DARKPOOL_DATA_DIR)."""
    return Path(os.environ.get("DARKPOOL_DATA_DIR", REPO_ROOT / "data"))


def artifacts_dir() -> Path:
    """Trained model artifacts (override with DARKPOOL_ARTIFACTS_DIR)."""
    return Path(os.environ.get("DARKPOOL_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))


def file_hash(path: Path, length: int = 12) -> str:
    """Short content hash used to key cache folders (same as scripts/bootstrap.sh)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:length]


def jars_dir(name: str) -> Path:
    """Folder of jars fetched by Maven from deps/<name>/pom.xml."""
    pom = REPO_ROOT / "deps" / name / "pom.xml"
    return cache_dir() / f"jars-{name}-{file_hash(pom)}"


UDF_JAR_NAME = "darkpool-flink-udfs.jar"


def udf_jar() -> Path:
    """The job's JVM functions (udfs/jvm), built by scripts/bootstrap.sh, keyed like there:
    sha256 of pom.xml followed by every file under src/ in byte order of their paths."""
    root = REPO_ROOT / "udfs" / "jvm"
    files = [root / "pom.xml", *sorted((p for p in (root / "src").rglob("*") if p.is_file()),
                                       key=lambda p: str(p.relative_to(root)).encode())]  # fmt: skip
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    return cache_dir() / f"jars-udfs-{digest}" / UDF_JAR_NAME
