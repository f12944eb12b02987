// JsSIP user agents in Node.js (WebSocket from the `ws` package) against a sipmesh node.
// Driven by node/tests/jssip.rs: one scenario per run, progress lines on stdout, exit status 0
// on success and 1 with a reason on stderr otherwise.
//
//   node client.js SCENARIO
//
// Environment: SIPMESH_WS_URL (ws://IP:PORT or wss://IP:PORT), SIPMESH_DOMAIN (the node's IP),
// SIPMESH_CA (PEM file of the CA to trust for wss://, optional), SIPMESH_TIMEOUT_MS.
//
// Scenarios:
//   register    REGISTER, then un-REGISTER, then close.
//   pair        two users MESSAGE each other.
//   sipp        user "web" MESSAGEs "bob" (a SIPp UAS over UDP), prints "SENT", then waits for a
//               MESSAGE from SIPp and prints "RECEIVED".
//   reconnect   "carol" is reachable; after ua.stop() (un-REGISTER + close) she is not; after an
//               abrupt socket reset JsSIP reconnects, registers again and she is reachable again.
//   dialog      "alice" SUBSCRIBEs to "bob" (RFC 6665): the SUBSCRIBE is record-routed with a
//               flow token per side; bob's NOTIFYs cross the proxy in-dialog to alice's
//               `.invalid` Contact, so only the flow token can route them. (alice's own
//               in-dialog requests cannot be tested with JsSIP as the notifier: its 200 to
//               SUBSCRIBE does not copy Record-Route, which it does only for INVITE.)
//   calls       "web" calls "bob" (a SIPp UAS over UDP) and hangs up, prints "READY", then
//               answers a call from a SIPp UAC over UDP, which hangs up: INVITE/ACK/BYE bridged
//               WS <-> UDP in both directions through the double Record-Route.
//   abrupt      "dave" registers, prints "REGISTERED", then resets the TCP connection and exits.
'use strict';

const fs = require('fs');
const WS = require('ws');

const url = need('SIPMESH_WS_URL');
const domain = need('SIPMESH_DOMAIN');
const ca = process.env.SIPMESH_CA ? fs.readFileSync(process.env.SIPMESH_CA) : undefined;
const timeoutMs = Number(process.env.SIPMESH_TIMEOUT_MS || 15000);

// JsSIP's WebSocketInterface calls `new WebSocket(url, 'sip')`: give it `ws`, trusting the
// test CA for wss://.
global.WebSocket = class extends WS {
  constructor(address, protocols) {
    super(address, protocols, ca ? { ca } : {});
  }
};
require('./media_stub');
const JsSIP = require('jssip');
if (process.env.SIPMESH_JSSIP_DEBUG) {
  JsSIP.debug.enable('JsSIP:*');
}

function need(name) {
  const v = process.env[name];
  if (!v) {
    fail(`${name} is not set`);
  }
  return v;
}

function fail(why) {
  process.stderr.write(`FAIL: ${why}\n`);
  process.exit(1);
}

function say(line) {
  process.stdout.write(`${line}\n`);
}

function within(ms, what, promise) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function uri(user) {
  return `sip:${user}@${domain}`;
}

function makeUa(user, extra = {}) {
  const socket = new JsSIP.WebSocketInterface(url);
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: uri(user),
    register: true,
    register_expires: 600,
    connection_recovery_min_interval: 1,
    connection_recovery_max_interval: 2,
    ...extra,
  });
  // Without a listener JsSIP answers MESSAGE with 405.
  ua.on('newMessage', () => {});
  return ua;
}

function once(ua, event) {
  return new Promise((resolve) => ua.once(event, resolve));
}

/// Starts `ua` (it registers once connected) and waits for the registration (a failure
/// rejects).
async function register(ua, what) {
  const done = new Promise((resolve, reject) => {
    ua.once('registered', resolve);
    ua.once('registrationFailed', (e) =>
      reject(new Error(`${what}: registration failed: ${e.cause} ${e.response ? e.response.status_code : ''}`)),
    );
  });
  ua.start();
  await within(timeoutMs, `${what} registers`, done);
  say(`REGISTERED ${what}`);
}

