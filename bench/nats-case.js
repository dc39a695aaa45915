'use strict';
// One run of the NATS benchmark:  node bench/nats-case.js <transport> <case> <count> <address> [peer]
//   transport: remote-port      crossport listen()/connect() over NATS (V8's structured clone)
//              nats-json        plain NATS with JSON payloads: publish / subscribe one way, and
//                               request / reply for the round-trip cases
//              nats-json-pubsub plain NATS with JSON payloads, round trips as a remote port makes
//                               them: a subject each way, published and subscribed, no reply subject
//   case:      small      the small object { id, op, args: [1, 2, 3], tag }, pipelined one way
//                         (the receiver acknowledges every ACK_EVERY, at most WINDOW unacknowledged)
//              spaced     the same, one message per turn of the sender's event loop (a
//                         setImmediate between two): nothing goes out together with anything else
//              pingpong   one in flight: round-trip p50 / p99, CPU per round trip
//              rpc        64 requests in flight, each answered: requests/s, CPU per request
//              channels   (remote-port) <count> channels on one connection per side: memory,
//                         server subscriptions, idle heartbeat traffic, throughput round-robin
// CPU is process.cpuUsage() (user + system) of each side over the measured part (after WARMUP).
// The first process (the sender) starts the peer (the same script and node flags, role 'peer');
// both are joined only through the NATS server at <address>. Prints one line `RESULT {json}`.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { connect: natsConnect } = require('@nats-io/transport-node');
const crossport = require('..');

const [transport, kase, countText, address, role] = process.argv.slice(2);
const count = Number(countText);
const { host, pathname } = new URL(address);
const subject = pathname.slice(1);
const ACK_EVERY = 1000;
const WINDOW = 10000;
const IN_FLIGHT = 64;
const WARMUP = Math.min(2000, Math.ceil(count / 10));
const small = (id) => ({ id, op: 'add', args: [1, 2, 3], tag: 'bench' });
const isSmall = (m, id) => m && m.id === id && m.op === 'add' && m.tag === 'bench' && m.args.length === 3 && m.args[2] === 3;

function fail(error) {
  process.stdout.write(`RESULT ${JSON.stringify({ ok: false, error: String(error && error.stack || error) })}\n`);
  process.exit(1);
}
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
setTimeout(() => fail(new Error('timed out')), 120000).unref();

const rssKiB = (pid = 'self') => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const turn = () => new Promise(setImmediate);

// --- Endpoints: { post(value), onMessage(fn), serve(answer), request(value) -> Promise, close() } -

async function remoteEndpoint(isPeer) {
  const nc = await natsConnect({ servers: host });
  const options = { connection: nc };
  let port;
  if (isPeer) {
    port = await crossport.connect(address, options);
  } else {
    const server = await crossport.listen(address, options);
    startPeer();
    port = await new Promise((resolve) => server.once('connection', resolve));
    server.close();
  }
  const inbox = messageInbox();
  port.on('message', inbox.deliver);
  // The peer ends with its port (its connection would keep it alive).
  if (isPeer) port.on('close', () => nc.close().then(() => process.exit(0)));
  return {
    post: (value) => port.postMessage(value),
    onMessage: inbox.onMessage,
    serve(answer) {
      inbox.onMessage((m) => port.postMessage(answer(m)));
      port.postMessage('serving');
    },
    request: requester((value) => port.postMessage(value), inbox),
    async close() {
      port.close();
      await nc.flush();
      await nc.close();
    },
  };
}

async function jsonEndpoint(isPeer) {
  const nc = await natsConnect({ servers: host });
  const mine = `${subject}.${isPeer ? 'peer' : 'sender'}`;
  const theirs = `${subject}.${isPeer ? 'sender' : 'peer'}`;
  const rpc = `${subject}.rpc`;
  const inbox = messageInbox();
  nc.subscribe(mine, { callback: (error, msg) => inbox.deliver(JSON.parse(Buffer.from(msg.data).toString())) });
  await nc.flush();
  if (!isPeer) {
    const ready = inbox.next();
    startPeer();
    await ready;
  } else {
    nc.publish(theirs, Buffer.from('"ready"'));
  }
  const post = (value) => nc.publish(theirs, Buffer.from(JSON.stringify(value)));
  const pubsub = transport === 'nats-json-pubsub';
  return {
    post,
    onMessage: inbox.onMessage,
    async serve(answer) {
      if (pubsub) {
        inbox.onMessage((m) => post(answer(m)));
      } else {
        nc.subscribe(rpc, { callback: (error, msg) => msg.respond(Buffer.from(JSON.stringify(answer(JSON.parse(Buffer.from(msg.data).toString()))))) });
        await nc.flush();
      }
      post('serving');
    },
    request: pubsub ? requester(post, inbox) : async (value) => {
      const reply = await nc.request(rpc, Buffer.from(JSON.stringify(value)), { timeout: 10000 });
      return JSON.parse(Buffer.from(reply.data).toString());
    },
    async close() {
      await nc.flush();  // what was published goes out before the connection closes
      await nc.close();
    },
  };
}

