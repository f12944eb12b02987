// Drives JsSIP pages (page.html + page.js) in Chromium through puppeteer-core for
// node/tests/browser.rs. Progress lines go to stdout as `EVENT <what>`; the last line is
// `REPORT <json>` with everything the Rust test judges (registration, call states, ICE and DTLS
// state, getStats RTP packet counts over time, the selected candidate pair, the BYE result).
// The driver itself only fails (exit 1, reason on stderr) when it cannot run at all; the test
// decides what passes.
//
//   node driver.mjs SCENARIO
//
// Environment:
//   SIPMESH_CHROMIUM_WS  DevTools WebSocket of a Chromium started by the harness (it owns the
//                        process and kills it); unset: the driver launches /usr/bin/chromium
//                        itself with the same flags (manual runs).
//   SIPMESH_WSS_URL      wss://IP:PORT of the node;  SIPMESH_DOMAIN: the node's IP.
//   SIPMESH_OUT          directory for the page and the JsSIP bundle (the test's directory).
//   SIPMESH_TARGET       `call`: the user to call (default bob).
//   SIPMESH_MEDIA_MS     how long to wait for 50 RTP packets each way (default 15000).
//   SIPMESH_JSSIP_DEBUG  set: JsSIP's debug log into the browser console (forwarded to stderr).
//
// Scenarios:
//   pair    pages "alice" and "bob" register; alice calls bob, bob answers; media flows peer to
//           peer; alice hangs up.
//   call    page "web" registers and calls SIPMESH_TARGET (a legacy phone), then hangs up.
//   answer  page "web" registers, prints `EVENT registered web`, answers the next call, then
//           hangs up once media flowed.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/// Chromium flags, the same as test-support/src/browser.rs passes.
export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--ignore-certificate-errors',
  // Real addresses in candidates, not mDNS names (page.js rewrites the one it keeps).
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

/// The profile preference that keeps WebRTC on one wildcard-bound UDP socket (no adapter
/// enumeration); page.js advertises it as 127.0.0.1. Written to <profile>/Default/Preferences.
export const PREFERENCES = { webrtc: { ip_handling_policy: 'default_public_and_private_interfaces' } };

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) {
      die(`${name} is not set`);
    }
    return fallback;
  }
  return v;
};

function die(why) {
  process.stderr.write(`FAIL: ${why}\n`);
  process.exit(1);
}

const say = (line) => process.stdout.write(`EVENT ${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const wssUrl = env('SIPMESH_WSS_URL');
const domain = env('SIPMESH_DOMAIN');
const out = env('SIPMESH_OUT');
const mediaMs = Number(env('SIPMESH_MEDIA_MS', '15000'));
const debug = Boolean(process.env.SIPMESH_JSSIP_DEBUG);
const started = Date.now();

/// JsSIP has no browser bundle any more: bundle lib/JsSIP.js (global `JsSIP`) next to the page.
async function buildPage() {
  const entry = path.join(here, 'node_modules', 'jssip', 'lib', 'JsSIP.js');
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    globalName: 'JsSIP',
    platform: 'browser',
    target: 'chrome120',
    outfile: path.join(out, 'jssip.bundle.js'),
    logLevel: 'warning',
  });
  for (const file of ['page.html', 'page.js']) {
    fs.copyFileSync(path.join(here, file), path.join(out, file));
  }
  return `file://${path.join(out, 'page.html')}`;
}

async function openBrowser() {
  const endpoint = process.env.SIPMESH_CHROMIUM_WS;
  if (endpoint) {
    return { browser: await puppeteer.connect({ browserWSEndpoint: endpoint }), owned: false };
  }
  const profile = path.join(out, 'chromium-profile');
  fs.mkdirSync(path.join(profile, 'Default'), { recursive: true });
  fs.writeFileSync(path.join(profile, 'Default', 'Preferences'), JSON.stringify(PREFERENCES));
  const browser = await puppeteer.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    userDataDir: profile,
    headless: true,
    args: CHROMIUM_FLAGS.filter((f) => !f.startsWith('--headless')),
  });
  return { browser, owned: true };
}

