// The package's entry points: the ES module entry and the addon loader.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { report, runFixture } from './helpers';

test('esm/index.mjs, imported from a real ES module, exports exactly what the CommonJS entry does', async () => {
  const run = await runFixture('esm-exports.mjs');
  const esm = report(run, 'esm');
  expect(esm.named).toEqual(esm.commonjs);
  expect(esm.differentFromCommonJs).toEqual([]);
  expect(esm.defaultIsCommonJs).toBe(true);
  expect(esm.works).toBe(true);
});

test('CROSSPORT_ADDON naming a file that does not exist is an error, not a fall-back to another build', () => {
  const missing = path.join(__dirname, 'no-such-build', 'crossport.node');
  const run = spawnSync(process.execPath, ['-e', "require('./dist/index.js')"], {
    cwd: path.join(__dirname, '..'),
    env: { ...process.env, CROSSPORT_ADDON: missing },
    encoding: 'utf8',
  });
  expect(run.status).not.toBe(0);
  expect(run.stderr).toContain(`CROSSPORT_ADDON names ${missing}, which does not exist`);
});

// jest itself loads lib/ afresh for each test file while Node keeps one addon: this suite ran into
// it (an earlier file's port closing during handles.test.ts threw 'Illegal invocation').
test('two copies of the package in one process (a module registry reset) share the addon: the first copy\'s ports keep working', async () => {
  const run = await runFixture('two-copies.js', [], 20000);
  expect(report(run, 'two-copies')).toEqual({
    kind: 'two-copies',
    distinctCopies: true,
    emptyBefore: 'nothing',
    sync: { message: 'sync' },
    later: { message: 'later' },
    events: ['message async', 'close'],
  });
});
