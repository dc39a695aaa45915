'use strict';
// crossport demo:  npm run demo   (node demo/demo.js)
//
// Shows, with real processes, what crossport does that neither worker_threads nor child_process
// IPC does, checking each claim as it goes:
//   1. a port handed between processes: two children talk over it directly, and one of them
//      hands its end on to a process of its own in the middle of the conversation (demo/peer.js);
//   2. a live server socket moved to a child, which then serves connections (demo/server.js);
//   3. backpressure: bufferedAmount and 'drain' against a slow consumer (demo/consumer.js);
//   4. speed, measured as it can be in a few seconds: interleaved rounds against worker_threads,
//      medians and spread, with the machine's load (demo/sink.js).
// It ends on its own, with exit code 0 when every check held (1 otherwise), and says what it
// showed.
const { once } = require('node:events');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const workerThreads = require('node:worker_threads');

const { fork, MessageChannel } = require('crossport-ipc');

const here = (file) => path.join(__dirname, file);
const say = (...lines) => console.log(lines.join('\n'));
const count = (n) => n.toLocaleString('en-US');
const failures = [];
function check(condition, what) {
  if (!condition) {
    failures.push(what);
    console.log(`   CHECK FAILED: ${what}`);
  }
}

// A hang is a failure, never a silent wait (unref'd: it does not keep the process alive itself).
setTimeout(() => {
  console.log('the demo did not finish within 120 s: giving up');
  process.exit(1);
}, 120000).unref();

/** Resolves with the next message on `port`. */
const next = async (port) => (await once(port, 'message'))[0];

async function handOver() {
  say('', '1. A port handed between processes');
  const ping = fork(here('peer.js'), ['ping']);
  const pong = fork(here('peer.js'), ['pong']);
  const exited = Promise.all([once(ping, 'exit'), once(pong, 'exit')]);  // (A may be gone before we look)
  const { port1, port2 } = new MessageChannel();
  const rounds = 10000;
  const cpuBefore = process.cpuUsage();
  ping.port.postMessage({ port: port1, rounds, handOverAt: rounds / 2 }, [port1]);
  pong.port.postMessage({ port: port2 }, [port2]);
  say(`   The parent (pid ${process.pid}) forked A (pid ${ping.pid}) and B (pid ${pong.pid}), made a`,
    '   MessageChannel and sent one end to each. A and B now play ping-pong over it directly.');
  const [{ handedTo }, played] = await Promise.all([next(ping.port), next(pong.port)]);
  const cpu = process.cpuUsage(cpuBefore);
  say(`   Halfway, A forked C (pid ${handedTo}), handed its end of the channel to C, and exited;`,
    '   C took the game up once A was gone.',
    `   B got ${count(played.pings)} pings, in order: ${played.pingsFrom.map(([pid, n]) =>
      `${count(n)} from ${pid === ping.pid ? 'A' : pid === handedTo ? 'C' : `pid ${pid}`}`).join(', then ')}.`,
    `   The parent spent ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms of CPU meanwhile: no message went through it.`);
  check(played.pings === rounds && played.inOrder, `B got ${played.pings} pings of ${rounds}, in order: ${played.inOrder}`);
  check(played.pingsFrom.length === 2 && played.pingsFrom[0][0] === ping.pid && played.pingsFrom[1][0] === handedTo,
    'the pings came from A, then from C');
  await exited;
}

async function serverMove() {
  say('', '2. A live server socket moved to a child');
  const server = net.createServer();
  await once(server.listen(0, '127.0.0.1'), 'listening');
  const { port } = server.address();
  const child = fork(here('server.js'));
  const exited = once(child, 'exit');
  child.port.postMessage({ server }, [server]);
  say(`   The parent listened on 127.0.0.1:${port}, then posted the server to a new child (pid ${child.pid}).`,
    `   Here, server.listening is now ${server.listening}; in the child: ${JSON.stringify(await next(child.port))}.`);
  check(!server.listening, 'the parent\'s server closed once it was sent');
  const answers = await Promise.all([1, 2, 3].map(async () => {
    const socket = net.connect(port, '127.0.0.1').setEncoding('utf8');
    let text = '';
    for await (const chunk of socket) text += chunk;
    return text.trim();
  }));
  say('   Three clients connected to that port. They were answered:', ...answers.map((text) => `     ${text}`));
  check(answers.every((text) => text.startsWith(`hello from pid ${child.pid}`)), 'every client was served by the child');
  child.port.postMessage('stop');
  await exited;
}

