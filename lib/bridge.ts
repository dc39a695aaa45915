// A relay between two ports of different transports, in this process: what one receives, the
// other posts (ports in the message travel on, bridged again where they must), and a close of
// either closes the other. It is how a remote port reaches a local child process, and a local
// port a remote host: the relay lives as long as the channel, and keeps this process alive.
import type { MessagePort } from './port';
import { handleOf } from './port';

export function bridge(first: MessagePort, second: MessagePort): void {
  relay(first, second);
  relay(second, first);
}

function relay(from: MessagePort, to: MessagePort): void {
  from.addEventListener('message', (event) => {
    const { data, ports } = event as MessageEvent;
    try {
      to.postMessage(data, ports as unknown as MessagePort[]);
    } catch {
      handleOf(to).postUndeliverable?.();
    }
  });
  // What could not be read here cannot be read there either.
  from.addEventListener('messageerror', () => handleOf(to).postUndeliverable?.());
  from.addEventListener('close', () => to.close());
}
