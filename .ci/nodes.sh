#!/usr/bin/env bash
# The whole test suite on every supported Node (scripts/node-versions.js) other than the one
# running CI, whose run `npm test` is: each Node comes from the registry (scripts/fetch-node.sh)
# and loads its own prebuilt binary (scripts/prebuild.sh, which must have run).
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
  CROSSPORT_ADDON=prebuilds/linux-x64/crossport-ipc.abi$abi.glibc.node PATH="$nodedir/bin:$PATH" \
    "$nodedir/bin/node" node_modules/jest/bin/jest.js 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  set -e
  result=$(grep -E '^Tests:' "$log" | tail -n 1 || true)
  summary+=("Node $version: ${result:-no result} ($((SECONDS - started)) s, exit $code)")
  [[ $code -eq 0 ]] || status=1
done
printf '%s\n' "== test suite per Node" "${summary[@]}"
exit $status
