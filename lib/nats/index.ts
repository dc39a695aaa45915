// Remote ports over NATS: loaded by lib/rendezvous.ts only when a nats:// address is used.
export { connectNats, listenNats, type NatsPeer, type NatsServer } from './rendezvous';
export type { NatsOptions } from './options';
