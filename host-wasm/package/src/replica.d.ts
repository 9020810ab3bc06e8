export * from './concord.js';
import type { Status, StorageError } from './concord.js';

/** The medium a Replica's log is written through, called synchronously. */
export interface ReplicaStorage {
  segments(): number[];
  read(seq: number): Uint8Array;
  create(seq: number): void;
  append(seq: number, bytes: Uint8Array): void;
  /** Nothing: everything written is durable now. A number: the flush that will make it
   * durable, later; the medium is then a `DeferredStorage`. */
  sync(): void | number;
  truncate(seq: number, len: number): void;
  install(seq: number, bytes: Uint8Array): void;
  remove(seq: number): void;
  readSnapshot(): Uint8Array | null;
  writeSnapshot(bytes: Uint8Array): void;
}

/** A medium whose writes become durable later: the replica confirms a write to the core
 * (and so lets out what depends on it) only once `durable()` reaches the number `sync()`
 * returned for it. Drain the replica again when the medium reports progress. */
export interface DeferredStorage extends ReplicaStorage {
  sync(): number;
  /** The highest flush that is durable (every earlier one is too); throws once the medium
   * failed, which stops the replica with `STORAGE_FAILED`. */
  durable(): number;
}

/** Options of `IndexedDbStorage.open`; the defaults are `INDEXED_DB_DEFAULTS`. */
export interface IndexedDbOptions {
  /** Bytes per stored chunk of a log segment (default 65536). Fixed when the database is
   * created; a later open uses the stored size. */
  chunkBytes?: number;
  /** The transactions' durability hint (default `strict`: committed means on the disk). */
  durability?: 'strict' | 'relaxed' | 'default';
  /** `open` rejects with `STORAGE_TIMEOUT` after this long (default 10000). */
  openTimeoutMs?: number;
  /** A flush not committed after this long fails the medium with `STORAGE_TIMEOUT`
   * (default 30000). */
  flushTimeoutMs?: number;
  /** Callers of `flushed()` waiting at once (default 1024); one more gets `STORAGE_BUSY`. */
  waitersMax?: number;
}

/** The defaults of `IndexedDbOptions`. */
export const INDEXED_DB_DEFAULTS: Readonly<Required<IndexedDbOptions>>;

/**
 * A replica's log in IndexedDB (browsers and Web Workers). The live bytes are kept in
 * memory; every change since the last flush is written in one transaction; a write is
 * confirmed to the replica only after the transaction holding it committed. Events:
 * `durable` (a flush committed: drain the replica), `error` (a `CustomEvent` whose
 * `detail` is the `StorageError`; the medium and its replica stop).
 */
export class IndexedDbStorage extends EventTarget implements DeferredStorage {
  /** Opens or creates database `name` and reads the log it holds, holding the origin's
   * Web Lock `concord-indexeddb:<name>` until closed or failed. Rejects with a
   * `StorageError`, never hangs (`openTimeoutMs`). */
  static open(name: string, options?: IndexedDbOptions): Promise<IndexedDbStorage>;
  private constructor();
  readonly name: string;
  readonly chunkBytes: number;
  /** The `StorageError` that stopped the medium, or `null`. */
  readonly failure: StorageError | null;
  segments(): number[];
  read(seq: number): Uint8Array;
  create(seq: number): void;
  append(seq: number, bytes: Uint8Array): void;
  sync(): number;
  truncate(seq: number, len: number): void;
  install(seq: number, bytes: Uint8Array): void;
  remove(seq: number): void;
  readSnapshot(): Uint8Array | null;
  writeSnapshot(bytes: Uint8Array): void;
  durable(): number;
  /** Resolves when flush `n` (by default everything written so far) committed; rejects
   * with the `StorageError` if the medium fails first, at once if `n` is beyond the flush
   * that holds what was written (`STORAGE_INVALID_ARGUMENT`). */
  flushed(n?: number): Promise<number>;
  /** Waits for what was written to commit, then closes the database. */
  close(): Promise<void>;
}

/** Storage in memory: survives a replica built again over it, not the process. */
export class MemoryStorage {}
export interface MemoryStorage extends ReplicaStorage {}

export interface ReplicaOptions {
  id: number;
  members: number[];
  /** Where the log lives; built again over the same storage, a replica restarts from it.
   * `MemoryStorage`, `IndexedDbStorage` or your own. */
  storage?: ReplicaStorage | DeferredStorage;
  /** The caller's monotonic clock, milliseconds. */
  now: number;
  seed?: number;
}

/** A replica's status: its Raft state and the locks it knows. */
export interface ReplicaStatus extends Status {
  locks: { name: string; holder: number | null; fence: number | null; waiters: number }[];
  /** Flushes of a deferred medium the replica still waits for. */
  flushesPending: number;
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