/** Request/answer over a pair of one-way channels: answers carry the request's id. */
function requester(post, inbox) {
  const pending = new Map();
  let handler;
  return (value) => new Promise((resolve) => {
    pending.set(value.id, resolve);
    handler ??= inbox.onMessage((m) => {
      const done = pending.get(m?.id);
      pending.delete(m?.id);
      done?.(m);  // (not 'stopping', the answer to 'stop')
    });
    post(value);
  });
}

/** Messages that arrive before a handler is set wait for it (no message is lost to a race). */
function messageInbox() {
  let handler;
  const early = [];
  return {
    deliver(message) {
      if (handler === undefined) early.push(message);
      else handler(message);
    },
    onMessage(fn) {
      handler = fn;
      while (early.length > 0 && handler === fn) fn(early.shift());
      return fn;
    },
    /** The next message (and no handler after it). */
    next() {
      return new Promise((resolve) => this.onMessage((message) => {
        handler = undefined;
        resolve(message);
      }));
    },
  };
}

function startPeer() {
  spawn(process.execPath, [...process.execArgv, __filename, transport, kase, countText, address, 'peer'], { stdio: ['ignore', 2, 2] });
}

const endpointFor = (isPeer) => (transport === 'remote-port' ? remoteEndpoint : jsonEndpoint)(isPeer);

// --- Cases ---------------------------------------------------------------------------------

async function peer() {
  if (kase === 'channels') return channelsPeer();
  const endpoint = await endpointFor(true);
  const total = count + WARMUP;
  const stop = async () => {
    await endpoint.close();
    process.exit(0);
  };
  let next = 0;
  let cpuStart = 0;
  // The peer's CPU from the end of the warmup to the last message of the run.
  const count1 = () => {
    next++;
    if (next === WARMUP) cpuStart = cpuMicros();
    return next === total ? cpuMicros() - cpuStart : 0;
  };
  if (kase === 'small' || kase === 'spaced') {
    endpoint.onMessage((m) => {
      if (m === 'stop') return stop();
      if (!isSmall(m, next)) fail(new Error(`message ${next} wrong: ${JSON.stringify(m)}`));
      const cpu = count1();
      if (next % ACK_EVERY === 0 || next === WARMUP || next === total) endpoint.post({ ack: next, cpu });
    });
  } else {
    await endpoint.serve((m) => {
      if (m === 'stop') {
        setImmediate(stop);
        return 'stopping';
      }
      const cpu = count1();
      return cpu ? { ...m, cpu } : m;
    });
    // Request/reply answers on its own subject; 'stop' comes on the one-way one.
    if (transport === 'nats-json') endpoint.onMessage((m) => m === 'stop' && stop());
  }
}