/// A page with one registered user agent.
async function agent(browser, url, user) {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[${user} console] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${user} pageerror] ${e}\n`));
  await page.goto(url);
  await page.evaluate((o) => window.sipmesh.register(o), { wsUrl: wssUrl, domain, user, debug });
  say(`registered ${user}`);
  return { page, user };
}

/// Polls `fn` every 100 ms until it returns a truthy value or `ms` pass; returns the last value.
async function until(ms, fn) {
  const deadline = Date.now() + ms;
  let value = await fn();
  while (!value && Date.now() < deadline) {
    await sleep(100);
    value = await fn();
  }
  return value;
}

const statesOf = (a, i) => a.page.evaluate((i) => window.sipmesh.states(i), i);
const has = (states, prefix) => states.some((s) => s.startsWith(prefix));

async function confirmed(a, i, ms = 10000) {
  const ok = await until(ms, async () => {
    const s = await statesOf(a, i);
    return has(s, 'confirmed') || has(s, 'failed') || has(s, 'ended');
  });
  const s = await statesOf(a, i);
  say(`${a.user} call ${i}: ${s.join(',')}`);
  return ok && has(s, 'confirmed') && !has(s, 'failed');
}

/// Samples getStats on every (agent, call) every 250 ms until each has ICE connected, DTLS
/// connected and more than 50 RTP packets in and out, or `mediaMs` pass.
async function media(legs) {
  const deadline = Date.now() + mediaMs;
  for (;;) {
    const samples = await Promise.all(
      legs.map(([a, i]) => a.page.evaluate((i) => window.sipmesh.sample(i), i)),
    );
    const done = samples.every(
      (s) =>
        s &&
        ['connected', 'completed'].includes(s.ice) &&
        s.dtls === 'connected' &&
        s.inbound > 50 &&
        s.outbound > 50,
    );
    if (done || Date.now() > deadline) {
      say(`media ${done ? 'flowing' : 'incomplete'}: ${JSON.stringify(samples)}`);
      return done;
    }
    await sleep(250);
  }
}

/// Hangs up call `i` of `a` and waits (5 s at most) for the final response to the BYE.
async function hangup(a, i, others = []) {
  await a.page.evaluate((i) => window.sipmesh.hangup(i), i);
  await until(5000, () => a.page.evaluate((i) => window.sipmesh.bye(i), i));
  for (const [b, j] of others) {
    await until(5000, () => b.page.evaluate((j) => window.sipmesh.bye(j), j));
  }
  say(`${a.user} hung up`);
}

const scenarios = {
  async pair(browser, url) {
    const alice = await agent(browser, url, 'alice');
    const bob = await agent(browser, url, 'bob');
    await bob.page.evaluate(() => window.sipmesh.autoAnswer());
    const i = await alice.page.evaluate((t) => window.sipmesh.call(t), `sip:bob@${domain}`);
    const rang = await until(10000, () => bob.page.evaluate(() => window.sipmesh.callCount()));
    if (rang && (await confirmed(alice, i)) && (await confirmed(bob, 0))) {
      await media([
        [alice, i],
        [bob, 0],
      ]);
    }
    await hangup(alice, i, rang ? [[bob, 0]] : []);
    return [alice, bob];
  },

  async call(browser, url) {
    const web = await agent(browser, url, 'web');
    const target = env('SIPMESH_TARGET', 'bob');
    const i = await web.page.evaluate((t) => window.sipmesh.call(t), `sip:${target}@${domain}`);
    if (await confirmed(web, i)) {
      await media([[web, i]]);
    }
    await hangup(web, i);
    return [web];
  },

  async answer(browser, url) {
    const web = await agent(browser, url, 'web');
    await web.page.evaluate(() => window.sipmesh.autoAnswer());
    const rang = await until(20000, () => web.page.evaluate(() => window.sipmesh.callCount()));
    if (rang) {
      if (await confirmed(web, 0)) {
        await media([[web, 0]]);
      }
      await hangup(web, 0);
    }
    return [web];
  },
};

const name = process.argv[2];
const run = scenarios[name];
if (!run) {
  die(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
}

let opened = null;
try {
  const url = await buildPage();
  opened = await openBrowser();
  const version = await opened.browser.version();
  say(`browser ${version}`);
  const agents = await run(opened.browser, url);
  const reports = [];
  for (const a of agents) {
    reports.push(await a.page.evaluate(() => window.sipmesh.report()));
  }
  const report = {
    scenario: name,
    browser: version,
    elapsed_ms: Date.now() - started,
    agents: reports,
  };
  process.stdout.write(`REPORT ${JSON.stringify(report)}\n`);
} catch (e) {
  die(e && e.stack ? e.stack : String(e));
} finally {
  if (opened) {
    if (opened.owned) {
      await opened.browser.close();
    } else {
      await opened.browser.disconnect();
    }
  }
}
process.exit(0);
