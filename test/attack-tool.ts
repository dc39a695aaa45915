// Builds test/fixtures/attack-tool.cc (a hostile peer's tool, see there) once per source version,
// into a directory any user can read, so that a peer running as another uid can use it too.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const sources = ['test/fixtures/attack-tool.cc', 'native/ring.cc', 'native/segment.cc', 'native/posix/os.cc'];
const headers = ['native/message.h', 'native/link.h', 'native/os.h', 'native/ring.h', 'native/segment.h'];

export function buildAttackTool(): string {
  const hash = createHash('sha256');
  for (const file of [...sources, ...headers]) hash.update(fs.readFileSync(path.join(root, file)));
  const directory = path.join(os.tmpdir(), `crossport-attack-tool-${hash.digest('hex').slice(0, 16)}`);
  const tool = path.join(directory, 'attack-tool');
  if (fs.existsSync(tool)) return tool;
  fs.mkdirSync(directory, { recursive: true, mode: 0o755 });
  fs.chmodSync(directory, 0o755);
  // link.h (included by message.h) needs uv.h for its types only: Node's headers have it.
  const nodeInclude = path.join(process.execPath, '..', '..', 'include', 'node');
  // Built under a name of its own, then renamed: test files built in parallel never see half a binary.
  const building = `${tool}.${process.pid}`;
  execFileSync('g++', ['-std=c++20', '-O1', '-I', nodeInclude, '-o', building, ...sources], { cwd: root, stdio: 'inherit' });
  fs.chmodSync(building, 0o755);
  fs.renameSync(building, tool);
  return tool;
}
