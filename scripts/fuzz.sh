#!/usr/bin/env bash
# Fuzzes the code that reads what a peer process wrote, the time budget split among three
# targets:
#   peer_input   fuzz/peer_input_fuzz.cc: ring records and positions, Segment::Adopt,
#                DecodeMessageHead and its fd accounting
#   link_input   fuzz/link_input_fuzz.cc: native/link.cc over a real segment and socket pair:
#                records read (Link::Next), fds taken off the socket and claimed, kLarge, out of
#                band, kFds, stray fds, transfers, a process out of fds (fuzz/fake_uv.cc stands
#                in for libuv)
#   deserialize  fuzz/deserialize_fuzz.js: serializer.cc's ValueDeserializer delegate and
#                PortHandle::Decode, on messages changed in the ring before the receiver reads
#                them; in Node, since V8 needs an isolate, with the ASan + UBSan addon build
#
# The C++ targets: libFuzzer + ASan + UBSan with clang, installed through apt-get when missing
# and we are root. In CI (CI=true) clang with libFuzzer is required: a missing or failed install
# fails the script (random mutations without coverage feedback are not what CI should call
# fuzzing). Locally, without it: the same targets with g++ ASan + UBSan, driven by
# fuzz/standalone_driver.cc (random mutations, no coverage feedback).
#
# Regression inputs live in fuzz/regressions/<target>/ (committed: inputs of bugs found, and
# minimized inputs that reach the paths worth keeping) and run first; any failure there fails the
# script. Seeds for peer_input are generated (fuzz/make_seeds.cc); the regressions seed the
# others. What the fuzzers add goes to build/fuzz/<target>-corpus (kept, not committed). A crash
# fails the script and leaves the input in build/fuzz/.
#
# Usage: scripts/fuzz.sh [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET="${1:-60}"
SLICE=$(( SECONDS_BUDGET / 3 > 5 ? SECONDS_BUDGET / 3 : 5 ))
ROOT="$PWD"
OUT="$ROOT/build/fuzz"
REGRESSIONS="$ROOT/fuzz/regressions"
mkdir -p "$OUT/seeds" "$OUT/peer_input-corpus" "$OUT/link_input-corpus"

# link.h (included by message.h) needs uv.h for its types only: node's headers have it.
NODE_INCLUDE="$(node -p "require('path').join(process.execPath, '../../include/node')")"
[ -f "$NODE_INCLUDE/uv.h" ] || NODE_INCLUDE=/usr/include/node
COMMON=(-std=c++20 -g -O1 -I "$NODE_INCLUDE")
SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
PARSERS=("$ROOT/native/ring.cc" "$ROOT/native/segment.cc" "$ROOT/native/message.cc" "$ROOT/native/posix/os.cc")
PEER_SOURCES=("$ROOT/fuzz/peer_input_fuzz.cc" "${PARSERS[@]}")
# (close() wrapped: the target checks that nothing is closed twice.)
LINK_SOURCES=(-Wl,--wrap=close "$ROOT/fuzz/link_input_fuzz.cc" "$ROOT/fuzz/fake_uv.cc" "$ROOT/native/link.cc"
  "${PARSERS[@]}")

has_libfuzzer() {
  command -v clang++ >/dev/null && clang++ -fsanitize=fuzzer -x c++ -o /dev/null - \
    <<<'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' 2>/dev/null
}

if ! has_libfuzzer && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing clang (libFuzzer)"
  if ! { apt-get install -y clang libclang-rt-dev >/dev/null 2>&1 ||
         { apt-get update >/dev/null 2>&1 && apt-get install -y clang libclang-rt-14-dev >/dev/null 2>&1; }; }; then
    echo "== installing clang failed"
  fi
fi
if has_libfuzzer; then
  LIBFUZZER=1
elif [ "${CI:-}" = true ]; then
  echo "== clang with libFuzzer is not available, and CI=true: refusing to fuzz without coverage feedback" >&2
  exit 1
