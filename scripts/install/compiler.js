// Run at install by node-gyp-build before it compiles the addon, which it does only when no
// prebuilt binary fits this Node (see check.js): says so plainly and stops when the tools to
// compile are missing, rather than letting node-gyp fail deep inside gyp with a traceback.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// The file `command` names (a path, or a name looked up on PATH), if it is an executable.
function executable(command) {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, command));
  return candidates.find((candidate) => {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return fs.statSync(candidate).isFile();
    } catch {
      return false;
    }
  });
}

// What node-gyp runs: gyp asks $CC (else cc) what it predefines, the Makefile compiles with $CXX
// (else c++) and is run by make.
const missing = [];
for (const [variable, fallback] of [['CC', 'cc'], ['CXX', 'c++']]) {
  const set = (process.env[variable] ?? '').trim();
  if (executable(set.split(/\s+/)[0] || fallback)) continue;
  missing.push(set ? `${variable}=${set} is not an executable` : `no ${fallback} on PATH`);
}
if (!executable('make')) missing.push('no make on PATH');
if (missing.length > 0) {
  process.stderr.write(
    `crossport-ipc: there is no prebuilt binary for Node.js ${process.version} ` +
      `(NODE_MODULE_VERSION ${process.versions.modules}, ${process.platform}-${process.arch}), ` +
      `so it must be compiled, and it cannot be: ${missing.join('; ')}.\n` +
      `Prebuilt binaries cover Linux x64 (glibc) with Node.js ${require('../../package.json').engines.node}. ` +
      'Elsewhere, ' +
      'install a C++20 compiler, make and Python 3 (Debian/Ubuntu: apt-get install g++ make python3), ' +
      'then run `npm rebuild crossport-ipc`.\n',
  );
  process.exit(1);
}
