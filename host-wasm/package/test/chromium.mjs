// Opens test/browser.html in headless Chromium (Debian's chromium and chromium-driver,
// driven over WebDriver) against the cluster in CONCORD_WS: the Client in the browser
// and the shared conformance suite. Serves the package over HTTP on 127.0.0.1; stops
// chromedriver (and with it Chromium) by PID. Saves a screenshot in test/build/.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import assert from 'node:assert/strict';

const root = new URL('..', import.meta.url).pathname;
const types = { '.js': 'text/javascript', '.html': 'text/html', '.wasm': 'application/wasm', '.css': 'text/css' };

/** Serves files under `dir` (nothing outside it) on 127.0.0.1. */
export async function serve(dir) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = join(dir, path);
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const free = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** A headless Chromium session over chromedriver; `close()` ends both. */
export async function browser() {
  const port = await free();
  const driver = spawn('chromedriver', [`--port=${port}`], { stdio: 'ignore' });
  const profile = mkdtempSync(join(tmpdir(), 'concord-chromium-'));
  const stop = () => {
    if (driver.exitCode === null) driver.kill('SIGKILL');
    rmSync(profile, { recursive: true, force: true });
  };
  process.on('exit', stop);
  const base = `http://127.0.0.1:${port}`;
  const wd = async (method, path, body) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
    return json.value;
  };
  for (let i = 0; ; i++) {
    try {
      await wd('GET', '/status');
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--window-size=1280,900', `--user-data-dir=${profile}`];
  const { sessionId } = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { 'goog:chromeOptions': { args, binary: '/usr/bin/chromium' } } },
  });
  const s = `/session/${sessionId}`;
  return {
    open: (url) => wd('POST', `${s}/url`, { url }),
    eval: (script) => wd('POST', `${s}/execute/sync`, { script, args: [] }),
    click: async (css) => {
      const el = await wd('POST', `${s}/element`, { using: 'css selector', value: css });
      await wd('POST', `${s}/element/${Object.values(el)[0]}/click`, {});
    },
    screenshot: async (file) => writeFileSync(file, Buffer.from(await wd('GET', `${s}/screenshot`), 'base64')),
    close: async () => {
      await wd('DELETE', s).catch(() => {});
      stop();
    },
  };
}

/** Polls `script` in the page until it returns something, for at most `ms`. */
export async function until(b, script, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await b.eval(script);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${script}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const endpoints = process.env.CONCORD_WS;
  assert.ok(endpoints, 'CONCORD_WS names the cluster');
  const server = await serve(root);
  const b = await browser();
  try {
    const q = `endpoints=${encodeURIComponent(endpoints)}&ns=chromium-${process.pid}`;
    await b.open(`http://127.0.0.1:${server.address().port}/test/browser.html?${q}`);
    const result = await until(b, 'return window.__result', 180_000);
    mkdirSync(join(root, 'test/build'), { recursive: true });
    await b.screenshot(join(root, 'test/build/browser-tests.png'));
    console.log(result.log.replace(/^conformance:/m, 'conformance in chromium:'));
    assert.ok(result.ok, 'the browser tests failed');
  } finally {
    await b.close();
    server.close();
  }
}
