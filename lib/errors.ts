// Errors shaped as Node throws them from its own MessagePort (name, code, message).
import * as workerThreads from 'node:worker_threads';

export function nodeError<E extends Error>(
  Type: new (message: string) => E,
  code: string,
  message: string,
): E & { code: string } {
  const error = new Type(message) as E & { code: string };
  error.code = code;
  return error;
}

export function dataCloneError(message: string): DOMException {
  return new DOMException(message, 'DataCloneError');
}

// How this Node reports a transfer list holding something it cannot transfer, and a message
// holding a port its transfer list lacks: Node 20 throws TypeErrors with codes, Node 22
// DataCloneErrors. Learned once from worker_threads itself.
function learn(mistake: (port: workerThreads.MessagePort, other: workerThreads.MessagePort) => void,
  fallback: () => Error): () => Error {
  const { port1, port2 } = new workerThreads.MessageChannel();
  try {
    mistake(port1, port2);
  } catch (error) {
    const { constructor, code, name, message } = error as Error & { code?: unknown };
    if (error instanceof DOMException) return () => new DOMException(message, name);
    if (typeof code === 'string') return () => nodeError(constructor as new (m: string) => Error, code, message);
  } finally {
    port1.close();
    port2.close();
  }
  return fallback;
}

export const invalidTransferObject = learn(
  (port) => port.postMessage(null, [{}] as never),
  () => nodeError(TypeError, 'ERR_INVALID_TRANSFER_OBJECT', 'Found invalid object in transferList'),
);

export const missingTransferable = learn(
  (port, other) => port.postMessage(other),
  () => nodeError(TypeError, 'ERR_MISSING_TRANSFERABLE_IN_TRANSFER_LIST',
    'Object that needs transfer was found in message but not listed in transferList'),
);
