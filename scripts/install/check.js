// Run at install by node-gyp-build (package.json "prebuild.test") in place of its own test: it
// throws, so that the install compiles the addon, when the binary node-gyp-build would load
// cannot serve: there is none for this Node (platform, arch, libc, ABI), it refuses this Node's
// ABI (native/addon.cc), or, in a git checkout, a native source changed after it was built. So an
// install that finds a prebuild for this Node compiles nothing, and `npm install` in the
// repository compiles only after a native change or under another Node ABI.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const nodeGypBuild = require('node-gyp-build');

const root = path.join(__dirname, '..', '..');
const file = nodeGypBuild.path(root);
require(file);

// What the build depends on, other than the Node it was built for (checked by loading it).
function sources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sources(full) : [full];
  });
}
if (fs.existsSync(path.join(root, '.git'))) {
  const built = fs.statSync(file).mtimeMs;
  for (const source of [path.join(root, 'binding.gyp'), ...sources(path.join(root, 'native'))]) {
    if (fs.statSync(source).mtimeMs > built) {
      throw new Error(`${path.relative(root, source)} changed since ${path.relative(root, file)} was built`);
    }
  }
}
