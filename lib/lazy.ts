// Modules loaded the first time they are used. A worker process loads crossport before its
// script runs, and pays for every module crossport loads at once (the modules for OS handles,
// child_process, v8, perf_hooks: milliseconds of a start that must not be slower than
// child_process.fork's); most processes never use them.

/** A function returning module `id`, which it loads on its first call. */
export function lazy<T>(id: string): () => T {
  let loaded: T | undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return () => (loaded ??= require(id) as T);
}
