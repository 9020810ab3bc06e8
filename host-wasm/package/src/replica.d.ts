export * from './concord.js';
import type { Status } from './concord.js';

/** The medium a Replica's log is written through, called synchronously. */
export interface ReplicaStorage {
  segments(): number[];
  read(seq: number): Uint8Array;
  create(seq: number): void;
  append(seq: number, bytes: Uint8Array): void;
  sync(): void;
  truncate(seq: number, len: number): void;
  install(seq: number, bytes: Uint8Array): void;
  remove(seq: number): void;
  readSnapshot(): Uint8Array | null;
  writeSnapshot(bytes: Uint8Array): void;
}

/** Storage in memory: survives a replica built again over it, not the process. */
export class MemoryStorage {}
export interface MemoryStorage extends ReplicaStorage {}

export interface ReplicaOptions {
  id: number;
  members: number[];
  /** Where the log lives; built again over the same storage, a replica restarts from it. */
  storage?: ReplicaStorage;
  /** The caller's monotonic clock, milliseconds. */
  now: number;
  seed?: number;
}

/** A replica's status: its Raft state and the locks it knows. */
export interface ReplicaStatus extends Status {
  locks: { name: string; holder: number | null; fence: number | null; waiters: number }[];
}

/** A full Concord member: pass it what arrives and the time, then deliver what `drain()`
 * returns (peer messages to other replicas, answers to client connections). */
export class Replica {
  constructor(options: ReplicaOptions);
  readonly id: number;
  handlePeer(now: number, from: number, payload: Uint8Array): void;
  handleClient(now: number, conn: number, payload: Uint8Array): void;
  clientClosed(conn: number): void;
  tick(now: number): void;
  timeoutMs(now: number): number;
  drain(): {
    peers: { to: number; bytes: Uint8Array }[];
    clients: { conn: number; bytes: Uint8Array }[];
    events: { role: string; term: number; leader: number | null }[];
  };
  status(): ReplicaStatus;
  free(): void;
}
