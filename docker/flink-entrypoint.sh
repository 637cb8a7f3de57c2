#!/usr/bin/env bash
# Start a JobManager or TaskManager in the foreground, with the config rendered from
# the mounted flink-conf/config.yaml plus FLINK_PROPERTIES (see darkpool/stack/container.py).
set -euo pipefail
role="${1:-jobmanager}"
case "$role" in
  jobmanager|taskmanager) ;;
  *) exec "$@" ;;  # anything else: run it (e.g. `flink run -py ...` or a shell)
esac
export FLINK_CONF_DIR=/tmp/flink-conf
python -m darkpool.stack.container "${DARKPOOL_FLINK_CONFIG:-/opt/darkpool/flink-conf/config.yaml}" "$FLINK_CONF_DIR"
exec "$FLINK_HOME/bin/$role.sh" start-foreground
