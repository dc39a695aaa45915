#!/usr/bin/env bash
# Builds the prebuilt binaries that the package ships: one per supported Node.js ABI
# (scripts/node-versions.js), for linux-x64 glibc, into prebuilds/linux-x64/ as
# crossport-ipc.abi<NODE_MODULE_VERSION>.glibc.node, the names node-gyp-build looks for.
# Each Node comes from the registry (scripts/fetch-node.sh): prebuildify compiles against its
# headers (node-gyp cannot download them here), and the binary is loaded once by that Node.
# The build runs in a scratch copy of the sources, so the repository's own build/ is untouched.
# Never committed: `npm pack` takes prebuilds/ into the tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r package.json binding.gyp native "$scratch/"
ln -s "$repo/node_modules" "$scratch/node_modules"
rm -rf prebuilds
for major in $(node scripts/node-versions.js); do
  nodedir=$(scripts/fetch-node.sh "$major")
  version=$("$nodedir/bin/node" --version)
  echo "== prebuild for Node.js $version"
  npm_config_nodedir=$nodedir npx --no-install prebuildify --cwd "$scratch" --out "$repo" \
    --target "$version" --no-napi --strip --tag-libc --quiet
  abi=$("$nodedir/bin/node" -p process.versions.modules)
  binary=prebuilds/linux-x64/crossport-ipc.abi$abi.glibc.node
  "$nodedir/bin/node" -e "require('./$binary')"
  echo "   $binary ($(stat -c %s "$binary") bytes)"
done
