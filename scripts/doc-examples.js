#!/usr/bin/env node
'use strict';
// Runs the examples in the documentation and checks what they print.
//
//   node scripts/doc-examples.js [--list] [file.md ...]     (default: README.md and docs/*.md)
//
// How a document marks its examples (the reader sees ordinary Markdown):
// - Every fenced block in js, javascript, mjs, cjs, ts or typescript is code that runs. If its
//   first line is a comment naming a file (`// parent.js`), it is that file; otherwise it is
//   `example.js` (`example.mjs`, `example.ts`).
// - A ```console block after one or more code blocks runs them: each `$ command` line is run in
//   a fresh directory holding those files, with this package installed as a dependency (a link
//   to this checkout), and the lines that follow, up to the next `$`, are what it must print
//   (standard output and standard error together). In an expected line, `…` stands for any text;
//   a line that is only `…` stands for any number of lines. A last line `(exit code N)` is the
//   exit status the command must end with (0 otherwise).
// - Commands are `node …` (run with this Node) and `tsc …` (this checkout's TypeScript: `.ts`
//   files are compiled strictly against the package's own declarations).
// - A command ending in ` &` runs in the background, as in a shell: a server that the next
//   commands connect to. The runner goes on once it has printed its first line (so a server
//   prints one when it is ready), and at the end of the example waits for it to end on its own;
//   the lines after it are everything it prints, and `(exit code N)` its status, as above.
// - Code blocks that no console block runs before the next heading are an error: a document
//   cannot show code that is not tested.
// Each command has 30 s (DOC_EXAMPLE_TIMEOUT_MS), `tsc` four times that (a strict check of the
// declarations takes 15 s on a busy 2-core machine); a hang is a failure.
const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const PACKAGE = require(path.join(ROOT, 'package.json')).name;
const CODE_LANGUAGES = new Map([
  ['js', 'js'], ['javascript', 'js'], ['cjs', 'cjs'], ['mjs', 'mjs'], ['ts', 'ts'], ['typescript', 'ts'],
]);
const timeoutMs = () => Number(process.env.DOC_EXAMPLE_TIMEOUT_MS) || 30000;
const budgetOf = (command) => (command.command.startsWith('tsc') ? 4 : 1) * timeoutMs();
const ELLIPSIS = '…';

