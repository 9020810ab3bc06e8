// TypeScript declarations of the package's public API (the wrapper in concord.js over
// the wasm-bindgen module, whose own generated types are lower level).

/** Options of `Client.connect`. */
export interface ConnectOptions {
  /** Nodes' WebSocket endpoints, `ws://host:http-port/ws`: one reachable node is
   * enough, the others' URLs are learnt from it (nodes advertise them). */
  endpoints: string[];
  /** The Raft group the cluster serves (default 1). */
  group?: number;
  /** Session TTL: what the session holds is released this long after the cluster last
   * heard from the client (default 10 000). */
  sessionTtlMs?: number;
  /** Resend a request unanswered this long (default 1 000). */
  requestTimeoutMs?: number;
  /** Give up connecting after this long (default 10 000). */
  connectTimeoutMs?: number;
  /** Largest frame sent or accepted, bytes (default 4 MiB). */
  frameBytesMax?: number;
  /** Carries requests to endpoints that are not `ws://` URLs (a replica in a Web Worker,
   * say): one protocol payload per call; answers come back through `client.receive`.
   * It must not call into the client synchronously. */
  transport?: (address: string, payload: Uint8Array) => void;
  /** How reads are served (default `"linearizable"`). */
  reads?: 'linearizable' | 'lease' | 'stale';
}

/** A timeout of a blocking call; none waits until granted. */
export interface Wait {
  timeoutMs?: number;
}

/** Values are bytes; strings are sent as UTF-8. */
export type Bytes = Uint8Array | string;

/** Base class of every error the client raises. */
export class ConcordError extends Error {
  /** An error with `code` (and further fields from `extra`). */
  constructor(message: string, code: string, extra?: object);
  /** Stable: `TIMEOUT`, `SESSION_LOST`, `LIMIT_EXCEEDED`, `LOCK_NOT_HELD`,
   * `KV_ETAG_MISMATCH`, `KV_EXISTS`, `BARRIER_PARTIES_MISMATCH`, `REQUEST_*`,
   * `INVALID_ARGUMENT`, `UNREACHABLE`, `CLOSED`, `UNEXPECTED_REPLY`, `OVERLOADED`, … */
  readonly code: string;
  /** The lost session, for `SESSION_LOST`. */
  readonly session?: number;
}
export class SessionLostError extends ConcordError {}
export class WaitTimeoutError extends ConcordError {}
export class ConflictError extends ConcordError {}
export class LimitError extends ConcordError {}
export class InvalidArgumentError extends ConcordError {}
export class ConnectionError extends ConcordError {}
export class OperationError extends ConcordError {}
/** `IndexedDbStorage` failed or refused: `STORAGE_QUOTA`, `STORAGE_LOCKED`,
 * `STORAGE_BLOCKED`, `STORAGE_VERSION`, `STORAGE_TIMEOUT`, `STORAGE_CLOSED`,
 * `STORAGE_CORRUPT`, `STORAGE_UNAVAILABLE`, `STORAGE_BUSY`, `STORAGE_INVALID_ARGUMENT`,
 * `STORAGE_FAILED`. (A `Replica` whose storage failed throws an `Error` with code
 * `STORAGE_FAILED` naming the medium's error.) */
export class StorageError extends ConcordError {}

