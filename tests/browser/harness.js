// Test harness for tests/browser: loaded into a page that hubbub serves, so `/hubbub.js`
// is same-origin. `harness.connect()` makes a HubbubClient that logs every event it
// emits; `harness.call()` / auto-answer hold a 1:1 WebRTC call signalled through hubbub.
window.harness = (() => {
  const EVENTS = ['chat', 'typing', 'presence', 'webrtc', 'join_room', 'leave_room',
    'message_edit', 'message_delete', 'reaction', 'call_end', 'call_reject', 'announcement',
    'error', 'open', 'close', 'reconnect', 'reconnecting', 'rejoin'];
  const h = { events: [], hub: null, pc: null, callId: null, peer: null, pendingIce: [] };

  /** `options.url`: another WebSocket URL than this page's server (a proxy, a fake). */
  h.connect = async (userId, username, options = {}) => {
    const { HubbubClient } = await import('/hubbub.js');
    const { url = location.origin.replace(/^http/, 'ws') + '/ws', ...rest } = options;
    h.hub = new HubbubClient(url, { userId, username, ...rest });
    for (const type of EVENTS) h.hub.on(type, (m) => h.events.push(m));
    return h.hub.connect();
  };

  /** Keep how a Promise settles in `harness.settled[name]`: `{value}` or `{code, message}`. */
  h.settled = {};
  h.track = (name, promise) => {
    promise.then((value) => { h.settled[name] = { value }; },
      (e) => { h.settled[name] = { code: e.code, message: e.message }; });
  };

  /** The events of one type, payloads only. */
  h.of = (type) => h.events.filter((m) => m.type === type).map((m) => m.payload);

  async function peerConnection(peer, callId) {
    const pc = new RTCPeerConnection({ iceServers: h.hub.welcome.iceServers });
    Object.assign(h, { pc, peer, callId, pendingIce: [] });
    const me = h.hub.welcome.userId;
    pc.onicecandidate = (e) => {
      if (e.candidate) h.hub.sendIceCandidate(me, peer, e.candidate, callId);
    };
    pc.ontrack = (e) => {
      let video = document.getElementById('remote');
      if (!video) {
        video = document.body.appendChild(document.createElement('video'));
        Object.assign(video, { id: 'remote', muted: true, autoplay: true, playsInline: true });
      }
      video.srcObject = e.streams[0];
      video.play().catch(() => {});
    };
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    return pc;
  }

  async function flushIce() {
    const queued = h.pendingIce;
    h.pendingIce = [];
    for (const c of queued) await h.pc.addIceCandidate(c);
  }

  /** Answer every offer (the callee side). */
  h.autoAnswer = () => {
    h.hub.on('webrtc', async ({ payload: p }) => {
      if (p.kind === 'offer') {
        const pc = await peerConnection(p.from, p.callId);
        await pc.setRemoteDescription(p.sdp);
        await pc.setLocalDescription(await pc.createAnswer());
        await h.hub.sendWebRTCAnswer(h.hub.welcome.userId, p.from, pc.localDescription, p.callId);
        await flushIce();
      }
    });
  };

  /** Trickled candidates and the answer (both sides). */
  h.handleSignals = () => {
    h.hub.on('webrtc', async ({ payload: p }) => {
      if (p.kind === 'answer') {
        await h.pc.setRemoteDescription(p.sdp);
        await flushIce();
      } else if (p.kind === 'ice_candidate') {
        if (h.pc && h.pc.remoteDescription) await h.pc.addIceCandidate(p.candidate);
        else h.pendingIce.push(p.candidate);
      }
    });
  };

  /** Call `peer` (the caller side); resolves with the callId. */
  h.call = async (peer) => {
    const callId = crypto.randomUUID();
    const pc = await peerConnection(peer, callId);
    await pc.setLocalDescription(await pc.createOffer());
    return h.hub.sendWebRTCOffer(h.hub.welcome.userId, peer, pc.localDescription, callId);
  };

  h.callState = () => ({
    connectionState: h.pc ? h.pc.connectionState : null,
    remoteVideoWidth: document.getElementById('remote')?.videoWidth || 0,
  });
  return h;
})();