/// Sends a MESSAGE and resolves with the final status code (200 on success).
function message(ua, to, body) {
  return new Promise((resolve) => {
    ua.sendMessage(uri(to), body, {
      eventHandlers: {
        succeeded: (e) => resolve(e.response ? e.response.status_code : 200),
        failed: (e) => resolve(e.response ? e.response.status_code : `${e.cause}`),
      },
    });
  });
}

/// Resolves with the body of the next MESSAGE `ua` receives.
function nextMessage(ua) {
  return new Promise((resolve) => {
    const handler = (e) => {
      if (e.originator === 'remote') {
        ua.removeListener('newMessage', handler);
        resolve(e.request.body);
      }
    };
    ua.on('newMessage', handler);
  });
}

async function stop(ua) {
  const closed = once(ua, 'disconnected');
  ua.stop();
  await within(timeoutMs, 'UA stops', closed);
}

/// The WebSocket under a UA's transport (JsSIP internals: `_transport.socket._ws`).
function rawSocket(ua) {
  const ws = ua._transport && ua._transport.socket && ua._transport.socket._ws;
  if (!ws || !ws._socket) {
    fail('cannot reach the UA\'s WebSocket');
  }
  return ws._socket;
}

function resetConnection(ua) {
  const s = rawSocket(ua);
  if (typeof s.resetAndDestroy === 'function') {
    s.resetAndDestroy();
  } else {
    s.destroy();
  }
}

