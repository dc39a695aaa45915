#!/usr/bin/env bash
# Fuzzes the code that parses what a peer process wrote (fuzz/peer_input_fuzz.cc: ring records
# and positions, Segment::Adopt, DecodeMessageHead) for a fixed time budget.
#
# With clang (installed through apt-get when missing and we are root): libFuzzer + ASan + UBSan.
# Without it: the same target with g++ ASan + UBSan, driven by fuzz/standalone_driver.cc
# (random mutations, no coverage feedback).
#
# The seed corpus is generated (fuzz/make_seeds.cc) into build/fuzz/seeds; what the fuzzer adds
# goes to build/fuzz/corpus (kept between runs, not committed). Regression inputs for bugs
# found live in fuzz/regressions/ and are run first. A crash fails the script and leaves the
# input in build/fuzz/.
#
# Usage: scripts/fuzz.sh [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET="${1:-60}"
OUT="$PWD/build/fuzz"
mkdir -p "$OUT/seeds" "$OUT/corpus"

SOURCES=(native/ring.cc native/segment.cc native/message.cc native/posix/os.cc)
# link.h (included by message.h) needs uv.h for its types only: node's headers have it.
NODE_INCLUDE="$(node -p "require('path').join(process.execPath, '../../include/node')")"
[ -f "$NODE_INCLUDE/uv.h" ] || NODE_INCLUDE=/usr/include/node
INCLUDES=(-I "$NODE_INCLUDE")
SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
COMMON=(-std=c++20 -g -O1 "${INCLUDES[@]}")

if ! command -v clang++ >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing clang (libFuzzer)"
  (apt-get install -y clang libclang-rt-dev >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y clang libclang-rt-14-dev >/dev/null 2>&1; }) || true
fi

# Seeds, built with the real encoder and ring producer.
g++ "${COMMON[@]}" -o "$OUT/make_seeds" fuzz/make_seeds.cc "${SOURCES[@]}"
"$OUT/make_seeds" "$OUT/seeds"

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

if command -v clang++ >/dev/null && clang++ -fsanitize=fuzzer -x c++ -o /dev/null - <<<'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' 2>/dev/null; then
  echo "== libFuzzer + ASan + UBSan ($(clang++ --version | head -1)), ${SECONDS_BUDGET}s"
  clang++ "${COMMON[@]}" "${SANITIZE[@]}" -fsanitize=fuzzer -o "$OUT/peer_input_fuzz" \
    fuzz/peer_input_fuzz.cc "${SOURCES[@]}"
  cd "$OUT"
  # Regression inputs first (a plain run over each file), then fuzzing.
  if compgen -G "../../fuzz/regressions/*" >/dev/null; then
    ./peer_input_fuzz ../../fuzz/regressions/* 2>&1 | tail -2
  fi
  status=0
  ./peer_input_fuzz -max_total_time="$SECONDS_BUDGET" -max_len=20000 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus seeds >fuzz.log 2>&1 || status=$?
  grep -E "(INITED|DONE|stat::|ERROR|SUMMARY|CHECK failed|artifact|Test unit)" fuzz.log || true
  if [ "$status" != 0 ]; then
    echo "== the fuzzer found a problem (exit $status); full log: build/fuzz/fuzz.log"
    tail -60 fuzz.log
  fi
  exit "$status"
else
  echo "== clang/libFuzzer not available: g++ ASan + UBSan with the standalone driver, ${SECONDS_BUDGET}s"
  g++ "${COMMON[@]}" "${SANITIZE[@]}" -o "$OUT/peer_input_standalone" \
    fuzz/peer_input_fuzz.cc fuzz/standalone_driver.cc "${SOURCES[@]}"
  cd "$OUT"
  ./peer_input_standalone "$SECONDS_BUDGET" ../../fuzz/regressions seeds corpus
fi
