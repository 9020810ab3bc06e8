// IndexedDB storage for a `Replica` in the browser (a window or a Web Worker).
//
// The core's log store writes through a synchronous medium; IndexedDB only commits
// later. So this medium keeps the live bytes in memory, where the store's calls read and
// write them at once, remembers which parts changed, and flushes every change since the
// last flush in ONE readwrite transaction (strict durability unless told otherwise).
// `sync()` answers the number of the flush that will hold what was written so far, and
// `durable()` the last flush that committed: the replica confirms a write to the core only
// when `durable()` reaches its flush, so nothing that depends on a write — a vote, an
// append acknowledgement, a commit, an answer to a client — leaves before the transaction
// holding it committed.
//
// On disk: object store `chunks`, key [segment, index] → the segment's bytes from
// index × chunkBytes (chunkBytes long, the last one shorter); object store `meta`:
// `layout` → { chunkBytes }, `segments` → [[segment, length], …], `snapshot` → bytes.
// A transaction rewrites the chunks a change touched, deletes those past a segment's new
// end, and rewrites `segments`: what is stored is always the state at one flush.

import { StorageError } from './concord.js';

/** The adapter's default limits and settings (each can be given to `open`). */
export const INDEXED_DB_DEFAULTS = Object.freeze({
  /** Bytes per stored chunk of a segment: an append rewrites at most the chunks it
   * touched. Fixed when the database is created; a later `open` uses the stored size. */
  chunkBytes: 64 * 1024,
  /** The transactions' durability hint: `strict` (committed means flushed to the disk),
   * or `relaxed` (committed once the browser has the data; a power cut can lose it). */
  durability: 'strict',
  /** How long `open` waits for the database before it rejects with `STORAGE_TIMEOUT`. */
  openTimeoutMs: 10_000,
  /** How long a flush may take before the medium fails with `STORAGE_TIMEOUT`. */
  flushTimeoutMs: 30_000,
  /** Callers of `flushed()` waiting at once; one more is refused (`STORAGE_BUSY`). */
  waitersMax: 1024,
});

const VERSION = 1;
const CHUNKS = 'chunks';
const META = 'meta';

/** A `StorageError` for what IndexedDB reported (`e` a DOMException or similar). */
function idbError(e, what) {
  if (e instanceof StorageError) return e;
  const name = e?.name ?? 'Error';
  const code =
    name === 'QuotaExceededError'
      ? 'STORAGE_QUOTA'
      : name === 'VersionError'
        ? 'STORAGE_VERSION'
        : name === 'NotFoundError' || name === 'DataError'
          ? 'STORAGE_CORRUPT'
          : 'STORAGE_FAILED';
  return new StorageError(`${what}: ${name}: ${e?.message ?? e}`, code);
}

function positiveInt(v, what) {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new StorageError(`${what} must be a positive integer, not ${String(v)}`, 'STORAGE_INVALID_ARGUMENT');
  }
  return v;
}

function settings(options) {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new StorageError('options must be an object', 'STORAGE_INVALID_ARGUMENT');
  }
  const o = { ...INDEXED_DB_DEFAULTS, ...options };
  for (const k of ['chunkBytes', 'openTimeoutMs', 'flushTimeoutMs', 'waitersMax']) positiveInt(o[k], k);
  if (!['strict', 'relaxed', 'default'].includes(o.durability)) {
    throw new StorageError(`durability must be strict, relaxed or default, not ${String(o.durability)}`, 'STORAGE_INVALID_ARGUMENT');
  }
  return o;
}

/**
 * Holds the origin's Web Lock for database `name` (one replica per database, across tabs
 * and workers; a terminated worker's lock is let go by the browser), waiting up to `ms`:
 * the function that lets it go. Where the runtime has no Web Locks, nothing is held.
 */
function exclusive(name, ms) {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  if (!locks) return Promise.resolve(() => {});
  return new Promise((resolve, reject) => {
    let release;
    const held = new Promise((r) => {
      release = r;
    });
    locks
      .request(`concord-indexeddb:${name}`, { mode: 'exclusive', signal: AbortSignal.timeout(ms) }, () => {
        resolve(() => release());
        return held;
      })
      .catch((e) =>
        reject(
          e?.name === 'TimeoutError' || e?.name === 'AbortError'
            ? new StorageError(`${name} stayed in use by another replica for ${ms} ms`, 'STORAGE_LOCKED')
            : idbError(e, `locking ${name}`),
        ),
      );
  });
}

/** Opens database `name` (creating its stores) and reads it, within `ms`:
 * `{ db, state, created }`. */
