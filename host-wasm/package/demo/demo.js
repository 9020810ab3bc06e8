// The demo page: three replicas in Web Workers joined through this page (which can cut
// one off), a Client against them over the same messages, and a Client against the
// `concord dev` cluster that serves this page, over WebSocket.
import { Client } from '../src/replica-browser.js';

const members = [1, 2, 3];
const cut = new Set();
const workers = new Map();
const statuses = new Map();
const $ = (id) => document.getElementById(id);
const demo = (window.__demo = { leader: null, tabFence: null, devFence: null, errors: [] });

let client;
for (const id of members) {
  const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  w.onmessage = ({ data: m }) => {
    if (m.type === 'ready') {
      w.postMessage({ type: 'start', id, members });
    } else if (m.type === 'peer') {
      if (!cut.has(m.from) && !cut.has(m.to)) workers.get(m.to).postMessage(m);
    } else if (m.type === 'reply') {
      if (!cut.has(m.from)) client?.receive(`worker:${m.from}`, m.bytes);
    } else if (m.type === 'status') {
      statuses.set(m.from, m.status);
    }
  };
  w.onerror = (e) => demo.errors.push(`worker ${id}: ${e.message}`);
  workers.set(id, w);
}

const transport = (address, bytes) => {
  const id = Number(address.split(':')[1]);
  if (!cut.has(id)) workers.get(id)?.postMessage({ type: 'client', conn: 1, bytes });
};

function render() {
  const rows = members.map((id) => {
    const s = statuses.get(id);
    const cls = [cut.has(id) ? 'cut' : '', s?.role === 'leader' && !cut.has(id) ? 'leader' : ''].join(' ');
    const locks = (s?.locks ?? []).map((l) => `${l.name}: session ${l.holder ?? '-'} fence ${l.fence ?? '-'}`).join('<br>');
    return `<tr class="${cls}"><td>${id}</td><td>${s?.role ?? '…'}</td><td>${s?.term ?? ''}</td><td>${s?.leader ?? '-'}</td>
      <td>${s ? `${s.commitIndex} / ${s.appliedIndex} / ${s.lastIndex}` : ''}</td><td>${locks}</td>
      <td><button data-node="${id}">${cut.has(id) ? 'Heal' : 'Partition'}</button></td></tr>`;
  });
  $('nodes').tBodies[0].innerHTML = rows.join('');
  const leaders = members.filter((id) => statuses.get(id)?.role === 'leader' && !cut.has(id));
  demo.leader = leaders.length === 1 ? leaders[0] : null;
}

$('nodes').addEventListener('click', (e) => {
  const id = Number(e.target.dataset?.node);
  if (!id) return;
  if (cut.has(id)) cut.delete(id);
  else cut.add(id);
  render();
});
$('heal').onclick = () => {
  cut.clear();
  render();
};

setInterval(() => {
  for (const w of workers.values()) w.postMessage({ type: 'status' });
  render();
}, 250);

let held = null;
const say = (id, text) => {
  $(id).textContent = text;
};
const fail = (id, e) => {
  demo.errors.push(`${e.code ?? e.name}: ${e.message}`);
  say(id, `${e.name} (${e.code ?? ''}): ${e.message}`);
};

client = Client.open({ endpoints: members.map((id) => `worker:${id}`), transport, sessionTtlMs: 5_000 });
await client.ready(30_000);
say('tab-out', 'client connected to the in-tab cluster');
$('lock').onclick = async () => {
  try {
    say('tab-out', 'waiting for the lock…');
    held = await client.lock('demo', { timeoutMs: 10_000 });
    demo.tabFence = held.fence;
    $('unlock').disabled = false;
    say('tab-out', `holding "demo" with fence ${held.fence} (session ${held.session})`);
  } catch (e) {
    fail('tab-out', e);
  }
};
$('unlock').onclick = async () => {
  try {
    await held?.release();
    $('unlock').disabled = true;
    say('tab-out', `released fence ${held.fence}`);
    held = null;
  } catch (e) {
    fail('tab-out', e);
  }
};

// The dev cluster: every node's HTTP port, from the page's (node 1's) up, unless the
// query string names the endpoints (?endpoints=ws://…/ws,…).
const given = new URLSearchParams(location.search).get('endpoints');
const port = Number(location.port);
const endpoints = given ? given.split(',') : [0, 1, 2].map((i) => `ws://${location.hostname}:${port + i}/ws`);
$('dev-endpoints').textContent = `endpoints: ${endpoints.join(', ')}`;
try {
  const dev = await Client.connect({ endpoints, connectTimeoutMs: 5_000 });
  const status = await dev.status();
  say('dev-out', `connected: node ${status.id} leads term ${status.term}, commit index ${status.commitIndex}`);
  $('dev-lock').onclick = async () => {
    try {
      const l = await dev.lock('demo', { timeoutMs: 5_000 });
      demo.devFence = l.fence;
      say('dev-out', `took "demo" on the dev cluster with fence ${l.fence}; released`);
      await l.release();
    } catch (e) {
      fail('dev-out', e);
    }
  };
  $('dev-incr').onclick = async () => {
    try {
      say('dev-out', `visits = ${await dev.counter('visits').incr()}`);
    } catch (e) {
      fail('dev-out', e);
    }
  };
} catch (e) {
  fail('dev-out', e);
}
