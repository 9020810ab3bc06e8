// One Concord replica in a worker thread: the main thread carries its peer messages
// (postMessage is the transport), this thread keeps its clock and timer, its log goes
// to a MemoryStorage that outlives the replica, so `restart` rebuilds it from what it
// stored.
import { parentPort, workerData } from 'node:worker_threads';
import { Replica, MemoryStorage } from '@concord/client/replica';

const storage = new MemoryStorage();
const now = () => performance.now();
let replica;
let timer;

function pump() {
  const out = replica.drain();
  for (const p of out.peers) parentPort.postMessage({ type: 'peer', from: workerData.id, to: p.to, bytes: p.bytes });
  clearTimeout(timer);
  timer = setTimeout(() => {
    replica.tick(now());
    pump();
  }, Math.min(replica.timeoutMs(now()), 1_000));
}

function start() {
  replica = new Replica({ id: workerData.id, members: workerData.members, storage, now: now() });
  pump();
}

parentPort.on('message', (m) => {
  if (m.type === 'peer') {
    replica.handlePeer(now(), m.from, m.bytes);
    pump();
  } else if (m.type === 'status') {
    parentPort.postMessage({ type: 'status', status: replica.status() });
  } else if (m.type === 'restart') {
    clearTimeout(timer);
    replica.free();
    start();
    parentPort.postMessage({ type: 'status', status: replica.status() });
  } else if (m.type === 'stop') {
    clearTimeout(timer);
    parentPort.close();
  }
});
start();
