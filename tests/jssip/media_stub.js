// A stand-in for the browser's WebRTC media stack, so that JsSIP's RTCSession can run its real
// SIP signalling (INVITE, 1xx/2xx, ACK, BYE, Record-Route, route sets) in Node.js, which has no
// RTCPeerConnection. It only hands out a fixed audio SDP and records the remote one: no media
// flows. Everything on the wire is JsSIP's own.
'use strict';

const SDP = [
  'v=0',
  'o=- 20518 0 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 9 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  'a=sendrecv',
  '',
].join('\r\n');

class SessionDescription {
  constructor({ type, sdp }) {
    this.type = type;
    this.sdp = sdp;
  }
}

class PeerConnection extends EventTarget {
  constructor() {
    super();
    this.iceGatheringState = 'complete';
    this.iceConnectionState = 'connected';
    this.signalingState = 'stable';
    this.localDescription = null;
    this.remoteDescription = null;
  }

  createOffer() {
    return Promise.resolve(new SessionDescription({ type: 'offer', sdp: SDP }));
  }

  createAnswer() {
    return Promise.resolve(new SessionDescription({ type: 'answer', sdp: SDP }));
  }

  setLocalDescription(desc) {
    this.localDescription = desc;
    this.signalingState = desc.type === 'offer' ? 'have-local-offer' : 'stable';
    return Promise.resolve();
  }

  setRemoteDescription(desc) {
    this.remoteDescription = desc;
    this.signalingState = desc.type === 'offer' ? 'have-remote-offer' : 'stable';
    return Promise.resolve();
  }

  getSenders() {
    return [];
  }

  getReceivers() {
    return [];
  }

  addTrack() {}

  close() {
    this.signalingState = 'closed';
  }
}

global.window = global;
global.RTCPeerConnection = PeerConnection;
global.RTCSessionDescription = SessionDescription;
