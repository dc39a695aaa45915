'use strict';
// Act 1 of the demo: a player in a game of ping-pong over a port that its parent handed it.
//   node demo/peer.js ping|pong|relief   (started by demo.js, or by a ping player, with fork())
// The ping player serves the first half of the rounds, then forks a relief player, hands it the
// port in the middle of the game and exits; the relief player takes the game up once the ping
// player is gone, and the pong player never learns that it happened.
const { fork, parentPort } = require('crossport-ipc');

const role = process.argv[2];
let relief = null;  // (held, so that its port closes when this process ends, not when collected)

function serve(port, from, rounds, handOverAt) {
  let round = from;
  port.on('message', (pong) => {
    if (pong !== round) throw new Error(`expected pong ${round}, got ${pong}`);
    round++;
    if (round === handOverAt) {
      // Hand the port over, mid-game, to a process of our own, and leave.
      relief = fork(__filename, ['relief']);
      relief.port.postMessage({ port, from: round, rounds }, [port]);
      parentPort.postMessage({ handedTo: relief.pid });
      parentPort.close();
      relief.disconnect();                     // (child_process' IPC channel would keep us here,
      relief.unref();                          // and so would a child still running)
      return;
    }
    if (round === rounds) port.close();        // the game is over: 'close' on both ends
    else port.postMessage({ round, pid: process.pid });
  });
  port.postMessage({ round, pid: process.pid });
}

parentPort.once('message', ({ port, from = 0, rounds, handOverAt }) => {
  if (role === 'pong') {
    // Answers every ping, and tells the parent who it played with once the port closes.
    const pingsFrom = new Map();
    let inOrder = true;
    let expected = 0;
    port.on('message', ({ round, pid }) => {
      inOrder &&= round === expected++;
      pingsFrom.set(pid, (pingsFrom.get(pid) ?? 0) + 1);
      port.postMessage(round);
    });
    port.on('close', () => {
      parentPort.postMessage({ pings: expected, inOrder, pingsFrom: [...pingsFrom] });
      parentPort.close();
    });
  } else if (role === 'relief') {
    // Its parent, the ping player, is leaving: the game goes on once it has gone (its end of
    // parentPort closes when its process ends), so the game ends only if the ping player could.
    port.ref();
    parentPort.once('close', () => serve(port, from, rounds));
  } else {
    serve(port, from, rounds, handOverAt);
  }
});
