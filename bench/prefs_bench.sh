#!/usr/bin/env bash
# Pairs per minute of every preference builder on the shipped base model (one run each, the
# builders' default settings, `LIMIT` training prompts drawn with the same seed):
#   bench/prefs_bench.sh [BUILD_DIR] [WORLD_DIR] [LIMIT]
# The world defaults to runs/world (made from models/base/world.toml when missing). Prints one
# line per builder: prompts, pairs, seconds, pairs/minute, generated tokens/s. Run it on an idle
# machine: the builders use every core.
set -euo pipefail
BUILD=${1:-build}
WORLD=${2:-runs/world}
LIMIT=${3:-400}
MODEL=models/base/vlm
CLIP=models/base/clip
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
[ -f "$WORLD/world.json" ] || "$BUILD/mmb" world generate --config models/base/world.toml --out "$WORLD" --quiet
printf "%-10s %8s %8s %9s %12s %10s\n" builder prompts pairs seconds pairs/min tokens/s
for b in corrected bpo bdhs csr; do
  extra=""
  case $b in bdhs | csr) extra="--clip $CLIP" ;; esac
  json=$("$BUILD/mmb" prefs $b --model $MODEL $extra --world "$WORLD" --limit "$LIMIT" --pairs "$OUT/$b.jsonl" \
    --quiet 2>/dev/null | tail -1)
  /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[2])
print('%-10s %8d %8d %9.1f %12.0f %10.0f' % (sys.argv[1], r['prompts'], r['pairs'], r['seconds'],
      r['pairs_per_minute'], r['tokens_per_s']))" "$b" "$json"
done