function openDb(name, ms) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (f) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        f();
      }
    };
    const timer = setTimeout(
      () => finish(() => reject(new StorageError(`opening ${name} took over ${ms} ms`, 'STORAGE_TIMEOUT'))),
      ms,
    );
    let created = false;
    const req = indexedDB.open(name, VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(CHUNKS)) db.createObjectStore(CHUNKS);
      if (!db.objectStoreNames.contains(META)) db.createObjectStore(META);
      created = true;
    };
    req.onblocked = () =>
      finish(() => reject(new StorageError(`opening ${name}: another connection holds it at an older version`, 'STORAGE_BLOCKED')));
    req.onerror = () => finish(() => reject(idbError(req.error, `opening ${name}`)));
    req.onsuccess = () => {
      const db = req.result;
      if (done) {
        db.close();
        return;
      }
      load(db).then(
        (state) => {
          if (done) db.close();
          finish(() => resolve({ db, state, created }));
        },
        (e) => {
          db.close();
          finish(() => reject(idbError(e, `reading ${name}`)));
        },
      );
    };
  });
}

/** Reads everything stored, in one transaction: `{ chunkBytes, segments, snapshot }`. */
function load(db) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction([CHUNKS, META], 'readonly');
    const meta = tx.objectStore(META);
    const chunks = tx.objectStore(CHUNKS);
    const layout = meta.get('layout');
    const list = meta.get('segments');
    const snapshot = meta.get('snapshot');
    const keys = chunks.getAllKeys();
    const values = chunks.getAll();
    tx.onabort = () => reject(idbError(tx.error, 'reading the stored log'));
    tx.oncomplete = () => {
      try {
        resolve(assemble(layout.result, list.result ?? [], snapshot.result ?? null, keys.result, values.result));
      } catch (e) {
        reject(e);
      }
    };
  });
}

/** The segments from their chunks, checked against the stored list. */
function assemble(layout, list, snapshot, keys, values) {
  const corrupt = (why) => new StorageError(`the stored log is damaged: ${why}`, 'STORAGE_CORRUPT');
  const chunkBytes = layout?.chunkBytes;
  const segments = new Map();
  if (!Array.isArray(list)) throw corrupt('the segment list is not a list');
  for (const entry of list) {
    const [seq, len] = Array.isArray(entry) ? entry : [];
    if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(len) || len < 0) throw corrupt('a bad segment entry');
    segments.set(seq, { buf: new Uint8Array(len), len, chunks: 0 });
  }
  if (segments.size > 0 && !(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) throw corrupt('no chunk size');
  for (let i = 0; i < keys.length; i++) {
    const [seq, index] = keys[i];
    const seg = segments.get(seq);
    const bytes = values[i];
    if (!seg) throw corrupt(`chunk ${index} of segment ${seq}, which is not listed`);
    const start = index * chunkBytes;
    const want = Math.min(chunkBytes, seg.len - start);
    if (index !== seg.chunks || !(bytes instanceof Uint8Array) || bytes.length !== want) {
      throw corrupt(`chunk ${index} of segment ${seq}`);
    }
    seg.buf.set(bytes, start);
    seg.chunks++;
  }
  for (const [seq, seg] of segments) {
    if (seg.chunks !== Math.ceil(seg.len / chunkBytes || 0)) throw corrupt(`segment ${seq} is missing chunks`);
    delete seg.chunks;
  }
  if (snapshot !== null && !(snapshot instanceof Uint8Array)) throw corrupt('the snapshot is not bytes');
  return { chunkBytes, segments, snapshot };
}

/**
 * A `Replica`'s medium in IndexedDB. Build it with `await IndexedDbStorage.open(name)`,
 * pass it as the replica's `storage`, and drain the replica again when it dispatches
 * `durable` (a flush committed: writes the replica held back may now be confirmed).
 * After a failure (`error` event; `failure` set) every call throws the `StorageError`:
 * open the database again to restart the replica from what was committed.
 */
export class IndexedDbStorage extends EventTarget {
  #db;
  /** Lets go of the database's Web Lock. */
  #unlock;
  #name;
  #opts;
  #chunkBytes;
  /** seq → { buf, len }: the live segments. */
  #segments;
  #snapshot;
  /** seq → the lowest offset changed since the last flush started. */
  #dirty = new Map();
  #snapshotDirty = false;
  #layoutDirty;
  /** The last flush started, and the last that committed. */
  #started = 0;
  #durable = 0;
  #flushing = false;
  #scheduled = false;
  #failure = null;
  /** [flush, resolve, reject] of `flushed()` callers. */
  #waiters = [];