const scenarios = {
  async register() {
    const ua = makeUa('alice');
    await register(ua, 'alice');
    const gone = once(ua, 'unregistered');
    ua.unregister();
    await within(timeoutMs, 'alice unregisters', gone);
    say('UNREGISTERED alice');
    await stop(ua);
  },

  async pair() {
    const alice = makeUa('alice');
    const bob = makeUa('bob');
    await register(alice, 'alice');
    await register(bob, 'bob');
    const atBob = nextMessage(bob);
    const code = await within(timeoutMs, 'alice -> bob', message(alice, 'bob', 'hello bob'));
    if (code !== 200) {
      fail(`alice -> bob answered ${code}`);
    }
    const body = await within(timeoutMs, 'bob receives', atBob);
    if (body !== 'hello bob') {
      fail(`bob got ${JSON.stringify(body)}`);
    }
    const atAlice = nextMessage(alice);
    const back = await within(timeoutMs, 'bob -> alice', message(bob, 'alice', 'hello alice'));
    if (back !== 200) {
      fail(`bob -> alice answered ${back}`);
    }
    if ((await within(timeoutMs, 'alice receives', atAlice)) !== 'hello alice') {
      fail('alice got the wrong body');
    }
    say('EXCHANGED');
    await stop(alice);
    await stop(bob);
  },

  async sipp() {
    const ua = makeUa('web');
    await register(ua, 'web');
    const incoming = nextMessage(ua);
    const code = await within(timeoutMs, 'web -> bob (SIPp)', message(ua, 'bob', 'hello SIPp'));
    if (code !== 200) {
      fail(`web -> bob answered ${code}`);
    }
    say('SENT');
    const body = await within(timeoutMs, 'a MESSAGE from SIPp', incoming);
    if (!String(body).includes('Hello from sipmesh tests.')) {
      fail(`unexpected body ${JSON.stringify(body)}`);
    }
    say('RECEIVED');
    await stop(ua);
  },

  async reconnect() {
    const instance = '6f1a4a53-8c5b-4a8e-9d0e-3b1c2a7d9e01';
    const probe = makeUa('probe');
    await register(probe, 'probe');
    let carol = makeUa('carol', { instance_id: instance });
    await register(carol, 'carol');
    let code = await message(probe, 'carol', 'one');
    if (code !== 200) {
      fail(`carol unreachable while registered: ${code}`);
    }
    // ua.stop() un-registers, then closes the connection.
    await stop(carol);
    code = await message(probe, 'carol', 'two');
    if (code !== 404 && code !== 480) {
      fail(`carol still reachable after stop: ${code}`);
    }
    say(`STOPPED carol (${code})`);
    // A new UA with the same instance: registers again and is reachable.
    carol = makeUa('carol', { instance_id: instance });
    await register(carol, 'carol again');
    code = await message(probe, 'carol', 'three');
    if (code !== 200) {
      fail(`carol unreachable after registering again: ${code}`);
    }
    // The connection dies under JsSIP: it reconnects and registers again by itself.
    const again = once(carol, 'registered');
    resetConnection(carol);
    await within(timeoutMs, 'carol re-registers after the reconnect', again);
    say('REREGISTERED carol');
    code = await message(probe, 'carol', 'four');
    if (code !== 200) {
      fail(`carol unreachable after the reconnect: ${code}`);
    }
    say('RECONNECTED');
    await stop(carol);
    await stop(probe);
  },

  async dialog() {
    const alice = makeUa('alice');
    const bob = makeUa('bob');
    await register(alice, 'alice');
    await register(bob, 'bob');
    let notifier;
    bob.on('newSubscribe', (e) => {
      notifier = bob.notify(e.request, 'text/plain', {});
      notifier.on('subscribe', (isUnsubscribe) => {
        if (!isUnsubscribe) {
          // The proxy may deliver the NOTIFY before the 200 to the SUBSCRIBE (different
          // transactions, possibly different shards); RFC 6665 §4.1.2.4 asks subscribers to
          // cope, JsSIP does not: give the 200 a head start.
          setTimeout(() => notifier.notify('state 1'), 200);
        }
      });
      notifier.start();
    });
    const sub = alice.subscribe(uri('bob'), 'sipmesh-test', 'text/plain', { expires: 120 });
    const bodies = [];
    let first;
    const gotFirst = new Promise((resolve) => {
      first = resolve;
    });
    sub.on('notify', (isFinal, request, body) => {
      bodies.push(`${isFinal ? 'final' : 'partial'}:${body}`);
      first();
    });
    const terminated = new Promise((resolve) => sub.on('terminated', resolve));
    sub.subscribe();
    await within(timeoutMs, 'the first in-dialog NOTIFY reaches alice', gotFirst);
    say(`NOTIFIED ${bodies.join(',')}`);
    // A second NOTIFY in the same dialog: the final one, ending the subscription.
    notifier.terminate('final state');
    const code = await within(timeoutMs, 'the final NOTIFY', terminated);
    if (!bodies.includes('final:final state')) {
      fail(`no final NOTIFY (terminated with ${code}): ${bodies.join(',')}`);
    }
    say(`TERMINATED ${bodies.join(',')}`);
    await stop(alice);
    await stop(bob);
  },

  async calls() {
    const ua = makeUa('web');
    const noMedia = { mediaConstraints: { audio: false, video: false } };
    const incoming = new Promise((resolve, reject) => {
      ua.on('newRTCSession', (e) => {
        if (e.originator !== 'remote') {
          return;
        }
        e.session.on('ended', (end) => resolve(end.originator));
        e.session.on('failed', (f) => reject(new Error(`incoming call failed: ${f.cause}`)));
        e.session.answer(noMedia);
      });
    });
    await register(ua, 'web');
    const session = ua.call(uri('bob'), noMedia);
    await within(
      timeoutMs,
      'web -> bob (SIPp) is confirmed',
      new Promise((resolve, reject) => {
        session.on('confirmed', resolve);
        session.on('failed', (f) => reject(new Error(`outgoing call failed: ${f.cause}`)));
      }),
    );
    // Hang up a little later: the ACK and the BYE are separate transactions that the proxy
    // may handle on different shards, and SIPp's UAS scenario insists on the ACK first.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const ended = new Promise((resolve) => session.on('ended', resolve));
    session.terminate();
    await within(timeoutMs, 'web hangs up (BYE answered)', ended);
    say('CALLED');
    say('READY');
    const by = await within(timeoutMs * 2, 'a call from SIPp, answered and hung up', incoming);
    if (by !== 'remote') {
      fail(`incoming call ended by ${by}, not by the SIPp caller's BYE`);
    }
    say('ANSWERED');
    await stop(ua);
  },

  async abrupt() {
    const ua = makeUa('dave');
    await register(ua, 'dave');
    resetConnection(ua);
    say('RESET');
    process.exit(0);
  },
};

const name = process.argv[2];
const run = scenarios[name];
if (!run) {
  fail(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
}
within(timeoutMs * 4, name, run())
  .then(() => {
    say('PASS');
    process.exit(0);
  })
  .catch((e) => fail(e && e.stack ? e.stack : String(e)));
