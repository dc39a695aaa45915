#!/usr/bin/env node
// The Node.js majors this package supports, read from package.json "engines" (which must list
// them as `^N.0.0 || ...`): one source for the prebuilds (scripts/prebuild.sh), CI's matrix
// (.ci/nodes.sh) and what the install tells a user. Prints them space-separated.
'use strict';
const { engines } = require('../package.json');

const majors = engines.node.split('||').map((range) => {
  const match = /^\s*\^(\d+)\.0\.0\s*$/.exec(range);
  if (!match) throw new Error(`package.json engines.node: expected "^N.0.0 || ...", got "${engines.node}"`);
  return Number(match[1]);
});
if (require.main === module) console.log(majors.join(' '));
module.exports = majors;
