#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for a bounded time, one after the
# other, then minimizes fuzz/corpus/<target>/: the hand-made seed-* inputs
# (fuzz/seeds/make_seeds.py) plus a small set of other inputs, old or new,
# that still reaches every edge reached.
#
#   bash scripts/fuzz.sh [seconds-per-target] [target...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); CI
# does not: it replays the committed corpus and regressions with `cargo test`
# (crates/fuzz-harness). A crash does not stop the run (fork mode); each one
# is left in fuzz/artifacts/<target>/ and listed at the end. To keep one:
#   cd fuzz && cargo +nightly fuzz tmin <target> artifacts/<target>/crash-...
# then copy the minimized input into fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(credits jwt stripe_webhook plugin_response graphql)
fi

# The targets load the built provider plugins (an ordinary debug build).
cargo build -q -p creditgate-plugin-openai -p creditgate-plugin-anthropic -p creditgate-plugin-demo
export CREDITGATE_FUZZ_PLUGIN_DIR="$PWD/target/debug"

cd fuzz
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  case "$t" in
    credits) max_len=64 ;;
    jwt | stripe_webhook) max_len=4096 ;;
    *) max_len=8192 ;;
  esac
  new="corpus-new/$t"
  rm -rf "$new" && mkdir -p "$new" "corpus/$t" "artifacts/$t"
  echo "== $t: ${secs}s"
  # New inputs go to corpus-new/<t>; corpus/<t> seeds the run.
  cargo +nightly fuzz run "$t" "$new" "corpus/$t" -- \
    -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -print_final_stats=1 2>&1 | tee "artifacts/$t/last-run.log" | grep -E "^#[0-9]+|INFO: fuzzed|CRASH|ERROR|deadly" | tail -n 3 || true
  echo "== $t: minimizing corpus/$t"
  min="corpus-new/$t-min"
  rm -rf "$min" && mkdir -p "$min"
  cp corpus/"$t"/seed-* "$min"/ 2>/dev/null || true
  # -use_counters=0: keep a set that covers every edge (hit counts aside).
  cargo +nightly fuzz run "$t" "$min" "corpus/$t" "$new" -- -merge=1 -use_counters=0 -max_len="$max_len" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
  rm -rf "corpus/$t" && mv "$min" "corpus/$t" && rm -rf "$new"
  echo "   corpus/$t: $(ls "corpus/$t" | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
done
rm -rf corpus-new

echo "== crashes (fuzz/artifacts/<target>/):"
found=0
for t in "${targets[@]}"; do
  for f in artifacts/"$t"/crash-* artifacts/"$t"/timeout-* artifacts/"$t"/oom-*; do
    [ -e "$f" ] || continue
    echo "  fuzz/$f"
    found=1
  done
done
[ "$found" = 1 ] || echo "  none"
