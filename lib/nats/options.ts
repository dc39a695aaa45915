// The options of listen()/connect() for nats:// addresses, in a file of their own: consumers'
// TypeScript reads its declarations, and must not reach session.ts's (a class with private
// names, #x, fails consumers that compile for ES5).
import type { NatsConnection } from './client';

export interface Settings {
  /** A heartbeat goes out on a port that sent nothing for this long (ms). */
  heartbeatMs: number;
  /** A port that heard nothing from its peer for this long closes (ms). */
  timeoutMs: number;
  /** The largest message a port accepts from the network (bytes). */
  maxMessageSize: number;
  /** How long connect() waits for the listener's answer (ms). */
  connectTimeoutMs: number;
}

/** The crossport options beside the NATS client's own (auth, TLS, name, reconnect...). */
export interface NatsOptions extends Partial<Settings> {
  /** A connection of your own to use (crossport never closes it); the address's host is then ignored. */
  connection?: NatsConnection;
  /**
   * Share the NATS connection with the other listen()/connect() calls of this thread to the same
   * server with equal NATS options (default true); false: a connection of its own.
   */
  shareConnection?: boolean;
  [natsOption: string]: unknown;
}