/** The fenced blocks and headings of a Markdown text, in order, with their line numbers. */
function parseMarkdown(text) {
  const items = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)(.*)$/.exec(lines[i]);
    if (open) {
      const [, indent, fence, language] = open;
      const body = [];
      let j = i + 1;
      for (; j < lines.length; j++) {
        const close = lines[j].trimStart();
        if (close.startsWith(fence) && close.slice(fence.length).trim() === '') break;
        body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
      }
      items.push({ kind: 'fence', language: language.toLowerCase(), body: body.join('\n'), line: i + 1 });
      i = j;
    } else if (/^#{1,6}\s/.test(lines[i])) {
      items.push({ kind: 'heading', text: lines[i].replace(/^#+\s*/, ''), line: i + 1 });
    }
  }
  return items;
}

/** The examples of a document: files, then the commands that run them with their expected output. */
function examplesOf(file) {
  const items = parseMarkdown(fs.readFileSync(file, 'utf8'));
  const examples = [];
  const errors = [];
  let heading = path.basename(file);
  let files = [];
  const untested = () => {
    for (const code of files) {
      errors.push(`${file}:${code.line}: a ${code.language} block that no \`\`\`console block runs (under "${heading}")`);
    }
    files = [];
  };
  for (const item of items) {
    if (item.kind === 'heading') {
      untested();
      heading = item.text;
    } else if (CODE_LANGUAGES.has(item.language)) {
      const extension = CODE_LANGUAGES.get(item.language);
      const named = /^\/\/\s*([\w][\w./-]*\.[cm]?[jt]s)\b/.exec(item.body);
      const name = named ? named[1] : `example.${extension}`;
      if (files.some((f) => f.name === name)) {
        errors.push(`${file}:${item.line}: ${name} appears twice in one example (name the files: \`// name.js\` on the first line)`);
      }
      files.push({ name, body: item.body, line: item.line, language: item.language });
    } else if (item.language === 'console') {
      const commands = parseConsole(item.body);
      if (commands.length === 0) errors.push(`${file}:${item.line}: a console block with no \`$ command\` line`);
      examples.push({ file, line: item.line, heading, files, commands });
      files = [];
    }
  }
  untested();
  return { examples, errors };
}

function parseConsole(body) {
  const commands = [];
  for (const line of body.split('\n')) {
    if (line.startsWith('$ ')) {
      const text = line.slice(2).trim();
      const background = /\s&$/.test(text);
      commands.push({ command: background ? text.slice(0, -1).trim() : text, background, expected: [] });
    } else if (commands.length > 0) {
      commands[commands.length - 1].expected.push(line);
    }
  }
  for (const command of commands) {
    while (command.expected.length > 0 && command.expected[command.expected.length - 1].trim() === '') {
      command.expected.pop();
    }
    const status = /^\(exit code (\d+)\)$/.exec(command.expected[command.expected.length - 1] ?? '');
    command.exitCode = status ? Number(status[1]) : 0;
    if (status) command.expected.pop();
  }
  return commands;
}

/** Whether `actual` lines match `expected` lines, where `…` is any text and a `…` line any lines. */
function matches(expected, actual) {
  const patterns = expected.map((line) => line.trimEnd());
  const lines = actual.map((line) => line.trimEnd());
  const memo = new Map();
  const lineMatches = (pattern, line) => {
    if (!pattern.includes(ELLIPSIS)) return pattern === line;
    const regex = pattern.split(ELLIPSIS).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
    return new RegExp(`^${regex}$`).test(line);
  };
  const match = (p, l) => {
    const key = p * (lines.length + 1) + l;
    if (memo.has(key)) return memo.get(key);
    let result;
    if (p === patterns.length) result = l === lines.length;
    else if (patterns[p] === ELLIPSIS) result = match(p + 1, l) || (l < lines.length && match(p, l + 1));
    else result = l < lines.length && lineMatches(patterns[p], lines[l]) && match(p + 1, l + 1);
    memo.set(key, result);
    return result;
  };
  return match(0, 0);
}

/** A fresh directory with the example's files and this package installed (a link). */
function prepare(example) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-doc-'));
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(modules);
  fs.symlinkSync(ROOT, path.join(modules, PACKAGE), 'dir');
  // @types/node for TypeScript examples, from this checkout's dev dependencies.
  const types = path.join(ROOT, 'node_modules', '@types');
  if (fs.existsSync(types)) fs.symlinkSync(types, path.join(modules, '@types'), 'dir');
  for (const file of example.files) {
    const target = path.join(dir, file.name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, `${file.body}\n`);
  }
  if (example.files.some((f) => f.name.endsWith('.ts'))) {
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'], skipLibCheck: false },
      include: ['**/*.ts'],
      exclude: ['node_modules'],
    }));
  }
  return dir;
}

function commandLine(command) {
  const [program, ...args] = command.split(/\s+/);
  if (program === 'node') return [process.execPath, args];
  if (program === 'tsc') return [process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), ...args]];
  throw new Error(`only \`node …\` and \`tsc …\` commands run in examples, not \`${command}\``);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a command with standard output and standard error into one file (so that their lines
 * keep the order in which they were written, as on a terminal).
 */
