// Every example in README.md and docs/*.md runs as written and prints what the document says
// (scripts/doc-examples.js explains how a document marks them).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { fixture } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const docs = require('../scripts/doc-examples.js');

// docs/nats.md's examples start a nats-server (from PATH): where none is installed they are skipped,
// as test/nats.test.ts is, and said to be; CI installs one, and there a missing server fails.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { natsServerBinary } = require('./nats-server');
const needsNatsServer = new Set(['docs/nats.md']);
const natsServerFile: string | null = natsServerBinary();
const natsServer = natsServerFile !== null;
if (!natsServer && process.env.CI) {
  throw new Error('nats-server is not installed; CI installs it (.ci/install-nats-server.sh)');
}
// (found also in /usr/sbin, which a user's PATH may lack; the examples run it by name)
if (natsServerFile !== null) process.env.PATH = `${path.dirname(natsServerFile)}${path.delimiter}${process.env.PATH}`;

describe('the documentation runs', () => {
  for (const file of docs.documents() as string[]) {
    const { examples, errors } = docs.examplesOf(file);
    const name = path.relative(path.join(__dirname, '..'), file);
    test(`${name}: every code block is run by an example`, () => {
      expect(errors).toEqual([]);
    });
    const run = needsNatsServer.has(name) && !natsServer ? test.skip : test;
    for (const example of examples) {
      run(`${name}:${example.line} ${example.heading}${run === test ? '' : ' (no nats-server installed)'}`, async () => {
        expect(await docs.runExample(example)).toEqual([]);
      }, 300000);  // (the runner itself bounds each command)
    }
  }
});

test('the demo (npm run demo) ends on its own with exit code 0 and says what it showed', () => {
  const demo = spawnSync(process.execPath, [path.join(__dirname, '..', 'demo', 'demo.js')], { encoding: 'utf8', timeout: 140000 });
  expect(demo.stderr).toBe('');
  expect(demo.stdout).not.toContain('CHECK FAILED');
  expect(demo.stdout).toContain('What this showed, every step checked:');
  expect(demo.status).toBe(0);
}, 150000);

describe('the example runner catches a broken example', () => {
  const { examples, errors } = docs.examplesOf(fixture('docs/broken.md'));
  const byHeading = (heading: string) => examples.find((e: { heading: string }) => e.heading === heading);

  test('a code block that nothing runs', () => {
    expect(errors).toEqual([expect.stringMatching(/broken\.md:\d+: a js block that no ```console block runs \(under "Untested"\)/)]);
  });

  test('a working example passes, with … standing for any text and any lines', async () => {
    expect(await docs.runExample(byHeading('Works'))).toEqual([]);
  });

  test('wrong output', async () => {
    expect(await docs.runExample(byHeading('Wrong output'))).toEqual([expect.stringContaining('printed\nchild says hi')]);
  });

  test('a wrong exit code', async () => {
    expect(await docs.runExample(byHeading('Throws'))).toEqual([expect.stringContaining('exit 1, expected 0')]);
  });

  test('an example that hangs', async () => {
    process.env.DOC_EXAMPLE_TIMEOUT_MS = '3000';
    try {
      expect(await docs.runExample(byHeading('Hangs'))).toEqual([expect.stringContaining('did not finish')]);
    } finally {
      delete process.env.DOC_EXAMPLE_TIMEOUT_MS;
    }
  });

  test('a server in the background that a client reaches; all it printed is checked when it ends', async () => {
    expect(await docs.runExample(byHeading('Server'))).toEqual([]);
  });

  test('a background server that prints what the document does not say', async () => {
    expect(await docs.runExample(byHeading('Server, wrong output'))).toEqual([
      expect.stringMatching(/`node server\.js &`: printed\nlistening\nserved 21\n--- expected/),
    ]);
  });

  test('a background server that does not end', async () => {
    process.env.DOC_EXAMPLE_TIMEOUT_MS = '3000';
    try {
      expect(await docs.runExample(byHeading('Server that stays'))).toEqual([
        expect.stringMatching(/`node server\.js &`: did not finish within 3000 ms/),
      ]);
    } finally {
      delete process.env.DOC_EXAMPLE_TIMEOUT_MS;
    }
  });
});
