// Handing a crossport port to a worker_threads Worker of this process: Node's own postMessage
// cannot carry our ports, so the port is turned into a token it can carry, and back.
import { dataCloneError, nodeError } from './errors';
import { native } from './native';
import { createPort, handleOf, isMessagePort, markDetached, type MessagePort } from './port';

/**
 * A crossport port on its way to another thread of this process (see `exportPort`): a frozen plain
 * object that worker_threads' `postMessage` and `workerData` can carry.
 */
export interface PortToken {
  readonly crossportPort: number;
  readonly pid: number;
}

/**
 * Neuters `port` (as a transfer does) and returns a plain token for its channel end, which
 * worker_threads' postMessage or workerData can carry to another thread of this process, where
 * `importPort(token)` makes it a port again. Import each token exactly once: an unused token
 * holds its channel end open until the process exits. Not in worker_threads.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `port` is not a crossport port.
 * @throws {DOMException} `DataCloneError` when the port was already closed or transferred.
 */
export function exportPort(port: MessagePort): PortToken {
  if (!isMessagePort(port)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "port" argument must be a crossport MessagePort instance');
  }
  let id: number;
  try {
    id = handleOf(port).handOff();
  } catch {
    throw dataCloneError('MessagePort is already detached');
  }
  markDetached(port);
  return Object.freeze({ crossportPort: id, pid: process.pid });
}

/**
 * The port whose token `exportPort` made, in this thread (any thread of the process that made it).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `token` is not a token.
 * @throws {Error} `ERR_INVALID_ARG_VALUE` when the token was made by another process, or was
 *   already imported.
 */
export function importPort(token: PortToken): MessagePort {
  if (typeof token !== 'object' || token === null || !Number.isSafeInteger(token.crossportPort)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "token" argument must be a token made by exportPort()');
  }
  if (token.pid !== process.pid) {
    throw nodeError(Error, 'ERR_INVALID_ARG_VALUE', 'The token was made by another process; send the port itself');
  }
  const handle = native.takeOver(token.crossportPort);
  if (handle === null) {
    throw nodeError(Error, 'ERR_INVALID_ARG_VALUE', 'The token was already imported');
  }
  return createPort(handle);
}
