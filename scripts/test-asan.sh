#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into build/asan (cmake-js,
# the same sources as binding.gyp) and runs the jest suite against it.
#
# Node itself is not instrumented, so the ASan runtime of the compiler that built the addon is
# preloaded. Everything the tests start (jest workers, fixture children, their forks) inherits
# the environment, so every process loads the sanitized addon (CROSSPORT_ADDON) under the same
# runtime. Any report aborts the process that hit it (halt_on_error, -fno-sanitize-recover),
# which fails the test; a summary scan of the log fails the run as well, in case a report was
# printed by a process whose exit status no test looked at.
#
# Usage: scripts/test-asan.sh [jest arguments...]
#        scripts/test-asan.sh --build-only   (the sanitized addon only; scripts/fuzz.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."

CXX="${CXX:-g++}"

echo "== sanitized build (ASan + UBSan) into build/asan"
mkdir -p build
# (cmake-js sets CMAKE_CXX_FLAGS itself, so the flags come from an option in CMakeLists.txt.)
CXX="$(command -v "$CXX")" npx cmake-js compile --out build/asan --CDCROSSPORT_SANITIZE=ON \
  >build/asan-build.log 2>&1 || { cat build/asan-build.log; exit 1; }
ADDON="$PWD/build/asan/Release/crossport.node"
# A build that silently lost its flags would test nothing.
nm "$ADDON" | grep -c __asan_report_load >/dev/null || { echo "build/asan: addon is not instrumented"; exit 1; }
nm "$ADDON" | grep -c __ubsan_handle >/dev/null || { echo "build/asan: addon has no UBSan checks"; exit 1; }
[ "${1:-}" = --build-only ] && exit 0
# The fixtures load dist/: make sure it is current.
npx tsc -p tsconfig.build.json

LIBASAN="$("$CXX" -print-file-name=libasan.so)"
LIBUBSAN="$("$CXX" -print-file-name=libubsan.so)"
LOG_DIR="$PWD/build/asan-logs"
rm -rf "$LOG_DIR" && mkdir -p "$LOG_DIR"

export CROSSPORT_ADDON="$ADDON"
# Tests that bound memory skip that bound: ASan's quarantine keeps freed memory resident.
export CROSSPORT_SANITIZED=1
export LD_PRELOAD="$LIBASAN $LIBUBSAN${LD_PRELOAD:+ $LD_PRELOAD}"
# detect_leaks=0: node is not instrumented and frees little at exit; LeakSanitizer would report
# V8's and node's own allocations. Fd and mapping leaks have their own test (test/leak.test.ts).
# log_path: every process writes its reports to its own file, scanned below.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:log_path=$LOG_DIR/asan"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$LOG_DIR/ubsan"

# The sanitized addon must actually load under the preloaded runtime.
node -e "
const n = require(process.env.CROSSPORT_ADDON);
if (typeof n.createChannel !== 'function') process.exit(1);
console.log('sanitized addon loads:', process.env.CROSSPORT_ADDON);
"

echo "== jest under ASan + UBSan"
status=0
npx jest "$@" || status=$?

if compgen -G "$LOG_DIR/*" >/dev/null; then
  echo "== sanitizer reports:"
  for f in "$LOG_DIR"/*; do echo "--- $f"; cat "$f"; done
  exit 1
fi
exit $status