async function sender() {
  if (kase === 'channels') return channelsSender();
  const endpoint = await endpointFor(false);
  const total = count + WARMUP;
  let result;
  if (kase === 'small' || kase === 'spaced') {
    let acked = 0;
    let wake = () => {};
    let peerCpu = 0;
    endpoint.onMessage((m) => {
      acked = m.ack;
      if (m.cpu) peerCpu = m.cpu;
      wake();
    });
    let start = 0;
    let cpuStart = 0;
    for (let id = 0; id < total; id++) {
      if (id === WARMUP) {
        while (acked < WARMUP) await new Promise((resolve) => (wake = resolve));
        start = process.hrtime.bigint();
        cpuStart = cpuMicros();
      }
      while (id - acked >= WINDOW) await new Promise((resolve) => (wake = resolve));
      endpoint.post(small(id));
      if (kase === 'spaced' || id % 500 === 0) await turn();
    }
    while (acked < total) await new Promise((resolve) => (wake = resolve));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const senderCpu = cpuMicros() - cpuStart;
    result = { msgsPerSec: count / seconds, cpuSenderPerMsg: senderCpu / count, cpuPeerPerMsg: peerCpu / count,
      cpuTotalPerMsg: (senderCpu + peerCpu) / count };
  } else {
    await new Promise((resolve) => endpoint.onMessage((m) => m === 'serving' && resolve()));
    let peerCpu = 0;
    const check = (reply, id) => {
      if (reply && reply.cpu) {
        peerCpu = reply.cpu;
        delete reply.cpu;
      }
      if (!isSmall(reply, id)) throw new Error(`reply ${id} wrong: ${JSON.stringify(reply)}`);
    };
    let cpuStart = 0;
    let start = 0n;
    if (kase === 'pingpong') {
      const times = [];
      for (let id = 0; id < total; id++) {
        if (id === WARMUP) cpuStart = cpuMicros();
        const started = process.hrtime.bigint();
        check(await endpoint.request(small(id)), id);
        if (id >= WARMUP) times.push(Number(process.hrtime.bigint() - started) / 1000);
      }
      const senderCpu = cpuMicros() - cpuStart;
      times.sort((a, b) => a - b);
      result = { p50us: times[Math.floor(times.length / 2)], p99us: times[Math.floor(times.length * 0.99)],
        cpuTotalPerRoundTrip: (senderCpu + peerCpu) / count };
    } else {
      let id = 0;
      const worker = async () => {
        while (id < total) {
          const mine = id++;
          if (mine === WARMUP) {
            start = process.hrtime.bigint();
            cpuStart = cpuMicros();
          }
          check(await endpoint.request(small(mine)), mine);
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const senderCpu = cpuMicros() - cpuStart;
      result = { requestsPerSec: count / (Number(process.hrtime.bigint() - start) / 1e9),
        cpuTotalPerRequest: (senderCpu + peerCpu) / count };
    }
  }
  endpoint.post('stop');
  await endpoint.close();
  return result;
}

// channels: <count> remote channels between the two processes, each side on one NATS connection.
async function channelsPeer() {
  const nc = await natsConnect({ servers: host });
  const ports = [];
  for (let i = 0; i < count; i++) ports.push(await crossport.connect(address, { connection: nc }));
  let open = count;
  for (const port of ports) {
    port.on('message', (m) => port.postMessage(m));
    port.on('close', () => --open === 0 && nc.close().then(() => process.exit(0)));
  }
}

async function channelsSender() {
  const monitor = Number(process.env.NATS_MONITOR_PORT);
  const varz = async () => (await fetch(`http://127.0.0.1:${monitor}/varz`)).json();
  const serverPid = Number(process.env.NATS_SERVER_PID);
  const nc = await natsConnect({ servers: host });
  global.gc?.();
  const before = { rss: rssKiB(), serverRss: rssKiB(serverPid), subscriptions: (await varz()).subscriptions };
  const server = await crossport.listen(address, { connection: nc });
  const ports = [];
  const all = new Promise((resolve) => server.on('connection', (port) => {
    ports.push(port);
    if (ports.length === count) resolve();
  }));
  startPeer();
  await all;
  server.close();
  let received = 0;
  let wake = () => {};
  for (const port of ports) port.on('message', () => {
    received++;
    wake();
  });
  // Idle: heartbeats only.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  global.gc?.();
  const idleStart = await varz();
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idleEnd = await varz();
  const after = { rss: rssKiB(), serverRss: rssKiB(serverPid), subscriptions: idleEnd.subscriptions };
  // Round-robin throughput: each message echoed back.
  const messages = 50000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < messages; i++) {
    while (i - received >= WINDOW) await new Promise((resolve) => (wake = resolve));
    ports[i % count].postMessage(small(i));
    if (i % 500 === 0) await turn();
  }
  while (received < messages) await new Promise((resolve) => (wake = resolve));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  for (const port of ports) port.close();
  await nc.flush();
  await nc.close();
  return {
    channels: count,
    rssKiBPerChannelSender: (after.rss - before.rss) / count,
    serverRssKiBPerChannel: (after.serverRss - before.serverRss) / count,
    serverSubscriptionsPerChannel: (after.subscriptions - before.subscriptions) / count,
    idleMsgsPerSecAtServer: (idleEnd.in_msgs - idleStart.in_msgs) / ((Date.parse(idleEnd.now) - Date.parse(idleStart.now)) / 1000),
    roundTripsPerSec: messages / seconds,
  };
}

if (role === 'peer') {
  peer();
} else {
  sender().then((result) => {
    process.stdout.write(`RESULT ${JSON.stringify({ ok: true, ...result })}\n`);
    process.exit(0);
  });
}
