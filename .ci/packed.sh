#!/usr/bin/env bash
# The package as users get it: packs it (with the prebuilds of scripts/prebuild.sh), then under
# each supported Node installs the tarball into a fresh project with no compiler reachable (PATH
# holds node and npm only: no cc, c++ or make; CC and CXX name nothing) and runs a parent and a
# forked child that talk through it. In each project, binaries built for the other Nodes are put
# where a local build goes and must be refused with the clear error (exit 1, not a crash).
# Last, a package with no prebuild for this Node, installed with no compiler, must fail saying
# so, without a Python traceback.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
npm_cli=$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js

tarball=$scratch/$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
echo "== $(basename "$tarball"): $(stat -c %s "$tarball") bytes, $(tar -tzf "$tarball" | wc -l) files, $(tar -tzf "$tarball" | grep -c '^package/prebuilds/.*\.node$') prebuilds"
passed=0
failures=0
ok() { echo "ok    $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }

# A PATH for one Node: its node, npm run by it, and sh for npm's scripts; nothing else.
toolbox() {
  local dir=$scratch/bin-$1
  mkdir -p "$dir"
  ln -sf "$2/bin/node" "$dir/node"
  ln -sf "$(command -v sh)" "$dir/sh"
  printf '#!/bin/sh\nexec node "%s" "$@"\n' "$npm_cli" > "$dir/npm"
  chmod +x "$dir/npm"
  echo "$dir"
}
bare() { env PATH="$1" CC=/nonexistent/cc CXX=/nonexistent/c++ "${@:2}"; }

declare -A nodedirs
for major in $(node scripts/node-versions.js); do nodedirs[$major]=$(scripts/fetch-node.sh "$major"); done
for major in $(node scripts/node-versions.js); do
  bin=$(toolbox "$major" "${nodedirs[$major]}")
  version=$(bare "$bin" node --version)
  if bare "$bin" sh -c 'command -v make || command -v cc || command -v c++'; then fail "a compiler or make is reachable"; fi
  project=$scratch/app-$major
  mkdir -p "$project"
  echo '{ "private": true }' > "$project/package.json"
  cp .ci/packed/parent.js .ci/packed/child.mjs "$project/"
  start=$(date +%s%N)
  if ! (cd "$project" && bare "$bin" npm install --no-audit --no-fund --loglevel=error "$tarball") > "$scratch/install.log" 2>&1; then
    fail "Node $version: npm install"; cat "$scratch/install.log"; continue
  fi
  took=$(( ($(date +%s%N) - start) / 1000000 ))
  [[ -d $project/node_modules/crossport-ipc/build ]] && fail "Node $version: the install compiled"
  if result=$(cd "$project" && bare "$bin" node parent.js); then
    ok "Node $version: installed in $took ms with no compiler; parent and child talk: $result"
  else
    fail "Node $version: parent.js: $result"
  fi
  # A binary built for another Node, where a local build goes (as after upgrading Node), and no
  # prebuilt one for this Node (the loader would take that instead of a build for another Node).
  release=$project/node_modules/crossport-ipc/build/Release
  mkdir -p "$release"
  abi=$(bare "$bin" node -p process.versions.modules)
  cp "$(ls "$repo"/prebuilds/linux-x64/*.node | grep -v "\.abi$abi\." | head -n 1)" "$release/crossport.node"
  if result=$(cd "$project" && bare "$bin" node parent.js); then
    ok "Node $version: a local build for another Node is passed over for this Node's prebuilt binary: $result"
  else
    fail "Node $version: a local build for another Node hid the prebuilt binary: $result"
  fi
  rm -rf "$project/node_modules/crossport-ipc/prebuilds"
  for other in "$repo"/prebuilds/linux-x64/*.node; do
    [[ $other == *".abi$abi."* ]] && continue
    cp "$other" "$release/crossport.node"
    set +e
    output=$(cd "$project" && bare "$bin" node -e "require('crossport-ipc')" 2>&1)
    status=$?
    set -e
    message=$(grep -m1 'crossport-ipc: ' <<< "$output" || true)
    if [[ $status -eq 1 && $message == *"but this is Node.js $version"* && $message == *'npm rebuild crossport-ipc'* && $output == *ERR_DLOPEN_FAILED* ]]; then
      ok "Node $version refuses $(basename "$other"): $message"
    else
      fail "Node $version with $(basename "$other"): exit $status"; echo "$output"
    fi
  done
  rm -rf "$project/node_modules/crossport-ipc/build"
done

# No prebuild for this Node and no compiler: a clear error.
mkdir -p "$scratch/bare-package" "$scratch/app-none"
tar -xzf "$tarball" -C "$scratch/bare-package"
rm -rf "$scratch/bare-package/package/prebuilds"
bare_tarball=$scratch/$(cd "$scratch/bare-package/package" && npm pack --silent --ignore-scripts --pack-destination "$scratch" | tail -n 1)
echo '{ "private": true }' > "$scratch/app-none/package.json"
bin=$(toolbox default "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")")
if (cd "$scratch/app-none" && bare "$bin" npm install --no-audit --no-fund "$bare_tarball") > "$scratch/none.log" 2>&1; then
  fail "an install with no prebuild and no compiler succeeded"
elif grep -q 'crossport-ipc: there is no prebuilt binary' "$scratch/none.log" && ! grep -q Traceback "$scratch/none.log"; then
  ok "no prebuild and no compiler: $(grep -m1 'crossport-ipc: there is no prebuilt binary' "$scratch/none.log")"
else
  fail "no prebuild and no compiler, unclear error:"; cat "$scratch/none.log"
fi
echo "packed: $passed passed, $failures failed"
[[ $failures -eq 0 ]]
