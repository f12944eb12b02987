// Captures a real Firefox SDP offer (the FIREFOX_OFFER fixture in test-support/src/sdp.rs):
// Debian's firefox-esr, headless, driven by puppeteer-core over WebDriver BiDi; one track
// from the fake microphone on a page served from 127.0.0.1 (a secure context), ICE gathering
// waited for. Prints {"version", "sdp"} as JSON. Run: node ff-offer.mjs (needs firefox-esr).
import puppeteer from 'puppeteer-core';
import http from 'node:http';
const server = http.createServer((_, res) => { res.end('<html><body>offer</body></html>'); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: '/usr/bin/firefox-esr',
  headless: true,
  extraPrefsFirefox: {
    'media.navigator.streams.fake': true,
    'media.navigator.permission.disabled': true,
    'media.peerconnection.ice.loopback': true,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
  },
});
const page = await browser.newPage();
await page.goto(`http://127.0.0.1:${server.address().port}/`);
const sdp = await page.evaluate(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 5000);
  });
  return pc.localDescription.sdp;
});
console.log(JSON.stringify({ version: await browser.version(), sdp }));
await browser.close();
server.close();