function start(dir, command, index) {
  const [program, args] = commandLine(command.command);
  const output = path.join(dir, `.output-${index}`);
  const fd = fs.openSync(output, 'w');
  const child = childProcess.spawn(program, args, {
    cwd: dir,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, NODE_OPTIONS: '', FORCE_COLOR: '0', NO_COLOR: '1' },
  });
  fs.closeSync(fd);
  const ended = new Promise((resolve) => {
    child.once('error', (error) => resolve({ status: null, signal: null, error }));
    child.once('exit', (status, signal) => resolve({ status, signal }));
  });
  let done = false;
  ended.then(() => (done = true));
  const read = () => fs.readFileSync(output, 'utf8');
  return {
    command,
    lines: () => {
      const text = read();
      return text === '' ? [] : text.replace(/\n$/, '').split('\n');
    },
    /** Resolves to how it ended, or to { timedOut } after `ms` (then it is killed). */
    async end(ms) {
      let timer;
      const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ms, { timedOut: true })));
      const result = await Promise.race([ended, timeout]);
      clearTimeout(timer);
      if (result.timedOut) {
        child.kill('SIGKILL');
        await ended;
      }
      return result;
    },
    /** Resolves once it printed a whole line, or ended, or `ms` passed. */
    async firstLine(ms) {
      for (const deadline = Date.now() + ms; Date.now() < deadline && !done && !read().includes('\n');) await sleep(10);
    },
    kill() {
      if (!done) child.kill('SIGKILL');
      return ended;
    },
  };
}

/** What is wrong with how a command ended and what it printed, or undefined. */
function check(example, running, result) {
  const { command } = running;
  const lines = running.lines();
  const where = `${example.file}:${example.line} (${example.heading}) \`${command.command}${command.background ? ' &' : ''}\``;
  if (result.timedOut) return `${where}: did not finish within ${budgetOf(command)} ms\n${lines.join('\n')}`;
  if (result.error) return `${where}: ${result.error.message}`;
  if (result.status !== command.exitCode || result.signal !== null) {
    return `${where}: exit ${result.status ?? result.signal}, expected ${command.exitCode}\n${lines.join('\n')}`;
  }
  if (!matches(command.expected, lines)) {
    return `${where}: printed\n${lines.join('\n')}\n--- expected\n${command.expected.join('\n')}`;
  }
  return undefined;
}

/** Runs one example; resolves to a list of failures (empty when it passed). */
async function runExample(example) {
  const dir = prepare(example);
  const failures = [];
  const background = [];
  try {
    for (const [index, command] of example.commands.entries()) {
      const running = start(dir, command, index);
      if (command.background) {
        background.push(running);
        await running.firstLine(timeoutMs());
        continue;
      }
      const failure = check(example, running, await running.end(budgetOf(command)));
      if (failure !== undefined) {
        failures.push(failure);
        break;
      }
    }
    // Background commands end on their own once the others are done (else they are killed below).
    for (const running of failures.length === 0 ? background : []) {
      const failure = check(example, running, await running.end(budgetOf(running.command)));
      if (failure !== undefined) failures.push(failure);
    }
  } finally {
    await Promise.all(background.map((running) => running.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return failures;
}

function documents() {
  const docs = path.join(ROOT, 'docs');
  const found = [path.join(ROOT, 'README.md')];
  if (fs.existsSync(docs)) {
    for (const name of fs.readdirSync(docs).sort()) if (name.endsWith('.md')) found.push(path.join(docs, name));
  }
  return found;
}

module.exports = { examplesOf, runExample, documents, matches, parseMarkdown };

if (require.main === module) {
  (async () => {
    const args = process.argv.slice(2);
    const list = args.includes('--list');
    const files = args.filter((a) => a !== '--list');
    let failed = 0;
    let passed = 0;
    for (const file of files.length > 0 ? files.map((f) => path.resolve(f)) : documents()) {
      const { examples, errors } = examplesOf(file);
      for (const error of errors) {
        console.log(`FAIL ${error}`);
        failed++;
      }
      for (const example of examples) {
        const name = `${path.relative(ROOT, example.file)}:${example.line} ${example.heading}`;
        if (list) {
          console.log(`${name}: ${example.files.map((f) => f.name).join(', ')}; ${example.commands.map((c) => c.command).join('; ')}`);
          continue;
        }
        const failures = await runExample(example);
        if (failures.length === 0) {
          passed++;
          console.log(`ok   ${name}`);
        } else {
          failed++;
          console.log(`FAIL ${failures.join('\n')}`);
        }
      }
    }
    if (!list) console.log(`${passed} examples passed, ${failed} failed`);
    process.exitCode = failed > 0 ? 1 : 0;
  })();
}
