#!/usr/bin/env bash
# The type test: packs the package (or takes the tarball given), installs it with each
# @types/node major into a scratch project, and compiles consumer.ts against the packed
# declarations with this repository's TypeScript (~5.9) under --strict in each module mode
# (nodenext, as CommonJS and as ES module; commonjs; bundler), and once with tsc's defaults and no
# tsconfig (target ES5: no private names in the .d.ts). consumer.ts holds @ts-expect-error lines,
# so a run in which crossport's types went missing or became any fails too.
# Usage: test/types/run.sh [crossport-ipc-x.y.z.tgz]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
tsc=$repo/node_modules/.bin/tsc
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ $# -gt 0 ]]; then
  tarball=$(realpath "$1")
else
  tarball=$scratch/$(npm pack --silent --ignore-scripts --pack-destination "$scratch" | tail -n 1)
fi
echo "== type test: $(basename "$tarball"), TypeScript $("$tsc" --version)"
passed=0
failed=0
check() {
  local label=$1
  shift
  if (cd "$project" && "$tsc" --noEmit "$@") > "$scratch/out.txt" 2>&1; then
    passed=$((passed + 1))
    echo "ok    @types/node $version, $label"
  else
    failed=$((failed + 1))
    echo "FAIL  @types/node $version, $label"
    sed 's/^/      /' "$scratch/out.txt"
  fi
}
for major in 20 22 24; do
  project=$scratch/types-node-$major
  mkdir -p "$project"
  echo '{ "private": true }' > "$project/package.json"
  (cd "$project" && npm install --silent --ignore-scripts --no-audit --no-fund "$tarball" "@types/node@$major")
  version=$(node -p "require('$project/node_modules/@types/node/package.json').version")
  for extension in ts cts mts; do cp test/types/consumer.ts "$project/consumer.$extension"; done
  strict=(--strict --target es2022)
  check "module nodenext (CommonJS and ES module)" "${strict[@]}" --module nodenext --moduleResolution nodenext consumer.cts consumer.mts
  check "module commonjs" "${strict[@]}" --module commonjs --moduleResolution node10 consumer.ts
  check "module bundler" "${strict[@]}" --module preserve --moduleResolution bundler consumer.ts
  check "no tsconfig (tsc's defaults)" consumer.ts
done
echo "types: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
