#!/usr/bin/env bash
# The whole test suite on every supported Node (scripts/node-versions.js) other than the one
# running CI, whose run `npm test` is: each Node comes from the registry (scripts/fetch-node.sh)
# and loads its own prebuilt binary (scripts/prebuild.sh, which must have run), found by the
# loader beside the build/ of the Node running CI.
set -euo pipefail
cd "$(dirname "$0")/.."
summary=()
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for major in $(node scripts/node-versions.js); do
  nodedir=$(scripts/fetch-node.sh "$major")
  version=$("$nodedir/bin/node" --version)
  if [[ $version == "$(node --version)" ]]; then
    summary+=("Node $version: the run of npm test")
    continue
  fi
  abi=$("$nodedir/bin/node" -p process.versions.modules)
  echo "== the test suite on Node $version (NODE_MODULE_VERSION $abi)"
  started=$SECONDS
  set +e
  # No CROSSPORT_ADDON: the loader must itself prefer this Node's prebuilt binary to build/,
  # which was compiled for the Node running CI (what a user who switched Node meets).
  PATH="$nodedir/bin:$PATH" "$nodedir/bin/node" node_modules/jest/bin/jest.js 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  set -e
  result=$(grep -E '^Tests:' "$log" | tail -n 1 || true)
  summary+=("Node $version: ${result:-no result} ($((SECONDS - started)) s, exit $code)")
  [[ $code -eq 0 ]] || status=1
done
printf '%s\n' "== test suite per Node" "${summary[@]}"
exit $status
