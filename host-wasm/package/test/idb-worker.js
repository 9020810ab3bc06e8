// One replica of the IndexedDB test's cluster, in a Web Worker: its log in IndexedDB
// (IndexedDbStorage), its peer and client messages carried by the page. Terminating the
// worker is a crash; a new worker started on the same database restarts the replica from
// what the database committed.
import { Replica, IndexedDbStorage } from '../src/replica-browser.js';

/** Messages kept while the database opens; more are dropped (Raft and the client retry). */
const EARLY_MAX = 1024;
const early = [];
let id;
let replica = null;
let timer;
const now = () => performance.now();

function fail(e) {
  clearTimeout(timer);
  if (replica === null) return;
  replica = null;
  postMessage({ type: 'failed', from: id, code: e?.code ?? e?.name, message: e?.message ?? String(e) });
}

function pump() {
  if (replica === null) return;
  let out;
  try {
    out = replica.drain();
  } catch (e) {
    fail(e);
    return;
  }
  for (const p of out.peers) postMessage({ type: 'peer', from: id, to: p.to, bytes: p.bytes });
  for (const c of out.clients) postMessage({ type: 'reply', from: id, conn: c.conn, bytes: c.bytes });
  clearTimeout(timer);
  timer = setTimeout(() => {
    try {
      replica?.tick(now());
    } catch (e) {
      fail(e);
      return;
    }
    pump();
  }, Math.min(replica.timeoutMs(now()), 1_000));
}

function handle(m) {
  try {
    if (m.type === 'peer') replica.handlePeer(now(), m.from, m.bytes);
    else if (m.type === 'client') replica.handleClient(now(), m.conn, m.bytes);
  } catch (e) {
    // A storage failure stops the replica; a malformed message is only refused.
    if (e?.code === 'STORAGE_FAILED') fail(e);
    return;
  }
  pump();
}

onmessage = async ({ data: m }) => {
  if (m.type === 'start') {
    id = m.id;
    let storage;
    try {
      storage = await IndexedDbStorage.open(m.db, m.options);
    } catch (e) {
      postMessage({ type: 'failed', from: id, code: e.code, message: e.message });
      return;
    }
    // A flush committed: what waited for it may leave now.
    storage.addEventListener('durable', pump);
    storage.addEventListener('error', (e) => fail(e.detail));
    replica = new Replica({ id, members: m.members, storage, now: now() });
    postMessage({ type: 'started', from: id, status: replica.status() });
    pump();
    for (const x of early.splice(0)) handle(x);
  } else if (m.type === 'status') {
    postMessage({ type: 'status', from: id, status: replica?.status() ?? null });
  } else if (replica === null) {
    if (early.length < EARLY_MAX) early.push(m);
  } else {
    handle(m);
  }
};
postMessage({ type: 'ready' });
