"""Find a job's newest retained checkpoint (what `darkpool submit --resume` restores).

Flink writes each completed checkpoint to `<checkpoint dir>/<job id>/chk-<n>/`, and its
`_metadata` file last: a folder without one is a checkpoint the job did not finish (the
JobManager died while writing it) and cannot be restored. The detection job retains its
checkpoints when it is cancelled or fails (RETAIN_ON_CANCELLATION; failures always
keep them), and a killed JobManager deletes nothing. The cluster keeps the newest
`execution.checkpointing.num-retained` of them.

The checkpoint dir is the job's `--checkpoint-dir` flag, else the cluster's
`execution.checkpointing.dir` (the local stack sets it under its run dir).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from darkpool.stack.procs import StackError
from darkpool.stack.settings import StackConfig

_CHK = re.compile(r"chk-(\d+)")


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `flag` in a job's argv (`--flag V` or `--flag=V`), the last one winning."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def as_path(uri: str) -> Path:
    """A file:// URI or a plain path as a local Path (other schemes are not on this machine)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
    raise StackError(f"checkpoints under {uri} are not on a local file system; restore with "
                     "`flink run -s <checkpoint>` yourself")  # fmt: skip


def cluster_checkpoint_dir(cfg: StackConfig) -> str:
    """`execution.checkpointing.dir` of the local stack's Flink config."""
    from ruamel.yaml import YAML

    conf_file = cfg.flink_conf_dir / "config.yaml"
    try:
        conf = YAML(typ="safe").load(conf_file.read_text()) or {}
    except FileNotFoundError:
        raise StackError(f"no local Flink config in {cfg.flink_conf_dir}: run `darkpool stack up` first") from None
    found = conf.get("execution", {}).get("checkpointing", {}).get("dir")
    if not found:
        raise StackError(f"{conf_file} sets no execution.checkpointing.dir: checkpoints are not retained on disk")
    return str(found)


def checkpoint_root(cfg: StackConfig, job_args: Sequence[str], jobmanager: str | None = None) -> Path:
    """Where the job's checkpoints go: its --checkpoint-dir, else the local cluster's."""
    flag = _flag_value(job_args, "--checkpoint-dir")
    if flag:
        return as_path(flag)
    if jobmanager:
        raise StackError(f"the job ran on another cluster ({jobmanager}) without --checkpoint-dir: its checkpoint "
                         "folder is not known here; restore with `flink run -s <checkpoint>`")  # fmt: skip
    return as_path(cluster_checkpoint_dir(cfg))


def completed(job_dir: Path) -> list[Path]:
    """The job's complete checkpoints (those with `_metadata`), oldest first."""
    found = []
    for d in job_dir.glob("chk-*"):
        m = _CHK.fullmatch(d.name)
        if m and (d / "_metadata").is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_retained(root: Path, job_ids: Sequence[str]) -> Path | None:
    """The newest complete checkpoint of the first job in `job_ids` (newest first) that has one.

    A job resumed a moment before the JobManager died again may not have completed a
    checkpoint of its own yet: the one it was resumed from is then still the newest state.
    """
    for job_id in job_ids:
        done = completed(root / job_id)
        if done:
            return done[-1]
    return None