else
  LIBFUZZER=0
fi

# Seeds for peer_input, built with the real encoder and ring producer.
g++ "${COMMON[@]}" -o "$OUT/make_seeds" fuzz/make_seeds.cc "${PARSERS[@]}"
"$OUT/make_seeds" "$OUT/seeds"

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# Regression files of peer_input may also lie directly in fuzz/regressions/.
peer_regressions() {
  find "$REGRESSIONS" -maxdepth 1 -type f
  find "$REGRESSIONS/peer_input" -type f 2>/dev/null || true
}

# run_cpp <target> <seeds dir or ""> <sources...>
run_cpp() {
  local target="$1" seeds="$2"
  shift 2
  local regressions
  if [ "$target" = peer_input ]; then regressions="$(peer_regressions)"; else
    regressions="$(find "$REGRESSIONS/$target" -type f 2>/dev/null || true)"; fi
  cd "$OUT"
  if [ "$LIBFUZZER" = 1 ]; then
    echo "== $target: libFuzzer + ASan + UBSan ($(clang++ --version | head -1)), ${SLICE}s"
    clang++ "${COMMON[@]}" "${SANITIZE[@]}" -fsanitize=fuzzer -o "$target" "$@"
    if [ -n "$regressions" ]; then
      echo "== $target: $(wc -l <<<"$regressions") regression inputs"
      # shellcheck disable=SC2086
      ./"$target" $regressions >"$target-regressions.log" 2>&1 ||
        { tail -40 "$target-regressions.log"; echo "== $target: a regression input failed"; exit 1; }
    fi
    local status=0
    # shellcheck disable=SC2086
    ./"$target" -max_total_time="$SLICE" -max_len=20000 -rss_limit_mb=2048 -print_final_stats=1 \
      "$target-corpus" $seeds >"$target.log" 2>&1 || status=$?
    grep -E "(INITED|DONE|stat::|ERROR|SUMMARY|CHECK failed|artifact|Test unit)" "$target.log" || true
    if [ "$status" != 0 ]; then
      echo "== $target: the fuzzer found a problem (exit $status); full log: build/fuzz/$target.log"
      tail -60 "$target.log"
      exit "$status"
    fi
  else
    echo "== $target: clang/libFuzzer not available: g++ ASan + UBSan with the standalone driver, ${SLICE}s"
    g++ "${COMMON[@]}" "${SANITIZE[@]}" -o "$target-standalone" "$@" "$ROOT/fuzz/standalone_driver.cc"
    local dirs=("$target-corpus")
    [ -n "$seeds" ] && dirs+=("$seeds")
    if [ -n "$regressions" ]; then
      rm -rf "$target-regressions" && mkdir -p "$target-regressions"
      # shellcheck disable=SC2086
      cp $regressions "$target-regressions/"
      dirs=("$target-regressions" "${dirs[@]}")
    fi
    ./"$target-standalone" "$SLICE" "${dirs[@]}"
  fi
  cd "$ROOT"
}

run_cpp peer_input seeds "${PEER_SOURCES[@]}"
run_cpp link_input "" "${LINK_SOURCES[@]}"

echo "== deserialize: through Node with the ASan + UBSan addon, ${SLICE}s"
npx tsc -p tsconfig.build.json
ADDON="$ROOT/build/asan/Release/crossport.node"
if [ ! -f "$ADDON" ] || [ -n "$(find native -newer "$ADDON" -name '*.cc' -o -newer "$ADDON" -name '*.h')" ]; then
  scripts/test-asan.sh --build-only
fi
CXX="${CXX:-g++}"
CROSSPORT_ADDON="$ADDON" CROSSPORT_SANITIZED=1 \
  LD_PRELOAD="$("$CXX" -print-file-name=libasan.so) $("$CXX" -print-file-name=libubsan.so)" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0" \
  UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1" \
  node fuzz/deserialize_fuzz.js "$SLICE" "$REGRESSIONS/deserialize"
