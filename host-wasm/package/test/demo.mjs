// Opens the demo page as `concord dev` serves it (/demo/ on node 1's HTTP port, from
// CONCORD_WS) in headless Chromium: checks that the in-tab cluster shows a leader, that
// a lock can be taken there and on the dev cluster, and saves a screenshot to
// test/build/demo.png.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { browser, until } from './chromium.mjs';

const first = new URL(process.env.CONCORD_WS.split(',')[0].replace(/^ws/, 'http'));
const page = `http://${first.host}/demo/`;
const root = new URL('..', import.meta.url).pathname;
const b = await browser();
try {
  await b.open(page);
  const leader = await until(b, 'return window.__demo && window.__demo.leader', 30_000);
  await until(b, 'return document.getElementById("tab-out").textContent.includes("connected")', 30_000);
  await b.click('#lock');
  const tabFence = await until(b, 'return window.__demo.tabFence', 30_000);
  await until(b, 'return document.getElementById("dev-out").textContent.includes("connected")', 30_000);
  await b.click('#dev-lock');
  const devFence = await until(b, 'return window.__demo.devFence', 30_000);
  // The lock holder shows in the leader's row once the status refreshes.
  await until(b, 'return document.querySelector("tr.leader td:nth-child(6)").textContent.includes("demo")', 10_000);
  mkdirSync(join(root, 'test/build'), { recursive: true });
  await b.screenshot(join(root, 'test/build/demo.png'));
  const errors = await b.eval('return window.__demo.errors');
  assert.deepEqual(errors, [], 'the page reported errors');
  console.log(`demo: ${page} shows leader ${leader}; in-tab lock fence ${tabFence}; dev-cluster lock fence ${devFence}; screenshot test/build/demo.png`);
} catch (e) {
  mkdirSync(join(root, 'test/build'), { recursive: true });
  await b.screenshot(join(root, 'test/build/demo-failed.png')).catch(() => {});
  console.error(await b.eval('return document.body.innerText').catch(() => ''));
  throw e;
} finally {
  await b.close();
}
