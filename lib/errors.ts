// Errors shaped as Node throws them from its own MessagePort (name, code, message).

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