  /**
   * Opens (or creates) database `name` and reads what it stores. Rejects with a
   * `StorageError`: `STORAGE_UNAVAILABLE` (no IndexedDB here), `STORAGE_LOCKED` (another
   * IndexedDbStorage of this origin has the database open), `STORAGE_BLOCKED` (another
   * connection keeps an older version open), `STORAGE_VERSION`, `STORAGE_TIMEOUT` (no
   * answer within `openTimeoutMs`), `STORAGE_CORRUPT`, `STORAGE_INVALID_ARGUMENT`.
   */
  static async open(name, options) {
    if (typeof name !== 'string' || name.length === 0) {
      throw new StorageError('the database name must be a non-empty string', 'STORAGE_INVALID_ARGUMENT');
    }
    const opts = settings(options);
    if (typeof indexedDB === 'undefined') {
      throw new StorageError('IndexedDB is not available in this runtime', 'STORAGE_UNAVAILABLE');
    }
    const deadline = Date.now() + opts.openTimeoutMs;
    const unlock = await exclusive(name, opts.openTimeoutMs);
    try {
      const { db, state, created } = await openDb(name, Math.max(deadline - Date.now(), 1));
      return new IndexedDbStorage(db, name, opts, state, created, unlock);
    } catch (e) {
      unlock();
      throw e;
    }
  }

  /** Use `IndexedDbStorage.open`. */
  constructor(db, name, opts, state, created, unlock) {
    super();
    if (typeof IDBDatabase === 'undefined' || !(db instanceof IDBDatabase)) {
      throw new StorageError('use IndexedDbStorage.open(name)', 'STORAGE_INVALID_ARGUMENT');
    }
    this.#db = db;
    this.#unlock = unlock;
    this.#name = name;
    this.#opts = opts;
    this.#chunkBytes = state.chunkBytes ?? opts.chunkBytes;
    this.#segments = state.segments;
    this.#snapshot = state.snapshot;
    this.#layoutDirty = created || state.chunkBytes === undefined;
    // Another context upgrades or deletes the database: this copy is no longer its state.
    db.onversionchange = () => this.#fail(new StorageError(`${name} is being upgraded or deleted elsewhere`, 'STORAGE_CLOSED'));
    db.onclose = () => this.#fail(new StorageError(`the browser closed ${name}`, 'STORAGE_CLOSED'));
  }

  /** The database name. */
  get name() {
    return this.#name;
  }
  /** The `StorageError` that stopped this medium, or `null`. */
  get failure() {
    return this.#failure;
  }
  /** Bytes in chunks of a segment, as stored. */
  get chunkBytes() {
    return this.#chunkBytes;
  }

  // ----- the medium the replica writes through (synchronous) -------------------------

