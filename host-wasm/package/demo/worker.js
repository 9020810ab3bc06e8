// One replica of the demo's in-tab cluster, in a Web Worker: the page carries its peer
// and client messages; its log is in a MemoryStorage that a restart keeps.
import { Replica, MemoryStorage } from '../src/replica-browser.js';

const storage = new MemoryStorage();
let id;
let members;
let replica;
let timer;
const now = () => performance.now();

function pump() {
  const out = replica.drain();
  for (const p of out.peers) postMessage({ type: 'peer', from: id, to: p.to, bytes: p.bytes });
  for (const c of out.clients) postMessage({ type: 'reply', from: id, conn: c.conn, bytes: c.bytes });
  clearTimeout(timer);
  timer = setTimeout(() => {
    replica.tick(now());
    pump();
  }, Math.min(replica.timeoutMs(now()), 1_000));
}

function start() {
  replica = new Replica({ id, members, storage, now: now() });
  pump();
}

onmessage = ({ data: m }) => {
  if (m.type === 'start') {
    ({ id, members } = m);
    start();
  } else if (m.type === 'peer') {
    replica.handlePeer(now(), m.from, m.bytes);
    pump();
  } else if (m.type === 'client') {
    replica.handleClient(now(), m.conn, m.bytes);
    pump();
  } else if (m.type === 'status') {
    postMessage({ type: 'status', from: id, status: replica.status() });
  } else if (m.type === 'restart') {
    clearTimeout(timer);
    replica.free();
    start();
  }
};
// The module (and its wasm) is loaded: the page may start this replica now.
postMessage({ type: 'ready' });
