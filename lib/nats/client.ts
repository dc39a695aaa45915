// The NATS client (@nats-io/transport-node), loaded the first time a nats:// address is used:
// an optional peer dependency, so that users who never cross hosts install and load nothing more.
import { nodeError } from '../errors';

export const kClientPackage = '@nats-io/transport-node';

/** What crossport uses of a NATS message. */
export interface NatsMsg {
  readonly subject: string;
  readonly data: Uint8Array;
  respond(data?: Uint8Array): boolean;
}

export interface NatsSubscription {
  unsubscribe(): void;
}

/** What the server told the client when it connected (INFO). */
export interface NatsServerInfo {
  readonly max_payload: number;
  readonly server_id: string;
  readonly server_name: string;
  readonly client_id?: number;
  readonly client_ip?: string;
  readonly cluster?: string;
}

/** What crossport uses of a NatsConnection; a user may pass their own (options.connection). */
export interface NatsConnection {
  readonly info?: NatsServerInfo;
  publish(subject: string, payload: Uint8Array): void;
  subscribe(subject: string, options: { callback: (error: Error | null, msg: NatsMsg) => void }): NatsSubscription;
  request(subject: string, payload: Uint8Array, options: { timeout: number }): Promise<NatsMsg>;
  flush(): Promise<void>;
  close(): Promise<void>;
  closed(): Promise<void | Error>;
  isClosed(): boolean;
  status(): AsyncIterable<{ type: string }>;
}

interface NatsModule {
  connect(options: Record<string, unknown>): Promise<NatsConnection>;
}

let client: NatsModule | undefined;

/** The client module; throws ERR_CROSSPORT_NATS_CLIENT_MISSING, saying what to install, without it. */
export function natsClient(): NatsModule {
  if (client !== undefined) return client;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    client = require(kClientPackage) as NatsModule;
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code !== 'MODULE_NOT_FOUND' || !message.includes(kClientPackage)) throw error;
    throw nodeError(Error, 'ERR_CROSSPORT_NATS_CLIENT_MISSING',
      `crossport: nats:// addresses need the NATS client, which is not installed. ` +
        `Install it beside crossport-ipc: npm install ${kClientPackage}`);
  }
  return client;
}
