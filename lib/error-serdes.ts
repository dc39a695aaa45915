// A worker's uncaught exception on its way to the parent, encoded as Node encodes it for a worker
// thread (lib/internal/error_serdes.js, Node 22), so that the parent's 'error' event receives the
// same object: for an Error, an object of the same built-in Error class whose own properties are
// every data property of the original and its prototype chain (name, message, stack, code, any
// other), `cause` encoded the same way; other values are cloned, or described by util.inspect.
import { Buffer } from 'node:buffer';
import { inspect } from 'node:util';
import type * as v8 from 'node:v8';

import { lazy } from './lazy';

// Loaded when an error is first encoded or decoded (most workers never throw).
const v8Module = lazy<typeof v8>('node:v8');

const kSerializedError = 0;
const kSerializedObject = 1;
const kInspectedError = 2;
const kInspectedSymbol = 3;
const kCustomInspectedObject = 4;
const kCircularReference = 5;

const kSymbolStringLength = 'Symbol('.length;

const errors: Record<string, ErrorConstructor> = {
  Error, TypeError, RangeError, URIError, SyntaxError, ReferenceError, EvalError,
};

type Descriptors = Record<string, PropertyDescriptor>;

function allProperties(object: object | null, target: object, seen: Set<unknown>): Descriptors {
  const all: Descriptors = Object.create(null);
  if (object === null) return all;
  Object.assign(all, allProperties(Object.getPrototypeOf(object), target, seen));
  for (const key of Object.getOwnPropertyNames(object)) {
    let descriptor: PropertyDescriptor | undefined;
    try {
      descriptor = Object.getOwnPropertyDescriptor(object, key);
    } catch {
      continue;
    }
    if (descriptor === undefined) continue;
    const getter = descriptor.get;
    if (getter && key !== '__proto__') {
      try {
        descriptor.value = getter.call(target);
        delete descriptor.get;
        delete descriptor.set;
      } catch {
        // Keep what we have.
      }
    }
    if (key === 'cause') {
      descriptor.value = serializeError(descriptor.value, seen);
      all[key] = descriptor;
    } else if ('value' in descriptor && typeof descriptor.value !== 'function' && typeof descriptor.value !== 'symbol') {
      all[key] = descriptor;
    }
  }
  return all;
}

function builtinErrorName(error: object): string | undefined {
  for (let current: object | null = error; current !== null; current = Object.getPrototypeOf(current)) {
    const constructor = Object.getOwnPropertyDescriptor(current, 'constructor')?.value;
    const name = constructor ? Object.getOwnPropertyDescriptor(constructor, 'name')?.value : undefined;
    if (typeof name === 'string' && Object.hasOwn(errors, name)) return name;
  }
  return undefined;
}

function tagged(tag: number, text: string): Buffer {
  return Buffer.from(String.fromCharCode(tag) + text, 'utf8');
}

/** Encodes `error` (any thrown value); never throws. */
export function serializeError(error: unknown, seen: Set<unknown> = new Set()): Buffer {
  if (typeof error === 'symbol') return tagged(kInspectedSymbol, inspect(error));
  try {
    if (typeof error === 'object' && error !== null && Object.prototype.toString.call(error) === '[object Error]') {
      if (seen.has(error)) return Buffer.from([kCircularReference]);
      seen.add(error);
      const constructor = builtinErrorName(error);
      if (constructor !== undefined) {
        const serialized = v8Module().serialize({ constructor, properties: allProperties(error, error, seen) });
        return Buffer.concat([Buffer.from([kSerializedError]), serialized]);
      }
    }
  } catch {
    // Try the next way.
  }
  try {
    if (error !== null && error !== undefined && inspect.custom in (error as object)) {
      return tagged(kCustomInspectedObject, inspect(error));
    }
  } catch {
    // Try the next way.
  }
  try {
    return Buffer.concat([Buffer.from([kSerializedObject]), v8Module().serialize(error)]);
  } catch {
    // Try the next way.
  }
  return tagged(kInspectedError, inspect(error));
}

function text(encoded: Buffer): string {
  return encoded.subarray(1).toString('utf8');
}

/**
 * Decodes what serializeError made in the worker. The worker's process is not trusted: anything
 * malformed throws, and the caller reports ERR_WORKER_UNSERIALIZABLE_ERROR instead.
 */
export function deserializeError(encoded: Buffer): unknown {
  switch (encoded[0]) {
    case kSerializedError: {
      const { constructor, properties } = v8Module().deserialize(encoded.subarray(1)) as {
        constructor: unknown;
        properties: Descriptors;
      };
      if (typeof constructor !== 'string' || !Object.hasOwn(errors, constructor)) {
        throw new TypeError('not an encoded error');
      }
      if (typeof properties !== 'object' || properties === null) throw new TypeError('not an encoded error');
      Object.defineProperty(properties, Symbol.toStringTag, {
        value: { value: 'Error', configurable: true },
        enumerable: true,
      });
      const cause = properties.cause;
      if (cause !== undefined && 'value' in cause) cause.value = deserializeError(Buffer.from(cause.value));
      return Object.create(errors[constructor].prototype, properties);
    }
    case kSerializedObject:
      return v8Module().deserialize(encoded.subarray(1));
    case kInspectedError:
      return text(encoded);
    case kInspectedSymbol: {
      const description = text(encoded);
      return Symbol.for(description.slice(kSymbolStringLength, description.length - 1));
    }
    case kCustomInspectedObject: {
      const shown = text(encoded);
      return { __proto__: null, [inspect.custom]: () => shown };
    }
    case kCircularReference:
      return { __proto__: null, [inspect.custom]: () => '[Circular object]' };
    default:
      throw new TypeError('not an encoded error');
  }
}
