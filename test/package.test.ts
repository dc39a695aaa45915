// The package by its name, `crossport-ipc`, from inside the repository (package.json "exports"
// lets a package require itself): from a fixture process, as CommonJS and as an ES module, and
// from jest.
import * as path from 'node:path';

import { report, runFixture } from './helpers';

const root = path.join(__dirname, '..');

test('a fixture requires and imports crossport-ipc and talks to a forked child through it', async () => {
  const run = await runFixture('package-name.js');
  expect(report(run, 'package')).toEqual({
    kind: 'package',
    resolved: path.join(root, 'dist', 'index.js'),
    esmIsCjs: true,
    echo: [['hello', 'crossport-ipc']],
    otherProcess: true,
  });
});

test('jest resolves crossport-ipc to the package and it works', async () => {
  expect(require.resolve('crossport-ipc')).toBe(path.join(root, 'dist', 'index.js'));
  const { MessageChannel } = require('crossport-ipc') as typeof import('../lib');
  const { port1, port2 } = new MessageChannel();
  const received = new Promise((resolve) => port2.once('message', resolve));
  port1.postMessage({ name: 'crossport-ipc' });
  expect(await received).toEqual({ name: 'crossport-ipc' });
  port1.close();
});
