#!/usr/bin/env bash
# Rebuild data-samples/lobster/ (the real-background development sample) from LOBSTER's
# free GOOG sample files of 2012-06-21 (source, licence and figures: data-samples/lobster/README.md).
#
#   scripts/build_real_dev_set.sh RAW_DIR
#
# RAW_DIR holds LOBSTER_SampleFile_GOOG_2012-06-21_1.zip and LOBSTER_SampleFile_GOOG_2012-06-21_10.zip
# as LOBSTER publishes them (https://lobsterdata.com/info/DataSamples.php); their SHA-256 is checked.
# Only GOOG is read: the AAPL, AMZN and MSFT samples of that day are kept for independent
# acceptance grading and must not be used for development.
set -euo pipefail

RAW_DIR=${1:?usage: scripts/build_real_dev_set.sh RAW_DIR (folder with the LOBSTER GOOG sample zips)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/data-samples/lobster"
PY="$ROOT/.venv/bin/python"
DARKPOOL="$ROOT/.venv/bin/darkpool"
declare -A SHA256=(
  [LOBSTER_SampleFile_GOOG_2012-06-21_1.zip]=34ec126261ac19831972f47edd8ab874d52d93b54a9ab623ee4ce89d3f90f5cc
  [LOBSTER_SampleFile_GOOG_2012-06-21_10.zip]=2fa66b61c7c4d4cd3f19180aaa7f5937a26355f81b2ac8e4a84e36550e8dde4a
)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for zip in "${!SHA256[@]}"; do
  [[ -f "$RAW_DIR/$zip" ]] || { echo "missing $RAW_DIR/$zip (download it from https://lobsterdata.com/info/DataSamples.php)" >&2; exit 1; }
  echo "${SHA256[$zip]}  $RAW_DIR/$zip" | sha256sum --check --quiet \
    || { echo "$RAW_DIR/$zip is not LOBSTER's published file (SHA-256 differs)" >&2; exit 1; }
  "$PY" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith("GOOG_")]' \
    "$RAW_DIR/$zip" "$WORK"
done

mkdir -p "$OUT/raw"
DAY=GOOG_2012-06-21_34200000_57600000
# 1. the whole day in the contract: level-10 messages, quotes from the orderbook file
"$DARKPOOL" import lobster --message "$WORK/${DAY}_message_10.csv" --orderbook "$WORK/${DAY}_orderbook_10.csv" \
  --out "$OUT/GOOG_2012-06-21_events.parquet"
# 2. a raw excerpt for import tests: the level-1 pair, first 30 minutes (09:30-10:00),
#    cut on the message time so the two files stay line-aligned
"$PY" - "$WORK/${DAY}_message_1.csv" "$WORK/${DAY}_orderbook_1.csv" \
  "$OUT/raw/GOOG_2012-06-21_34200000_36000000_message_1.csv" "$OUT/raw/GOOG_2012-06-21_34200000_36000000_orderbook_1.csv" <<'EOF'
import sys
msg_in, book_in, msg_out, book_out = sys.argv[1:]
with open(msg_in) as m, open(book_in) as b, open(msg_out, "w") as mo, open(book_out, "w") as bo:
    for msg, book in zip(m, b, strict=True):
        if float(msg.split(",", 1)[0]) >= 36_000:
            break
        mo.write(msg)
        bo.write(book)
EOF
"$PY" -m darkpool.venue.rates "$OUT/GOOG_2012-06-21_events.parquet"
