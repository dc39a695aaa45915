// Errors shaped as Node throws them from its own MessagePort (name, code, message).
import { inspect } from 'node:util';
import { MessageChannel, type MessagePort } from 'node:worker_threads';

export function nodeError<E extends Error>(
  Type: new (message: string) => E,
  code: string,
  message: string,
): E & { code: string } {
  const error = new Type(message) as E & { code: string };
  error.code = code;
  return error;
}

/** nodeError whose stack starts as Node's own errors' do: "TypeError [ERR_X]: message". */
export function codedError<E extends Error>(
  Type: new (message: string) => E,
  code: string,
  message: string,
): E & { code: string } {
  const error = nodeError(Type, code, message);
  // Node's addCodeToName: the stack is formatted from the name when first read.
  error.name = `${error.name} [${code}]`;
  void error.stack;
  delete (error as { name?: string }).name;
  return error;
}

export function dataCloneError(message: string): DOMException {
  return new DOMException(message, 'DataCloneError');
}

// How this Node reports a transfer list holding something it cannot transfer, and a message
// holding a port its transfer list lacks: Node 20 throws TypeErrors with codes, Node 22 and later
// DataCloneErrors. Learned from this Node's structuredClone, which shares worker_threads'
// serializer and errors (not from a worker_threads port's postMessage: on Node 22-26 that one,
// caught or not, aborts a process run with --abort-on-uncaught-exception), the first time one is
// needed (a channel made at load time would cost every process that loads crossport).
function learn(mistake: (port: MessagePort) => void, fallback: () => Error): () => Error {
  let make: (() => Error) | undefined;
  return () => {
    make ??= learnNow(mistake, fallback);
    return make();
  };
}

function learnNow(mistake: (port: MessagePort) => void, fallback: () => Error): () => Error {
  const { port1, port2 } = new MessageChannel();
  try {
    mistake(port2);
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
  () => structuredClone(null, { transfer: [{}] as never }),
  () => nodeError(TypeError, 'ERR_INVALID_TRANSFER_OBJECT', 'Found invalid object in transferList'),
);

export const missingTransferable = learn(
  (port) => structuredClone(port),
  () => nodeError(TypeError, 'ERR_MISSING_TRANSFERABLE_IN_TRANSFER_LIST',
    'Object that needs transfer was found in message but not listed in transferList'),
);

// Node's messages for argument errors (lib/internal/errors.js: ERR_INVALID_ARG_TYPE,
// ERR_INVALID_ARG_VALUE), for options that we check as Node checks them.
const kTypes = ['string', 'function', 'number', 'object', 'Function', 'Object', 'boolean', 'bigint', 'symbol'];
const classRegExp = /^[A-Z][a-zA-Z0-9]*$/;

function formatList(items: string[], type = 'and'): string {
  if (items.length <= 2) return items.join(` ${type} `);
  return `${items.slice(0, -1).join(', ')}, ${type} ${items[items.length - 1]}`;
}

/** How Node describes the value it received ("type number (5)", "an instance of Map"...). */
function describeReceived(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'bigint':
      return `type bigint (${value}n)`;
    case 'number':
      if (value === 0) return 1 / value === -Infinity ? 'type number (-0)' : 'type number (0)';
      return `type number (${value})`;
    case 'boolean':
      return `type boolean (${value})`;
    case 'symbol':
      return `type symbol (${String(value)})`;
    case 'function':
      return `function ${value.name}`;
    case 'object': {
      const { constructor } = value as { constructor?: { name?: string } };
      if (constructor && 'name' in constructor) return `an instance of ${constructor.name}`;
      return inspect(value, { depth: -1 });
    }
    case 'string': {
      const shown = value.length > 28 ? `${value.slice(0, 25)}...` : value;
      return shown.includes("'") ? `type string (${JSON.stringify(shown)})` : `type string ('${shown}')`;
    }
    default: {
      const shown = inspect(value, { colors: false });
      return `type ${typeof value} (${shown.length > 28 ? `${shown.slice(0, 25)}...` : shown})`;
    }
  }
}

/** Node's ERR_INVALID_ARG_TYPE (a TypeError), message and all. */
export function invalidArgType(name: string, expected: string | string[], actual: unknown): TypeError & { code: string } {
  const types: string[] = [];
  const instances: string[] = [];
  const other: string[] = [];
  for (const value of Array.isArray(expected) ? expected : [expected]) {
    if (kTypes.includes(value)) types.push(value.toLowerCase());
    else if (classRegExp.test(value)) instances.push(value);
    else other.push(value);
  }
  if (instances.length > 0 && types.includes('object')) {
    types.splice(types.indexOf('object'), 1);
    instances.push('Object');
  }
  let message = name.endsWith(' argument') ? `The ${name} ` : `The "${name}" ${name.includes('.') ? 'property' : 'argument'} `;
  message += 'must be ';
  if (types.length > 0) {
    message += `${types.length > 1 ? 'one of type' : 'of type'} ${formatList(types, 'or')}`;
    if (instances.length > 0 || other.length > 0) message += ' or ';
  }
  if (instances.length > 0) {
    message += `an instance of ${formatList(instances, 'or')}`;
    if (other.length > 0) message += ' or ';
  }
  if (other.length > 1) {
    message += `one of ${formatList(other, 'or')}`;
  } else if (other.length === 1) {
    message += other[0].toLowerCase() !== other[0] ? `an ${other[0]}` : other[0];
  }
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `${message}. Received ${describeReceived(actual)}`);
}

/** Node's ERR_INVALID_ARG_VALUE (a TypeError). */
export function invalidArgValue(name: string, value: unknown, reason = 'is invalid'): TypeError & { code: string } {
  let shown = inspect(value);
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  const type = name.includes('.') ? 'property' : 'argument';
  return codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${type} '${name}' ${reason}. Received ${shown}`);
}