async function backpressure() {
  say('', "3. Backpressure: bufferedAmount and 'drain'");
  const child = fork(here('consumer.js'));
  const exited = once(child, 'exit');
  const { port } = child;
  const items = 20000;
  const body = 'x'.repeat(1000);
  let sent = 0;
  // Without looking: postMessage never blocks and never drops, so what the consumer has no room
  // for yet waits in this process.
  let peak = 0;
  for (let i = 0; i < items; i++) {
    port.postMessage({ i: sent++, body });
    peak = Math.max(peak, port.bufferedAmount);
  }
  const unbounded = peak;
  await once(port, 'drain');
  // With the idiom: wait for 'drain' whenever more than 1 MiB is held here.
  const limit = 1024 * 1024;
  let waits = 0;
  peak = 0;
  for (let i = 0; i < items; i++) {
    port.postMessage({ i: sent++, body });
    peak = Math.max(peak, port.bufferedAmount);
    if (port.bufferedAmount > limit) {
      waits++;
      await once(port, 'drain');
    }
  }
  port.postMessage('count');
  const { received, inOrder } = await next(port);
  say(`   The parent posted ${count(items)} messages of 1 KB to a slow consumer (pid ${child.pid}) without looking:`,
    `   up to ${(unbounded / 1e6).toFixed(1)} MB waited in the parent's memory (port.bufferedAmount).`,
    `   Then ${count(items)} more, awaiting 'drain' whenever bufferedAmount passed 1 MiB: it waited ${count(waits)} times,`,
    `   and never held more than ${(peak / 1e6).toFixed(2)} MB. The consumer got all ${count(received)}, in order: ${inOrder}.`);
  check(received === 2 * items && inOrder, `the consumer got ${received} of ${2 * items} in order`);
  check(unbounded > 4 * limit, 'without the idiom, several MB waited in the parent');
  check(waits > 0 && peak <= limit + 2048, `with the idiom, at most 1 MiB and a message waited (${peak} bytes)`);
  port.close();
  await exited;
}

// ---- 4. Speed ---------------------------------------------------------------------------------

const ROUNDS = 7;
const PER_ROUND = 100000;

/** Posts PER_ROUND small objects on `port`, a chunk per turn of the event loop; msgs/s. */
async function round(port, start) {
  port.postMessage({ start });
  const began = process.hrtime.bigint();
  for (let i = 0; i < PER_ROUND; i += 1000) {
    for (let j = i; j < i + 1000; j++) {
      port.postMessage({ id: start + j, op: 'add', args: [1, 2, 3], last: j === PER_ROUND - 1 });
    }
    await new Promise(setImmediate);
  }
  const { received, bad } = await next(port);
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  check(received === start + PER_ROUND && bad === 0, `a round delivered ${received - start} of ${PER_ROUND}, ${bad} wrong`);
  return PER_ROUND / seconds;
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

async function speed() {
  say('', '4. Speed, one way, small objects { id, op, args: [1, 2, 3] }');
  const load = os.loadavg()[0];
  const child = fork(here('sink.js'));
  const { port1, port2 } = new workerThreads.MessageChannel();
  const worker = new workerThreads.Worker(here('sink.js'), { workerData: { port: port2 }, transferList: [port2] });
  const exited = Promise.all([once(child, 'exit'), once(worker, 'exit')]);
  const rates = { crossport: [], worker_threads: [] };
  // A warm-up round each, then rounds taken in turn, so that both meet the same moments of the
  // machine; the first of each pair alternates.
  await round(child.port, 0);
  await round(port1, 0);
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['crossport', 'worker_threads'] : ['worker_threads', 'crossport'];
    for (const kind of order) {
      rates[kind].push(await round(kind === 'crossport' ? child.port : port1, (r + 1) * PER_ROUND));
    }
  }
  const ratios = rates.crossport.map((rate, r) => rate / rates.worker_threads[r]);
  const line = (name, values) => `   ${name.padEnd(48)} median ${count(Math.round(median(values))).padStart(9)} msgs/s` +
    `  (range ${count(Math.round(Math.min(...values)))} - ${count(Math.round(Math.max(...values)))})`;
  say(`   ${ROUNDS} rounds of ${count(PER_ROUND)} messages each, taken in turn after a warm-up round:`,
    line('crossport, parent process -> child process', rates.crossport),
    line('worker_threads, main thread -> Worker thread', rates.worker_threads),
    `   crossport / worker_threads, round by round: median ${median(ratios).toFixed(2)}x, ` +
      `range ${Math.min(...ratios).toFixed(2)}x - ${Math.max(...ratios).toFixed(2)}x.`,
    `   Load average ${load.toFixed(2)} at the start and ${os.loadavg()[0].toFixed(2)} at the end, on ${os.availableParallelism()} CPUs` +
      `${Math.max(load, os.loadavg()[0]) >= os.availableParallelism() ? ': the machine was busy, so these figures are noisy' : ''}.`,
    '   A few seconds on one machine: `npm run bench` measures every case in fresh processes (README, Measured).');
  child.port.close();
  port1.close();
  await exited;
}

(async () => {
  say('crossport: a worker_threads MessagePort whose two ends live in different processes.');
  await handOver();
  await serverMove();
  await backpressure();
  await speed();
  say('');
  if (failures.length > 0) {
    say(`${failures.length} check(s) failed:`, ...failures.map((what) => `  ${what}`));
    process.exitCode = 1;
    return;
  }
  say('What this showed, every step checked:',
    '  1. a port sent to another process works there, talking straight to its peer, and can be handed on again mid-conversation;',
    '  2. a listening server moved to another process keeps its port and serves there;',
    "  3. a producer that awaits 'drain' keeps what it holds bounded, and nothing is lost;",
    '  4. small messages between two processes, against worker_threads between two threads, in the same run.',
    'Every port is closed and every child has exited: this process ends now, with exit code 0.');
})().catch((error) => {
  console.log('the demo failed:', error);
  process.exitCode = 1;
});
