// Remote ports over NATS: loaded by lib/rendezvous.ts only when a nats:// address is used.
export { connectNats, listenNats, NatsServer, type NatsPeer } from './rendezvous';
export type { NatsOptions } from './session';
