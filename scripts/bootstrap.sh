#!/usr/bin/env bash
# Install everything this project needs, reusing a cache outside the clone.
#
#   $DARKPOOL_CACHE (default ~/.cache/darkpool)
#     venv-<hash of requirements.lock>/        the full Python environment (torch, pyflink, ...)
#     jars-kafka-broker-<hash of its pom>/      Apache Kafka broker + deps (Maven Central)
#     jars-flink-jars-<hash of its pom>/        Flink Kafka connector etc. (Maven Central)
#   ./.venv   a thin venv in the clone: a .pth file points at the cached environment's
#             site-packages, and this project is installed editable into it (the
#             `darkpool` command). Creating it takes seconds, so every clone gets its own.
#
# A cached folder is built in a temp folder and renamed when complete, so an interrupted
# install never leaves a half-built cache behind that later runs would trust.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DARKPOOL_CACHE:-$HOME/.cache/darkpool}"
PYTHON="${PYTHON:-python3.11}"
mkdir -p "$CACHE"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bootstrap] error:\033[0m %s\n' "$*" >&2; exit 1; }
hash12() { sha256sum "$1" | cut -c1-12; }

command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "Python 3.11 is required (apache-flink 2.3 wheels); found $("$PYTHON" --version 2>&1). Install python3.11 or set PYTHON=/path/to/python3.11."
command -v java >/dev/null || die "Java (17+) is required by Flink and Kafka but 'java' is not on PATH. Install a JDK 17 (e.g. apt-get install openjdk-17-jdk-headless)."
command -v mvn >/dev/null || die "Maven is required to fetch the Kafka broker and Flink connector jars from Maven Central. Install it (e.g. apt-get install maven)."

# ---- Python environment (cached) --------------------------------------------------
VENV="$CACHE/venv-$(hash12 "$ROOT/requirements.lock")"
if [[ ! -f "$VENV/.complete" ]]; then
  say "building the Python environment in $VENV (first time on this machine: torch and pyflink are large, expect several minutes)"
  TMP="$VENV.tmp.$$"
  rm -rf "$TMP"
  "$PYTHON" -m venv "$TMP"
  "$TMP/bin/python" -m pip install -q --upgrade pip
  "$TMP/bin/python" -m pip install -q --no-deps -r "$ROOT/requirements.lock" \
    || die "pip install from requirements.lock failed (see the output above); is PyPI reachable?"
  touch "$TMP/.complete"
  rm -rf "$VENV" && mv "$TMP" "$VENV"
  # venv scripts hard-code their folder; the rename breaks them, so re-point them.
  for f in "$VENV"/bin/* "$VENV/pyvenv.cfg"; do
    if [[ -f "$f" && ! -L "$f" ]] && grep -Iq "$TMP" "$f"; then sed -i "s|$TMP|$VENV|g" "$f"; fi
  done
else
  say "Python environment: reusing $VENV"
fi

# ---- test and lint tools (cached, small) ---------------------------------------------
# requirements-dev.lock on top of the environment: its own folder, so a new tool never
# rebuilds the large environment. A .pth in .venv puts it on the path (below).
TOOLS="$CACHE/devtools-$(hash12 "$ROOT/requirements-dev.lock")"
if [[ ! -f "$TOOLS/.complete" ]]; then
  say "installing the test tools (requirements-dev.lock) into $TOOLS"
  TMP="$TOOLS.tmp.$$"
  rm -rf "$TMP"
  "$VENV/bin/python" -m pip install -q --no-deps --target "$TMP" -r "$ROOT/requirements-dev.lock" \
    || die "pip install from requirements-dev.lock failed (see the output above); is PyPI reachable?"
  touch "$TMP/.complete"
  rm -rf "$TOOLS" && mv "$TMP" "$TOOLS"
else
  say "test tools: reusing $TOOLS"
fi

# ---- thin local venv ----------------------------------------------------------------
SITE_CACHED="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ ! -x "$ROOT/.venv/bin/darkpool" ]] || ! grep -qx "$SITE_CACHED" "$ROOT/.venv/.cached-site" 2>/dev/null; then
  say "creating .venv (points at the cached environment)"
  rm -rf "$ROOT/.venv"
  "$PYTHON" -m venv --without-pip "$ROOT/.venv"
  SITE_LOCAL="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # The clone itself goes first on sys.path (an editable install without pip),
  # then the cached environment's packages.
  echo "$ROOT" > "$SITE_LOCAL/_darkpool_project.pth"
  echo "$SITE_CACHED" > "$SITE_LOCAL/_darkpool_cached_env.pth"
  cat > "$ROOT/.venv/bin/darkpool" <<PY
#!$ROOT/.venv/bin/python
from darkpool.cli import main
main()
PY
  chmod +x "$ROOT/.venv/bin/darkpool"
  "$ROOT/.venv/bin/python" -c 'import darkpool.cli, pyflink, torch' \
    || die ".venv cannot import the project or its packages (see above); delete .venv and $VENV and rerun"
  echo "$SITE_CACHED" > "$ROOT/.venv/.cached-site"   # written last: marks .venv complete
fi

SITE_LOCAL="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$TOOLS" > "$SITE_LOCAL/_darkpool_test_tools.pth"   # after the environment: its pins win

# Tools of the cached env reachable from .venv/bin (re-done on every run: cheap, and it
# repairs a .venv made by an older bootstrap). pytest is a Python module: run it with
# this .venv's python so it sees the project. ruff and hadolint are native binaries:
# link them (a `python -m ruff` wrapper here would find itself as "the ruff binary"
# in .venv/bin and exec itself forever).
printf '#!/usr/bin/env bash\nexec "%s" -m pytest "$@"\n' "$ROOT/.venv/bin/python" > "$ROOT/.venv/bin/pytest"
chmod +x "$ROOT/.venv/bin/pytest"
printf '#!/usr/bin/env bash\nexec "%s" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" "$@"\n' \
  "$ROOT/.venv/bin/python" > "$ROOT/.venv/bin/lint-imports"   # the layers contract (pyproject.toml)
chmod +x "$ROOT/.venv/bin/lint-imports"
for tool in ruff hadolint; do
  [[ -x "$VENV/bin/$tool" ]] && ln -sfn "$VENV/bin/$tool" "$ROOT/.venv/bin/$tool"
done

# ---- Java dependencies (cached) ----------------------------------------------------
fetch_jars() {  # $1 = deps/<name>, $2.. = extra maven flags
  local name="$1"; shift
  local dest="$CACHE/jars-$name-$(hash12 "$ROOT/deps/$name/pom.xml")"
  if [[ -f "$dest/.complete" ]]; then
    say "jars $name: reusing $dest"; return
  fi
  say "fetching jars $name from Maven Central into $dest"
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  mvn -q -B -f "$ROOT/deps/$name/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" "$@" \
    || die "Maven could not fetch deps/$name/pom.xml (is Maven Central reachable? run: mvn -f deps/$name/pom.xml dependency:copy-dependencies)"
  touch "$tmp/.complete"
  rm -rf "$dest" && mv "$tmp" "$dest"
}
fetch_jars kafka-broker -DincludeScope=runtime
fetch_jars flink-jars -DexcludeTransitive=true

# The job's JVM function (udfs/jvm: strict JSON parsing), compiled once per source hash.
udfs_hash() { (cd "$ROOT/udfs/jvm" && cat pom.xml $(find src -type f | LC_ALL=C sort)) | sha256sum | cut -c1-12; }
UDF_DIR="$CACHE/jars-udfs-$(udfs_hash)"
if [[ -f "$UDF_DIR/.complete" ]]; then
  say "jar udfs: reusing $UDF_DIR"
else
  say "building udfs/jvm (Maven) into $UDF_DIR"
  mvn -q -B -f "$ROOT/udfs/jvm/pom.xml" package >/dev/null \
    || die "Maven could not build udfs/jvm (run: mvn -f udfs/jvm/pom.xml package, and read its error)"
  jar="$ROOT/udfs/jvm/target/darkpool-flink-udfs.jar"
  [[ -f "$jar" ]] || die "udfs/jvm built no jar (expected $jar)"
  rm -rf "$UDF_DIR.tmp" && mkdir -p "$UDF_DIR.tmp" && cp "$jar" "$UDF_DIR.tmp/" && touch "$UDF_DIR.tmp/.complete"
  rm -rf "$UDF_DIR" && mv "$UDF_DIR.tmp" "$UDF_DIR"
fi

say "ready: $ROOT/.venv/bin/darkpool"
