// The browser side of the sipmesh browser tests: one JsSIP user agent (the esbuild bundle of
// JsSIP's lib/JsSIP.js, global `JsSIP`) registering over WSS, calling and answering with real
// WebRTC media (Chromium's fake audio device). driver.mjs calls the functions on
// `window.sipmesh` through puppeteer-core and reads `report()`.
//
// Loopback only (see README "Browser tests"): Chromium runs with the preference
// `webrtc.ip_handling_policy = default_public_and_private_interfaces`, which turns off adapter
// enumeration: WebRTC opens one UDP socket on the wildcard address (0.0.0.0) and labels its host
// candidate with the default route's address. Every local SDP that JsSIP sends (its 'sdp' event
// may rewrite it) keeps exactly that one IPv4 UDP host candidate, rewritten to 127.0.0.1 with the
// same port, and its c=/m= lines point there. Peers therefore only ever send to 127.0.0.1, and
// the wildcard socket's packets towards 127.0.0.0/8 leave with source 127.0.0.1. report() shows
// the selected candidate pair: the remote end must be a 127.0.0.1 `host` candidate (a check from
// another address would have shown up as `prflx`).
'use strict';

(() => {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);

  const state = {
    user: null,
    registered: false,
    registration_error: null,
    calls: [],
    errors: [],
  };
  // Final responses to BYE by Call-ID, seen on the WebSocket (JsSIP does not surface them).
  const byeResponses = new Map();
  let ua = null;
  let autoAnswer = false;

  // Every SIP message on the wire, for BYE results and the failure report.
  const wire = [];
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('message', (e) => onWire('in', String(e.data)));
    }

    send(data) {
      onWire('out', String(data));
      super.send(data);
    }
  };

  function onWire(direction, text) {
    const first = text.split('\r\n', 1)[0];
    wire.push(`${ms()} ${direction} ${first}`);
    const status = /^SIP\/2\.0 (\d{3})/.exec(first);
    const cseq = /^CSeq:\s*\d+\s+([A-Za-z]+)/im.exec(text);
    const callId = /^(?:Call-ID|i):\s*(\S+)/im.exec(text);
    if (status && cseq && cseq[1].toUpperCase() === 'BYE' && callId) {
      const code = Number(status[1]);
      if (code >= 200) {
        byeResponses.set(callId[1], { direction, status: code });
      }
    }
  }

  /// Keeps one candidate per media section: the IPv4 UDP host candidate of the wildcard socket,
  /// rewritten to 127.0.0.1; points c=, m= and a=rtcp at it. Throws when there is none, or more
  /// than one (adapter enumeration is on: the ip_handling_policy preference is missing).
  function loopbackOnly(sdp) {
    const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
    const lines = sdp.split(eol);
    const sections = [[]];
    for (const line of lines) {
      if (line.startsWith('m=')) {
        sections.push([]);
      }
      sections[sections.length - 1].push(line);
    }
    const out = [];
    sections.forEach((section, index) => {
      if (index === 0) {
        out.push(...section.map((l) => l.replace(/^c=IN IP[46] \S+/, 'c=IN IP4 127.0.0.1')));
        return;
      }
      const ipv4Host = (line) => {
        const f = line.slice('a=candidate:'.length).split(' ');
        // foundation component transport priority address port "typ" type ...
        return f[1] === '1' && f[2].toLowerCase() === 'udp' && /^\d+\.\d+\.\d+\.\d+$/.test(f[4]) &&
          f[6] === 'typ' && f[7] === 'host' ? f : null;
      };
      const hosts = section.filter((l) => l.startsWith('a=candidate:') && ipv4Host(l));
      if (/^m=\S+ 0 /.test(section[0])) {
        out.push(...section.filter((l) => !l.startsWith('a=candidate:')));
        return;
      }
      if (hosts.length !== 1) {
        throw new Error(
          `expected one IPv4 UDP host candidate (wildcard socket) in ${section[0]}, got ` +
            `${hosts.length}: is webrtc.ip_handling_policy set in the Chromium profile?`,
        );
      }
      const f = ipv4Host(hosts[0]);
      const port = f[5];
      f[4] = '127.0.0.1';
      const candidate = `a=candidate:${f.join(' ')}`;
      for (const line of section) {
        if (line.startsWith('a=candidate:')) {
          if (line === hosts[0]) {
            out.push(candidate);
          }
          continue;
        }
        out.push(
          line
            .replace(/^(m=\S+ )\d+/, `$1${port}`)
            .replace(/^c=IN IP[46] \S+/, 'c=IN IP4 127.0.0.1')
            .replace(/^a=rtcp:\d+ IN IP[46] \S+/, `a=rtcp:${port} IN IP4 127.0.0.1`),
        );
      }
    });
    return out.join(eol);
  }

  // JsSIP's defaults (bundlePolicy 'balanced'): rtpengine 10.5 (Debian 12) answers without an
  // a=group:BUNDLE line, which 'max-bundle' would reject.
  const pcConfig = { iceServers: [], rtcpMuxPolicy: 'require' };
  const mediaConstraints = { audio: true, video: false };

  function track(session, direction, callId) {
    const call = {
      direction,
      call_id: callId,
      states: [],
      ice_states: [],
      local_sdp: null,
      remote_sdp: null,
      session,
      error: null,
    };
    const mark = (name) => call.states.push({ ms: ms(), state: name });
    session.on('sdp', (e) => {
      if (e.originator === 'local') {
        try {
          e.sdp = loopbackOnly(e.sdp);
        } catch (err) {
          call.error = String(err);
          state.errors.push(String(err));
        }
        call.local_sdp = e.sdp;
      } else {
        call.remote_sdp = e.sdp;
      }
    });
    const watchPc = (pc) => {
      pc.addEventListener('iceconnectionstatechange', () =>
        call.ice_states.push({ ms: ms(), state: pc.iceConnectionState }),
      );
    };
    if (session.connection) {
      watchPc(session.connection);
    }
    session.on('peerconnection', (e) => watchPc(e.peerconnection));
    // Why WebRTC refused an SDP (JsSIP only says "Bad Media Description" / "WebRTC Error").
    for (const name of [
      'getusermediafailed',
      'peerconnection:createofferfailed',
      'peerconnection:createanswerfailed',
      'peerconnection:setlocaldescriptionfailed',
      'peerconnection:setremotedescriptionfailed',
    ]) {
      session.on(name, (err) => {
        call.error = `${name}: ${err && err.message ? err.message : err}`;
      });
    }
    for (const name of ['progress', 'accepted', 'confirmed']) {
      session.on(name, () => mark(name));
    }
    session.on('ended', (e) => mark(`ended:${e.originator}:${e.cause}`));
    session.on('failed', (e) => {
      mark(`failed:${e.originator}:${e.cause}`);
      if (e.message && e.message.status_code) {
        call.failed_status = e.message.status_code;
      }
    });
    state.calls.push(call);
    return call;
  }

  async function transportStats(call) {
    const pc = call.session.connection;
    const result = {
      ms: ms(),
      ice: pc ? pc.iceConnectionState : null,
      connection: pc ? pc.connectionState : null,
      dtls: null,
      inbound: 0,
      outbound: 0,
      codec: null,
      local: null,
      remote: null,
    };
    if (!pc) {
      return result;
    }
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        result.inbound += s.packetsReceived || 0;
        const codec = s.codecId ? report.get(s.codecId) : null;
        if (codec) {
          result.codec = codec.mimeType;
        }
      } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        result.outbound += s.packetsSent || 0;
      } else if (s.type === 'transport') {
        result.dtls = s.dtlsState || null;
        pairId = s.selectedCandidatePairId || pairId;
      }
    });
    const pair = pairId ? report.get(pairId) : null;
    const describe = (id) => {
      const c = id ? report.get(id) : null;
      return c ? `${c.address}:${c.port} ${c.protocol} ${c.candidateType}` : null;
    };
    if (pair) {
      result.local = describe(pair.localCandidateId);
      result.remote = describe(pair.remoteCandidateId);
    }
    return result;
  }

  window.sipmesh = {
    /// Registers `user` at `domain` over `wsUrl`; resolves once registered.
    register({ wsUrl, domain, user, debug }) {
      if (debug) {
        JsSIP.debug.enable('JsSIP:*');
      }
      state.user = user;
      document.getElementById('status').textContent = `registering ${user}`;
      ua = new JsSIP.UA({
        sockets: [new JsSIP.WebSocketInterface(wsUrl)],
        uri: `sip:${user}@${domain}`,
        register: true,
        register_expires: 300,
        session_timers: false,
        user_agent: 'sipmesh-browser-test',
      });
      ua.on('newRTCSession', (e) => {
        if (e.originator !== 'remote') {
          return;
        }
        const call = track(e.session, 'incoming', e.request.call_id);
        if (autoAnswer) {
          e.session.answer({ mediaConstraints, pcConfig });
        } else {
          call.error = 'an unexpected incoming call';
        }
      });
      return new Promise((resolve, reject) => {
        ua.on('registered', () => {
          state.registered = true;
          document.getElementById('status').textContent = `registered ${user}`;
          resolve(true);
        });
        ua.on('registrationFailed', (e) => {
          state.registration_error = `${e.cause} ${e.response ? e.response.status_code : ''}`;
          reject(new Error(`registration failed: ${state.registration_error}`));
        });
        ua.start();
      });
    },

    /// Answers every incoming call from now on.
    autoAnswer() {
      autoAnswer = true;
    },

    /// Calls `user@domain`; returns the call's index.
    call(target) {
      const session = ua.call(target, { mediaConstraints, pcConfig });
      const call = track(session, 'outgoing', session._request ? session._request.call_id : null);
      return state.calls.indexOf(call);
    },

    /// How many calls (in either direction) this page has seen.
    callCount() {
      return state.calls.length;
    },

    /// The names of the call's session events so far.
    states(index) {
      const call = state.calls[index];
      return call ? call.states.map((s) => s.state) : [];
    },

    /// One getStats() sample of the call: ICE, DTLS, RTP packet counts, selected pair.
    async sample(index) {
      const call = state.calls[index];
      if (!call) {
        return null;
      }
      const s = await transportStats(call);
      call.samples = call.samples || [];
      call.samples.push(s);
      return s;
    },

    /// Hangs up the call (a BYE once confirmed).
    hangup(index) {
      const call = state.calls[index];
      if (call && !call.session.isEnded()) {
        call.session.terminate();
      }
    },

    /// The final response to the call's BYE (either direction), or null so far.
    bye(index) {
      const call = state.calls[index];
      return call && call.call_id ? byeResponses.get(call.call_id) || null : null;
    },

    /// Everything, JSON-safe.
    report() {
      return {
        user: state.user,
        registered: state.registered,
        registration_error: state.registration_error,
        errors: state.errors,
        wire,
        calls: state.calls.map((c) => ({
          direction: c.direction,
          call_id: c.call_id,
          states: c.states,
          ice_states: c.ice_states,
          samples: c.samples || [],
          bye: c.call_id ? byeResponses.get(c.call_id) || null : null,
          error: c.error,
          failed_status: c.failed_status || null,
          local_sdp: c.local_sdp,
          remote_sdp: c.remote_sdp,
        })),
      };
    },
  };
})();