  segments() {
    this.#check();
    return [...this.#segments.keys()].sort((a, b) => a - b);
  }
  read(seq) {
    this.#check();
    const s = this.#segment(seq);
    return s.buf.slice(0, s.len);
  }
  create(seq) {
    this.#check();
    this.#segments.set(seq, { buf: new Uint8Array(0), len: 0 });
    this.#touch(seq, 0);
  }
  append(seq, bytes) {
    this.#check();
    const s = this.#segment(seq);
    const len = s.len + bytes.length;
    if (len > s.buf.length) {
      const grown = new Uint8Array(Math.max(len, s.buf.length * 2, 4096));
      grown.set(s.buf.subarray(0, s.len));
      s.buf = grown;
    }
    s.buf.set(bytes, s.len);
    this.#touch(seq, s.len);
    s.len = len;
  }
  /** The flush that will hold everything written so far (durable once `durable()`
   * reaches it); schedules that flush. */
  sync() {
    this.#check();
    if (!this.#isDirty()) return this.#started;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#flush());
    }
    return this.#started + 1;
  }
  truncate(seq, len) {
    this.#check();
    const s = this.#segment(seq);
    if (len < s.len) {
      s.len = len;
      this.#touch(seq, len);
    }
  }
  install(seq, bytes) {
    this.#check();
    this.#segments.set(seq, { buf: bytes.slice(), len: bytes.length });
    this.#touch(seq, 0);
  }
  remove(seq) {
    this.#check();
    this.#segments.delete(seq);
    this.#touch(seq, 0);
  }
  readSnapshot() {
    this.#check();
    return this.#snapshot;
  }
  writeSnapshot(bytes) {
    this.#check();
    this.#snapshot = bytes.slice();
    this.#snapshotDirty = true;
  }
  /** The last flush that committed (every earlier one did too). Throws the failure. */
  durable() {
    this.#check();
    return this.#durable;
  }

  // ----- for the host ---------------------------------------------------------------

  /** Resolves when flush `n` (by default: everything written so far) committed; rejects
   * with the `StorageError` if the medium fails first, at once if `n` is beyond the flush
   * that holds what was written (`STORAGE_INVALID_ARGUMENT`). */
  flushed(n) {
    if (this.#failure) return Promise.reject(this.#failure);
    const last = this.sync();
    n ??= last;
    if (n <= this.#durable) return Promise.resolve(this.#durable);
    if (!Number.isSafeInteger(n) || n > last) {
      return Promise.reject(new StorageError(`flush ${n} is not scheduled (the last is ${last})`, 'STORAGE_INVALID_ARGUMENT'));
    }
    if (this.#waiters.length >= this.#opts.waitersMax) {
      return Promise.reject(new StorageError(`more than ${this.#opts.waitersMax} callers wait for flushes`, 'STORAGE_BUSY'));
    }
    return new Promise((resolve, reject) => this.#waiters.push([n, resolve, reject]));
  }

  /** Waits for what was written to commit, then closes the database; the medium then
   * refuses every call (`STORAGE_CLOSED`). */
  async close() {
    if (!this.#failure) await this.flushed();
    this.#fail(new StorageError(`${this.#name} is closed`, 'STORAGE_CLOSED'), false);
  }

  // ----- inside ---------------------------------------------------------------------

  #check() {
    if (this.#failure) throw this.#failure;
  }
  #segment(seq) {
    const s = this.#segments.get(seq);
    if (!s) throw new StorageError(`no segment ${seq}`, 'STORAGE_FAILED');
    return s;
  }
  #touch(seq, from) {
    const was = this.#dirty.get(seq);
    this.#dirty.set(seq, was === undefined ? from : Math.min(was, from));
  }
  #isDirty() {
    return this.#dirty.size > 0 || this.#snapshotDirty || this.#layoutDirty;
  }

  /** Starts flush `#started + 1` with every change since the last one, unless one is
   * committing (it starts again when that one commits). */
  #flush() {
    this.#scheduled = false;
    if (this.#flushing || this.#failure || !this.#isDirty()) return;
    const n = this.#started + 1;
    let tx;
    try {
      tx = this.#db.transaction([CHUNKS, META], 'readwrite', { durability: this.#opts.durability });
      const chunks = tx.objectStore(CHUNKS);
      const meta = tx.objectStore(META);
      const c = this.#chunkBytes;
      for (const [seq, from] of this.#dirty) {
        const s = this.#segments.get(seq);
        const count = s ? Math.ceil(s.len / c) : 0;
        chunks.delete(IDBKeyRange.bound([seq, count], [seq, Infinity]));
        for (let i = Math.floor(from / c); i < count; i++) {
          chunks.put(s.buf.slice(i * c, Math.min((i + 1) * c, s.len)), [seq, i]);
        }
      }
      meta.put([...this.#segments].map(([seq, s]) => [seq, s.len]), 'segments');
      if (this.#snapshotDirty) meta.put(this.#snapshot, 'snapshot');
      if (this.#layoutDirty) meta.put({ chunkBytes: this.#chunkBytes }, 'layout');
    } catch (e) {
      tx?.abort();
      this.#fail(idbError(e, `flush ${n} of ${this.#name}`));
      return;
    }
    this.#started = n;
    this.#flushing = true;
    this.#dirty.clear();
    this.#snapshotDirty = false;
    this.#layoutDirty = false;
    const timer = setTimeout(() => {
      this.#fail(new StorageError(`flush ${n} of ${this.#name} took over ${this.#opts.flushTimeoutMs} ms`, 'STORAGE_TIMEOUT'));
      try {
        tx.abort();
      } catch {
        // It finished meanwhile; the failure stands, as it was reported.
      }
    }, this.#opts.flushTimeoutMs);
    tx.oncomplete = () => {
      clearTimeout(timer);
      if (this.#failure) return;
      this.#flushing = false;
      this.#durable = n;
      this.#waiters = this.#waiters.filter(([w, resolve]) => (w <= n ? (resolve(n), false) : true));
      this.dispatchEvent(new Event('durable'));
      if (this.#isDirty()) this.#flush();
    };
    tx.onabort = () => {
      clearTimeout(timer);
      this.#fail(idbError(tx.error ?? new Error('aborted'), `flush ${n} of ${this.#name}`));
    };
  }

  /** Stops the medium with `e`; an `error` event unless it is a clean close. */
  #fail(e, report = true) {
    if (this.#failure) return;
    this.#failure = e;
    for (const [, , reject] of this.#waiters) reject(e);
    this.#waiters = [];
    try {
      this.#db.close();
    } catch {
      // Closed already.
    }
    this.#unlock();
    if (report) this.dispatchEvent(new CustomEvent('error', { detail: e }));
  }
}