/** Something granted; `release()` gives it back, as does leaving an `await using` block. */
declare class Held implements AsyncDisposable {
  /** The session it was granted in (it is lost with it). */
  readonly session: number | null;
  /** Not released, and its session is still the client's. */
  readonly held: boolean;
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
export class LockHandle extends Held {
  readonly name: string;
  /** The fencing token: strictly increasing across every grant of the lock. */
  readonly fence: number;
}
export class RwHandle extends Held {
  readonly name: string;
  readonly mode: 'read' | 'write';
  readonly fence: number;
}
export class Permits extends Held {
  readonly name: string;
  readonly count: number;
}
export class Leadership extends Held {
  readonly name: string;
  readonly fence: number;
  proclaim(value: Bytes): Promise<void>;
  resign(): Promise<void>;
}

/** A stream as an async iterator; `break` out of `for await` closes it. */
declare class Iter<T> implements AsyncIterableIterator<T>, AsyncDisposable {
  next(timeoutMs?: number): Promise<IteratorResult<T, undefined>>;
  /** The next item, or `undefined` if none came within `timeoutMs`. */
  nextWithin(timeoutMs: number): Promise<T | undefined>;
  return(): Promise<IteratorResult<T, undefined>>;
  close(): void;
  [Symbol.asyncIterator](): this;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface KvEntry {
  key: string;
  value: Uint8Array | null;
  etag: number;
  version: number;
  createRevision: number;
  expiresInMs: number | null;
}
export interface WatchEvent {
  revision: number;
  key: string;
  kind: 'put' | 'delete' | 'expire';
  value: Uint8Array | null;
}
export interface Signal {
  subject: string;
  payload: Uint8Array;
  index: number;
  subscription: number;
}
export interface LeaderInfo {
  session: number;
  value: Uint8Array;
  fence: number;
}
export interface ElectionEvent {
  name: string;
  change: 'elected' | 'proclaimed' | 'resigned' | 'failover' | 'current';
  leader: LeaderInfo | null;
  index: number;
}
export interface Status {
  id: number;
  role: 'leader' | 'follower' | 'candidate' | 'precandidate';
  term: number;
  leader: number | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  voters: number[];
}

export class Watch extends Iter<WatchEvent> {}
export class Observer extends Iter<ElectionEvent> {}
export class Subscription extends Iter<Signal> {
  readonly id: number;
  unsubscribe(): Promise<void>;
}

/** Emitted on `Client` when its session is lost; `session` is the lost one. */
export interface SessionLostEvent extends Event {
  readonly session: number;
}

export interface SemaphoreApi {
  init(permits: number, options?: { sessionless?: boolean }): Promise<boolean>;
  acquire(permits?: number, wait?: Wait): Promise<Permits>;
  release(permits: number): Promise<void>;
  available(): Promise<number>;
  held(): Promise<number>;
  drain(): Promise<Permits>;
  increase(permits: number): Promise<void>;
  reduce(permits: number): Promise<void>;
}
export interface RwLockApi {
  read(wait?: Wait): Promise<RwHandle>;
  write(wait?: Wait): Promise<RwHandle>;
  readers(): Promise<number>;
  isWriteLocked(): Promise<boolean>;
}
/** Counter values are numbers, or bigints beyond 2^53. */
export type Long = number | bigint;
export interface CounterApi {
  get(): Promise<Long>;
  set(value: Long): Promise<void>;
  add(delta: Long): Promise<Long>;
  incr(): Promise<Long>;
  decr(): Promise<Long>;
  getAndAdd(delta: Long): Promise<Long>;
  getAndSet(value: Long): Promise<Long>;
  compareAndSet(expect: Long, update: Long): Promise<boolean>;
}
export interface ReferenceApi {
  get(): Promise<Uint8Array | null>;
  set(value: Bytes | null): Promise<void>;
  clear(): Promise<void>;
  getAndSet(value: Bytes | null): Promise<Uint8Array | null>;
  compareAndSet(expect: Bytes | null, update: Bytes | null): Promise<boolean>;
}
export interface LatchApi {
  trySetCount(count: number): Promise<boolean>;
  countDown(): Promise<number>;
  wait(wait?: Wait): Promise<void>;
  count(): Promise<number>;
}
export interface PutOptions {
  /** Create only: fails with `KV_EXISTS` if the key exists. */
  ifAbsent?: boolean;
  /** Overwrite only this version: fails with `KV_ETAG_MISMATCH` otherwise. */
  ifMatch?: number;
  ttlMs?: number;
}
export interface KvApi {
  get(key: string): Promise<KvEntry | null>;
  getIfNoneMatch(key: string, etag: number): Promise<{ notModified: true } | { notModified: false; entry: KvEntry | null }>;
  head(key: string): Promise<KvEntry | null>;
  /** → the new etag */
  put(key: string, value: Bytes, options?: PutOptions): Promise<number>;
  create(key: string, value: Bytes, options?: { ttlMs?: number }): Promise<number>;
  replace(key: string, value: Bytes, etag: number, options?: { ttlMs?: number }): Promise<number>;
  delete(key: string, options?: { ifMatch?: number }): Promise<boolean>;
  list(prefix: string, options?: { after?: string; keysOnly?: boolean }): Promise<{ entries: KvEntry[]; more: boolean }>;
}
export type WatchFilter = { key: string } | { prefix: string } | { pattern: string };

export class Client extends EventTarget implements AsyncDisposable {
  static connect(options: ConnectOptions): Promise<Client>;
  /** A client not yet connected (for a `transport` that answers through `receive`). */
  static open(options: ConnectOptions): Client;
  /** Resolves once some endpoint answered. */
  ready(timeoutMs?: number): Promise<void>;
  readonly session: { id: number | null; lost: number };
  lock(name: string, wait?: Wait): Promise<LockHandle>;
  tryLock(name: string): Promise<LockHandle | null>;
  lockAll(names: string[], wait?: Wait): Promise<LockHandle>;
  isLocked(name: string): Promise<boolean>;
  lockCount(name: string): Promise<number>;
  forceUnlock(name: string): Promise<void>;
  semaphore(name: string): SemaphoreApi;
  rwlock(name: string): RwLockApi;
  counter(name: string): CounterApi;
  reference(name: string): ReferenceApi;
  latch(name: string): LatchApi;
  barrierWait(name: string, parties: number, wait?: Wait): Promise<{ generation: number; arrival: number }>;
  readonly kv: KvApi;
  watch(filter: WatchFilter, options?: { from?: number }): Watch;
  campaign(name: string, value: Bytes, wait?: Wait): Promise<Leadership>;
  electionLeader(name: string): Promise<LeaderInfo | null>;
  observe(name: string): Observer;
  publish(subject: string, payload: Bytes): Promise<number>;
  subscribe(pattern: string, options?: { queueGroup?: string }): Promise<Subscription>;
  status(): Promise<Status>;
  close(): Promise<void>;
  /** A payload that endpoint `address` sent over `options.transport`. */
  receive(address: string, payload: Uint8Array): void;
  abandon(): void;
  addEventListener(type: 'sessionlost', listener: (e: SessionLostEvent) => void): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void;
  [Symbol.asyncDispose](): Promise<void>;
}
