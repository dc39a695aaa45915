// Opening and closing channels over and over leaks no fds, no segment mappings and no memory
// beyond a bound (scripts/leak-loop.js, run here with 20,000 channels; 100,000 by default).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

test('20,000 channels opened and closed: fds and segment mappings back to their count, RSS bounded', () => {
  const script = path.join(__dirname, '..', 'scripts', 'leak-loop.js');
  const run = spawnSync(process.execPath, [script, '20000', '--json'], { encoding: 'utf8', timeout: 50000 });
  expect(run.stderr).toBe('');
  const summary = JSON.parse(run.stdout);
  expect(summary.atEnd.fds).toBe(summary.afterWarmup.fds);
  expect(summary.atEnd.segmentMaps).toBe(summary.afterWarmup.segmentMaps);
  expect(summary.atEnd.maps - summary.afterWarmup.maps).toBeLessThan(200);
  // (Not under ASan, whose quarantine holds freed memory: see scripts/leak-loop.js.)
  if (summary.rssBounded) expect(summary.rssGrowthMiB).toBeLessThan(64);
  expect(summary.ok).toBe(true);
  expect(run.status).toBe(0);
});
