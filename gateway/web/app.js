/*
 * Duet browser client — app.js
 * ============================
 * Plain ES2020 in one IIFE; no build step, no dependencies. Loaded after /assets/i18n.js.
 *
 * Structure (sections below appear in this order):
 *   1. Utilities ......... DOM builder h(), text helpers, toasts, URL parameters, session storage
 *   2. State ............. window.duet.state (the test-visible model) + internal session bookkeeping
 *   3. Shell ............. top bar (title, status line, 中文/English toggle, leave, sound button),
 *                          banners, screen switching (join / class / left)
 *   4. Sign-in ........... on the gateway's /admin page, which opens this page with ?token=
 *   5. Signalling ........ WebSocket to /sfu/ws, message dispatch, close codes, reconnect backoff
 *   6. Media ............. local capture, publish RTCPeerConnection (+ codec preference, camera
 *                          simulcast q/h/f, sender parameters driven by publish_layers),
 *                          screen share (real getDisplayMedia and a synthetic canvas test source),
 *                          subscribe RTCPeerConnection, ICE queues, remote track map, audio playback
 *   7. Views ............. persistent video tiles, track_view (shown sizes → the SFU), lead view,
 *                          classroom / observer view, controls, connection quality + layer
 *   8. Quality ........... getStats every 2 s → {"type":"quality"} message
 *   9. Test hooks + boot . window.duet API, event delegation, start-up
 *
 * Two peer connections, as the SFU protocol requires: the *publish* PC (this page offers) and the
 * *subscribe* PC (the SFU offers). Every async step captures `session.gen` and gives up if the
 * session generation changed meanwhile (reconnect, leave), so stale callbacks never touch new state.
 */
(function () {
  'use strict';

  var I18N = window.I18N;
  var t = I18N.t;

  /* ======================================================================================
   * 1. Utilities
   * ==================================================================================== */

  /** Creates an element: h('button', {class: 'btn', id: 'x', onclick: fn}, 'text', childNode). */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v == null || v === false) return;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) appendChildren(el, arguments[i]);
    return el;
  }

  function appendChildren(el, c) {
    if (c == null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { appendChildren(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }

  /** Sets textContent only when it changed (keeps DOM churn and focus stable). */
  function setText(el, s) {
    if (el && el.textContent !== s) el.textContent = s;
  }

  function setAttr(el, name, value) {
    if (!el) return;
    if (value == null || value === false) { if (el.hasAttribute(name)) el.removeAttribute(name); }
    else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, String(value));
  }

  /** Moves `els` (in order) into `region`, touching only nodes that are out of place. */
  function place(region, els) {
    if (!region) return;
    els = els.filter(Boolean);
    els.forEach(function (el, i) {
      if (region.children[i] !== el) region.insertBefore(el, region.children[i] || null);
    });
    while (region.children.length > els.length) region.removeChild(region.lastChild);
  }

  function round(x, digits) {
    var m = Math.pow(10, digits || 0);
    return Math.round(x * m) / m;
  }

  function errorText(e) {
    if (!e) return '';
    if (typeof e === 'string') return e;
    return e.message || e.name || String(e);
  }

  /** Shows a transient message at the bottom of the screen. kind: info | ok | warn | error. */
  function toast(text, kind, ms) {
    var box = document.getElementById('toasts');
    if (!box) return;
    var item = h('div', { class: 'toast toast-' + (kind || 'info'), role: kind === 'error' ? 'alert' : 'status' }, text);
    box.appendChild(item);
    while (box.children.length > 5) box.removeChild(box.firstChild);
    setTimeout(function () { if (item.parentNode) item.parentNode.removeChild(item); }, ms || 6000);
  }

  var params = new URLSearchParams(location.search);
  /** Video codec preference for publishing: ?codec=vp8|h264 (default vp8). */
  var CODEC = (params.get('codec') || 'vp8').toLowerCase() === 'h264' ? 'h264' : 'vp8';
  /** Camera simulcast on (default) or off with ?simulcast=0 (debugging: one full-size encoding). */
  var SIMULCAST = params.get('simulcast') !== '0';

  /** Simulcast layer names (rids), lowest first: SIMULCAST_RIDS in sfu/proto/src/signal.rs. */
  var SIMULCAST_RIDS = ['q', 'h', 'f'];
  /**
   * The camera's simulcast encodings, lowest first (rid = SIMULCAST_RIDS[i]), for a 1280x720
   * capture: q = 320x180 at ≤ 15 fps and ≤ 150 kbps (thumbnails, weak links), h = 640x360 at
   * ≤ 500 kbps, f = 1280x720 at ≤ 1.5 Mbps. Chrome sends all three only from a capture of at
   * least 960x540 (hence the 720p camera request) and drops the upper layers on a weak uplink.
   */
  var CAMERA_SIMULCAST_ENCODINGS = [
    { rid: SIMULCAST_RIDS[0], scaleResolutionDownBy: 4, maxBitrate: 150000, maxFramerate: 15 },
    { rid: SIMULCAST_RIDS[1], scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: SIMULCAST_RIDS[2], scaleResolutionDownBy: 1, maxBitrate: 1500000 }
  ];
  /** The camera's one encoding when simulcast is off or the SFU's answer declined it: the full layer. */
  var CAMERA_SINGLE_MAX_BITRATE = 1500000;
  /** Courseware (screen share) is sharp text that rarely moves: full resolution, few frames. */
  var SCREEN_MAX_FRAMERATE = 5;

  var SESSION_KEY = 'duet.session';

  function saveSession(s) {
    try { sessionStorage.setItem(SESSION_KEY, JSON.stringify(s)); } catch (e) { /* storage disabled */ }
  }
  function loadSession() {
    try {
      var s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      return s && typeof s.token === 'string' && s.token ? s : null;
    } catch (e) { return null; }
  }
  function clearSession() {
    try { sessionStorage.removeItem(SESSION_KEY); } catch (e) { /* ignore */ }
  }

  /** Removes ?token= / &sfu= from the address bar so a reload after a terminal close shows the join page. */
  function stripTokenFromUrl() {
    if (!params.has('token') && !params.has('sfu')) return;
    try {
      var u = new URL(location.href);
      u.searchParams.delete('token');
      u.searchParams.delete('sfu');
      history.replaceState(null, '', u.pathname + (u.search ? u.search : '') + u.hash);
    } catch (e) { /* ignore */ }
  }

  /** ws(s)://<host>/sfu/ws unless the login response or ?sfu= named another URL. */
  function sfuUrl(explicit) {
    if (explicit) return explicit;
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/sfu/ws';
  }

  /* ======================================================================================
   * 2. State
   * ==================================================================================== */

  /** The test-visible model (window.duet.state). Arrays are replaced, never mutated in place. */
  var state = {
    joined: false,
    status: 'idle',            // idle | connecting | connected | reconnecting | left
    room: null,
    you: null,                 // {id, name, role}
    publishSources: [],
    participants: [],          // everyone else: [{id, name, role}]
    tracks: [],                // [{track_id, participant, source}] as announced by the server
    hands: [],
    spotlight: null,
    activeSpeaker: null,
    quality: {},               // participant id → {participant, loss_pct, rtt_ms, jitter_ms, grade,
                               //   estimate_kbps?, layers?: [{track_id, layer: 0|1|2|null}]}
    muteRequested: false,
    sharing: false,
    reconnects: 0,
    errors: [],                // [{code, message}]
    ownTracksReceived: 0,
    firstTeacherFrameMs: null,
    joinedMs: null
  };

  /** Internal session bookkeeping (not exposed). */
  var session = {
    gen: 0,                    // bumped on every (re)connect / teardown; async work checks it
    token: null,
    sfu: null,
    ws: null,
    attempt: 0,                // reconnect backoff exponent
    reconnectTimer: null,
    reconnectAt: 0,
    countdown: null,           // interval refreshing the "retrying in N s" status text
    stableTimer: null,
    leaving: false,
    everJoined: false,
    qualityTimer: null
  };


  /** track_id → {track_id, participant, source}: what the server says exists. */
  var trackInfo = new Map();
  /** track_id → {track: MediaStreamTrack, participant, kind, mid}: what the subscribe PC delivers. */
  var remoteMedia = new Map();
  /** Own track ids already counted in state.ownTracksReceived. */
  var ownCounted = new Set();

  function syncTrackState() {
    state.tracks = Array.from(trackInfo.values()).map(function (x) {
      return { track_id: x.track_id, participant: x.participant, source: x.source };
    });
  }

  function upsertTrackInfo(tr) {
    if (!tr || !tr.track_id) return;
    trackInfo.set(tr.track_id, { track_id: tr.track_id, participant: tr.participant, source: tr.source });
  }

  function participantById(id) {
    if (!id) return null;
    if (state.you && state.you.id === id) return state.you;
    for (var i = 0; i < state.participants.length; i++) if (state.participants[i].id === id) return state.participants[i];
    return null;
  }

  function nameOf(id) {
    var p = participantById(id);
    return p ? p.name : id;
  }

  function leadParticipant() {
    for (var i = 0; i < state.participants.length; i++) if (state.participants[i].role === 'lead') return state.participants[i];
    return null;
  }

  /** The live MediaStreamTrack of participant's `source`, or null. */
  function remoteTrackFor(participant, source) {
    var found = null;
    trackInfo.forEach(function (info) {
      if (found || info.participant !== participant || info.source !== source) return;
      var m = remoteMedia.get(info.track_id);
      if (m && m.track && m.track.readyState !== 'ended') found = m.track;
    });
    return found;
  }

  function hasAnnouncedTrack(participant, source) {
    var yes = false;
    trackInfo.forEach(function (info) { if (info.participant === participant && info.source === source) yes = true; });
    return yes;
  }

  function pushError(code, message) {
    state.errors = state.errors.concat([{ code: code, message: message }]);
  }

  /* ======================================================================================
   * 3. Shell: top bar, status line, banners, screens
   * ==================================================================================== */

  var ui = {
    screen: 'join',            // join | class | left
    classSkeleton: null,       // {role, lang, root, ...refs}
    endNotice: null,           // {key, vars, extra}: why the session ended (terminal close)
    soundBlocked: false,
    banners: new Map()         // id → {text(): string, kind, dismissible}
  };

  function el(id) { return document.getElementById(id); }

  function renderShell() {
    document.title = (state.room ? state.room + ' · ' : '') + t('app.name');
    setText(el('brand-name'), t('app.name'));
    setText(el('class-title'), state.room || '');
    var langBtn = el('lang-toggle');
    setText(langBtn, t('lang.toggle'));
    setAttr(langBtn, 'title', t('lang.toggleTitle'));
    setAttr(langBtn, 'aria-label', t('lang.toggleTitle'));
    var leave = el('leave');
    setText(leave, t('class.leave'));
    leave.hidden = ui.screen !== 'class';
    var sound = el('enable-sound');
    setText(sound, t('sound.enable'));
    setAttr(sound, 'title', t('sound.enableTitle'));
    sound.hidden = !ui.soundBlocked || ui.screen !== 'class';
    setText(el('you-label'), state.you && ui.screen === 'class'
      ? t('class.you', { name: state.you.name, role: I18N.roleLabel(state.you.role) }) : '');
    renderStatus();
  }

  function setStatus(s) {
    state.status = s;
    renderStatus();
  }

  function renderStatus() {
    var box = el('status');
    if (!box) return;
    var text;
    if (state.status === 'reconnecting' && session.reconnectTimer) {
      var secs = Math.max(0, Math.ceil((session.reconnectAt - Date.now()) / 1000));
      text = secs > 0 ? t('status.reconnectingIn', { seconds: secs }) : t('status.reconnecting');
    } else {
      text = t('status.' + state.status);
    }
    setText(box, text);
    setAttr(box, 'data-status', state.status);
    box.hidden = ui.screen === 'join' && state.status === 'idle';
  }

  function setBanner(id, textFn, kind, dismissible) {
    ui.banners.set(id, { text: textFn, kind: kind || 'info', dismissible: dismissible !== false });
    renderBanners();
  }

  function clearBanner(id) {
    if (ui.banners.delete(id)) renderBanners();
  }

  function renderBanners() {
    var box = el('banners');
    if (!box) return;
    var items = [];
    ui.banners.forEach(function (b, id) {
      items.push(h('div', { class: 'banner banner-' + b.kind, 'data-banner': id, role: 'alert' },
        h('span', { class: 'banner-text' }, b.text()),
        b.dismissible ? h('button', { type: 'button', class: 'btn btn-small', 'data-dismiss-banner': id }, t('banner.dismiss')) : null));
    });
    box.textContent = '';
    items.forEach(function (x) { box.appendChild(x); });
  }

  function showScreen(name) {
    // Signing in and choosing a class happen on the gateway's pages (/admin): the live-class page
    // only ever opens with a join token.
    if (name === 'join') { window.location.replace('/admin'); return; }
    ui.screen = name;
    if (name !== 'class') ui.classSkeleton = null;
    renderScreen();
  }

  function renderScreen() {
    renderShell();
    if (ui.screen === 'left') renderLeft();
    else renderClass();
  }

  /* ======================================================================================
   * 4. Sign-in
   * Signing in and choosing a class happen on the gateway's pages (/admin), which open this page
   * with a join token; showScreen('join') sends the browser there.
   * ==================================================================================== */

  function renderLeft() {
    var screen = el('screen');
    screen.textContent = '';
    screen.appendChild(h('div', { class: 'join-wrap' },
      h('section', { class: 'card left-card' },
        h('h1', null, t('left.title')),
        ui.endNotice
          ? h('div', { class: 'notice', id: 'end-notice', role: 'alert' },
            t(ui.endNotice.key, ui.endNotice.vars) + (ui.endNotice.extra || ''))
          : h('p', { class: 'subtitle' }, t('left.body')),
        h('button', { type: 'button', id: 'back-to-join', class: 'btn btn-primary btn-huge',
          onclick: function () { setStatus('idle'); showScreen('join'); } }, t('left.back')))));
  }

  /* ======================================================================================
   * 5. Signalling
   * ==================================================================================== */

  /** Close codes after which we must not reconnect (token problems, replaced, protocol). */
  var NO_RECONNECT = { 4400: 1, 4401: 1, 4403: 1, 4406: 1, 4409: 1, 4410: 1 };

  function send(msg) {
    var ws = session.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try { ws.send(JSON.stringify(msg)); return true; } catch (e) { return false; }
  }

  /** Starts a class session with a token (from login, ?token=, or sessionStorage). */
  function startSession(token, sfu) {
    if (!window.RTCPeerConnection) {
      setBanner('webrtc', function () { return t('class.unsupported'); }, 'error', false);
    }
    session.token = token;
    session.sfu = sfu || '';
    session.leaving = false;
    session.attempt = 0;
    session.everJoined = false;
    showScreen('class');
    connect();
  }

  function connect() {
    var gen = ++session.gen;
    setStatus(session.everJoined || session.attempt > 0 ? 'reconnecting' : 'connecting');
    var url = sfuUrl(session.sfu);
    var ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      // A malformed URL will not get better by retrying.
      var msg = t('err.wsUrl', { url: url });
      pushError('bad_url', msg);
      terminate({ key: 'err.wsUrl', vars: { url: url } });
      return;
    }
    session.ws = ws;
    ws.onopen = function () {
      if (gen !== session.gen) return;
      ws.send(JSON.stringify({ type: 'join', token: session.token }));
    };
    ws.onmessage = function (ev) {
      if (gen !== session.gen) return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { console.warn('duet: non-JSON frame', e); return; }
      if (!msg || typeof msg.type !== 'string') return;
      try { handleMessage(msg, gen); } catch (e) { console.error('duet: handling', msg.type, e); }
    };
    ws.onerror = function () { /* onclose follows with the code */ };
    ws.onclose = function (ev) {
      if (gen !== session.gen) return;
      onSocketClosed(ev.code, ev.reason);
    };
  }

  function onSocketClosed(code, reason) {
    if (session.leaving) return;
    if (NO_RECONNECT[code]) {
      var extra = reason ? t('close.reason', { reason: reason }) : '';
      pushError('close_' + code, t('close.' + code) + extra);
      terminate({ key: 'close.' + code, extra: extra });
    } else {
      // 4503 (shutdown), 4408 (join timeout), 1006 (network) and everything else: try again.
      scheduleReconnect('ws_close_' + code);
    }
  }

  /** Tears everything down and rejoins with the same token after a backoff (1 s, 2 s, 4 s … max 10 s). */
  function scheduleReconnect(reason) {
    if (session.leaving || session.reconnectTimer) return;
    console.info('duet: reconnecting because', reason);
    session.gen++;
    closeSocket(1000, 'reconnect');
    teardownPeers();
    stopQualityLoop();
    state.joined = false;
    var delay = Math.min(1000 * Math.pow(2, session.attempt), 10000);
    session.attempt++;
    session.reconnectAt = Date.now() + delay;
    session.reconnectTimer = setTimeout(function () {
      session.reconnectTimer = null;
      clearInterval(session.countdown);
      state.reconnects++;
      connect();
    }, delay);
    clearInterval(session.countdown);
    session.countdown = setInterval(renderStatus, 500);
    setStatus('reconnecting');
    scheduleRender();
  }

  function closeSocket(code, reason) {
    var ws = session.ws;
    session.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(code || 1000, reason || ''); } catch (e) { /* already closed */ }
  }

  function cancelReconnect() {
    clearTimeout(session.reconnectTimer);
    clearInterval(session.countdown);
    clearTimeout(session.stableTimer);
    session.reconnectTimer = null;
  }

  /** Ends the session for good (terminal close code): release devices, say why, offer sign-in. */
  function terminate(notice) {
    session.gen++;
    cancelReconnect();
    closeSocket(1000, 'terminated');
    teardownPeers();
    stopQualityLoop();
    stopLocalMedia();
    resetRoomState();
    clearSession();
    stripTokenFromUrl();
    setStatus('idle');
    ui.endNotice = notice;
    showScreen('left');
  }

  function resetRoomState() {
    state.joined = false;
    state.you = null;
    state.publishSources = [];
    state.participants = [];
    state.hands = [];
    state.spotlight = null;
    state.activeSpeaker = null;
    state.quality = {};
    state.muteRequested = false;
    trackInfo.clear();
    syncTrackState();
    ui.banners.clear();
    renderBanners();
    tiles.forEach(function (tile) {
      if (viewObserver) viewObserver.unobserve(tile.video);
      setTileTrack(tile, null);
    });
    tiles.clear();
  }

  /** Leaves the class: tells the server, closes everything, shows the "left" page. */
  function leave() {
    session.leaving = true;
    send({ type: 'leave' });
    session.gen++;
    cancelReconnect();
    closeSocket(1000, 'leave');
    teardownPeers();
    stopQualityLoop();
    stopLocalMedia();
    resetRoomState();
    ui.endNotice = null;
    clearSession();
    stripTokenFromUrl();
    setStatus('left');
    showScreen('left');
    return true;
  }

  function handleMessage(msg, gen) {
    switch (msg.type) {
      case 'joined': onJoined(msg, gen); break;
      case 'publish_answer':
        if (pub.waiter) pub.waiter.resolve(msg.sdp);
        else console.warn('duet: unexpected publish_answer');
        break;
      case 'subscribe_offer': onSubscribeOffer(msg); break;
      case 'ice': onRemoteIce(msg.target, msg.candidate); break;
      case 'participant_joined':
        if (msg.participant && (!state.you || msg.participant.id !== state.you.id)) {
          state.participants = state.participants.filter(function (p) { return p.id !== msg.participant.id; })
            .concat([msg.participant]);
          scheduleRender();
        }
        break;
      case 'participant_left': onParticipantLeft(msg.participant); break;
      case 'track_published':
        upsertTrackInfo(msg.track); syncTrackState(); scheduleRender();
        break;
      case 'track_unpublished':
        if (msg.track) { trackInfo.delete(msg.track.track_id); syncTrackState(); scheduleRender(); }
        break;
      case 'active_speaker':
        state.activeSpeaker = msg.participant || null; scheduleRender();
        break;
      case 'hands':
        state.hands = Array.isArray(msg.hands) ? msg.hands.slice() : []; scheduleRender();
        break;
      case 'spotlight': onSpotlight(msg.participant || null); break;
      case 'mute_requested': onMuteRequested(msg.by); break;
      case 'quality': onQuality(msg.participants); break;
      case 'publish_layers':
        try { onPublishLayers(msg.track_id, msg.active); } catch (e) { console.warn('duet: publish_layers', e); }
        break;
      case 'error': onServerError(msg.code, msg.message); break;
      default: console.warn('duet: unknown message type', msg.type);
    }
  }

  function onJoined(msg, gen) {
    var firstJoin = !session.everJoined;
    session.everJoined = true;
    cancelReconnect();
    state.joined = true;
    state.room = msg.room || null;
    state.you = msg.you || null;
    state.publishSources = Array.isArray(msg.publish_sources) ? msg.publish_sources.slice() : [];
    var youId = state.you && state.you.id;
    state.participants = (msg.participants || []).filter(function (p) { return p && p.id !== youId; });
    trackInfo.clear();
    (msg.tracks || []).forEach(upsertTrackInfo);
    syncTrackState();
    state.hands = Array.isArray(msg.hands) ? msg.hands.slice() : [];
    state.spotlight = msg.spotlight || null;
    state.activeSpeaker = null;
    if (state.joinedMs == null) state.joinedMs = performance.now();
    setStatus('connected');
    if (!firstJoin) toast(t('toast.reconnected'), 'ok', 3000);
    // Reset the backoff only once this session has stayed up for a while (avoids 1 s flapping).
    session.stableTimer = setTimeout(function () { if (gen === session.gen) session.attempt = 0; }, 10000);
    renderShell();
    scheduleRender();
    startQualityLoop(gen);
    startPublishing(gen);
  }

  function onParticipantLeft(id) {
    if (!id) return;
    state.participants = state.participants.filter(function (p) { return p.id !== id; });
    trackInfo.forEach(function (info, key) { if (info.participant === id) trackInfo.delete(key); });
    syncTrackState();
    state.hands = state.hands.filter(function (x) { return x !== id; });
    if (state.quality[id]) {
      var q = Object.assign({}, state.quality);
      delete q[id];
      state.quality = q;
    }
    if (state.activeSpeaker === id) state.activeSpeaker = null;
    dropTilesOf(id);
    scheduleRender();
  }

  function onSpotlight(id) {
    state.spotlight = id;
    if (state.you && id === state.you.id) setBanner('spotlight', function () { return t('banner.spotlightSelf'); }, 'ok', true);
    else clearBanner('spotlight');
    scheduleRender();
  }

  function onMuteRequested(by) {
    state.muteRequested = true;
    if (media.microphone) media.microphone.track.enabled = false;
    setBanner('mute', function () { return t('banner.muteRequested'); }, 'warn', true);
    console.info('duet: mute requested by', by);
    scheduleRender();
  }

  function onQuality(list) {
    var q = {};
    (list || []).forEach(function (x) { if (x && x.participant) q[x.participant] = x; });
    state.quality = q;
    scheduleRender();
  }

  function onServerError(code, message) {
    code = code || 'unknown';
    message = message || '';
    pushError(code, message);
    var label = I18N.has('err.code.' + code) ? t('err.code.' + code) : t('err.code.unknown');
    toast(t('err.server', { label: label, msg: message }), 'error', 8000);
    // A bad SDP answer means our pending publish offer failed; stop waiting for it.
    if (code === 'bad_sdp' && pub.waiter) pub.waiter.reject(new Error(message || label));
  }

  /* ======================================================================================
   * 6. Media
   * ==================================================================================== */

  /** Local sources, kept across reconnects so the same tracks are re-published. */
  var media = {
    stream: null,            // MediaStream holding camera + microphone
    camera: null,            // {source, track, stream}
    microphone: null,
    screen: null,            // {source, track, stream, synthetic, stopDrawing()}
    acquired: false,         // getUserMedia attempted (successfully or not)
    epoch: 0,                // bumped by stopLocalMedia(); a late getUserMedia result is discarded
    acquiring: null,         // Promise while getUserMedia runs
    screenStarting: false
  };

  function newPeerHolder() {
    return {
      pc: null,
      iceQueue: [],          // remote candidates waiting for a remote description
      outQueue: [],          // local candidates waiting for our offer/answer to be sent
      descSent: false,
      discTimer: null,
      // publish only
      transceivers: new Map(), // source → {tr, track, source, simulcast}
      negotiating: false,
      pending: false,
      waiter: null,
      layerWant: new Map(),    // browser track id → rids the SFU wants encoded (publish_layers)
      paramChains: new Map(),  // RTCRtpSender → Promise: its setParameters calls, one at a time
      // subscribe only
      chain: Promise.resolve(),
      midMap: new Map()
    };
  }
  var pub = newPeerHolder();
  var sub = newPeerHolder();

  function liveEntry(e) { return e && e.track && e.track.readyState === 'live' ? e : null; }

  function localEntries() {
    return [liveEntry(media.camera), liveEntry(media.microphone), liveEntry(media.screen)].filter(Boolean);
  }

  /** Closes both peer connections and forgets all remote media (used on reconnect / leave). */
  function teardownPeers() {
    [pub, sub].forEach(function (p) {
      clearTimeout(p.discTimer);
      if (p.waiter) p.waiter.reject(new Error('teardown'));
      if (p.pc) {
        p.pc.onicecandidate = p.pc.ontrack = p.pc.onconnectionstatechange = null;
        try { p.pc.close(); } catch (e) { /* ignore */ }
      }
    });
    pub = newPeerHolder();
    sub = newPeerHolder();
    remoteMedia.clear();
    qualityPrev.clear();
    resetTrackViews();
    syncAudio();
  }

  function stopLocalMedia() {
    if (media.screen) stopScreenTrack();
    [media.camera, media.microphone].forEach(function (e) { if (e) e.track.stop(); });
    media.camera = media.microphone = media.stream = null;
    media.epoch++;
    media.acquired = false;
    media.acquiring = null;
    state.sharing = false;
  }

  /* ---- Local capture ---- */

  function mediaErrorKey(e) {
    var n = e && e.name;
    if (n === 'NotAllowedError' || n === 'SecurityError' || n === 'PermissionDeniedError') return 'media.denied';
    if (n === 'NotFoundError' || n === 'OverconstrainedError' || n === 'DevicesNotFoundError') return 'media.notFound';
    if (n === 'NotReadableError' || n === 'AbortError' || n === 'TrackStartError') return 'media.busy';
    return null;
  }

  /** getUserMedia for the sources this participant may publish; tolerates partial failure. */
  function acquireLocalMedia() {
    if (media.acquiring) return media.acquiring;
    var wantAudio = state.publishSources.indexOf('microphone') >= 0;
    var wantVideo = state.publishSources.indexOf('camera') >= 0;
    var audioC = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    // 720p so that Chrome can send all three simulcast layers (it needs ≥ 960x540); ideal, not
    // exact: a smaller camera still works (with fewer layers).
    var videoC = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

    var epoch = media.epoch;
    media.acquiring = (async function () {
      if (!wantAudio && !wantVideo) return;
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        reportMediaError('media.insecure', null);
        return;
      }
      var stream = null;
      var firstError = null;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: wantAudio ? audioC : false, video: wantVideo ? videoC : false });
      } catch (e) {
        firstError = e;
        // Try each device on its own: a classroom without a working camera can still talk.
        var tracks = [];
        if (wantVideo) {
          try { tracks = tracks.concat((await navigator.mediaDevices.getUserMedia({ video: videoC })).getTracks()); } catch (e2) { /* reported below */ }
        }
        if (wantAudio) {
          try { tracks = tracks.concat((await navigator.mediaDevices.getUserMedia({ audio: audioC })).getTracks()); } catch (e3) { /* reported below */ }
        }
        if (tracks.length) stream = new MediaStream(tracks);
      }
      if (epoch !== media.epoch) {
        // The user left (or the session ended) while the browser was asking: release at once.
        if (stream) stream.getTracks().forEach(function (x) { x.stop(); });
        return;
      }
      media.acquired = true;
      if (!stream) {
        reportMediaError(mediaErrorKey(firstError) || 'media.failed', firstError);
        return;
      }
      media.stream = stream;
      var v = stream.getVideoTracks()[0];
      var a = stream.getAudioTracks()[0];
      media.camera = v ? { source: 'camera', track: v, stream: stream } : null;
      media.microphone = a ? { source: 'microphone', track: a, stream: stream } : null;
      if (v) v.contentHint = 'motion';
      if (a && state.muteRequested) a.enabled = false;
      [v, a].forEach(function (tr) {
        if (tr) tr.addEventListener('ended', function () { scheduleRender(); });
      });
      if (firstError) {
        if (wantVideo && !v) setBanner('media', function () { return t('media.partialNoCamera'); }, 'warn', true);
        else if (wantAudio && !a) setBanner('media', function () { return t('media.partialNoMic'); }, 'warn', true);
      } else {
        clearBanner('media');
      }
    })().finally(function () { media.acquiring = null; });
    return media.acquiring;
  }

  function reportMediaError(key, e) {
    var text = function () {
      return (key === 'media.failed' ? t(key, { msg: errorText(e) }) : t(key)) + ' ' + t('media.continuing');
    };
    pushError('media_' + ((e && e.name) || key.split('.')[1]), text());
    setBanner('media', text, 'error', true);
  }

  /** After `joined`: capture (first time only) and publish every live local track. */
  async function startPublishing(gen) {
    var canAV = state.publishSources.indexOf('camera') >= 0 || state.publishSources.indexOf('microphone') >= 0;
    if (media.acquiring) {
      await media.acquiring;
    } else if (canAV) {
      var hadTracks = !!(media.camera || media.microphone);
      var anyLive = liveEntry(media.camera) || liveEntry(media.microphone);
      // First join, or every device we had has ended (unplugged): (re)acquire. A capture that
      // failed before is not retried on reconnect (no repeated permission prompts / banners).
      if (!media.acquired || (hadTracks && !anyLive)) {
        media.acquired = false;
        await acquireLocalMedia();
      }
    }
    if (gen !== session.gen) return;
    scheduleRender();
    updatePublishing();
  }

  function ensurePublishPc() {
    if (pub.pc) return pub.pc;
    var gen = session.gen;
    var p = pub;
    var pc = new RTCPeerConnection({ iceServers: [] });
    pc.onicecandidate = function (ev) { if (gen === session.gen) sendLocalIce('publisher', ev.candidate, p); };
    pc.onconnectionstatechange = function () { onPcState(pc, p, gen); };
    p.pc = pc;
    return pc;
  }

  /** Makes the publish transceivers match the live local tracks; true when renegotiation is needed. */
  function syncPublishTransceivers() {
    var p = pub;
    var pc = p.pc;
    var changed = false;
    p.transceivers.forEach(function (rec, source) {
      var e = liveEntry(media[source]);
      if (!e || e.track !== rec.track) {
        try { pc.removeTrack(rec.tr.sender); } catch (err) { try { rec.tr.direction = 'inactive'; } catch (e2) { /* closed */ } }
        p.transceivers.delete(source);
        p.layerWant.delete(rec.track.id);
        p.paramChains.delete(rec.tr.sender);
        changed = true;
      }
    });
    localEntries().forEach(function (e) {
      if (p.transceivers.has(e.source)) return;
      var rec = addPublishTransceiver(pc, e);
      if (e.track.kind === 'video') applyCodecPreferences(rec.tr);
      else preferAudioRedundancy(rec.tr);
      p.transceivers.set(e.source, rec);
      if (e.source === 'screen') preferResolution(p, rec);
      changed = true;
    });
    return changed;
  }

  /**
   * Adds the sendonly transceiver of one local source: the camera as three simulcast encodings
   * (CAMERA_SIMULCAST_ENCODINGS) unless ?simulcast=0 or the browser refuses them (then one
   * encoding); the screen as one encoding of at most SCREEN_MAX_FRAMERATE fps; audio as is.
   */
  function addPublishTransceiver(pc, e) {
    var init = function (encodings) {
      var o = { direction: 'sendonly', streams: [e.stream] };
      if (encodings) o.sendEncodings = encodings;
      return o;
    };
    var tr = null;
    var simulcast = false;
    if (e.track.kind === 'video' && e.source === 'camera' && SIMULCAST) {
      try {
        tr = pc.addTransceiver(e.track, init(CAMERA_SIMULCAST_ENCODINGS.map(function (x) { return Object.assign({}, x); })));
        simulcast = true;
      } catch (err) {
        console.warn('duet: simulcast not available, publishing one camera encoding', err);
      }
    } else if (e.track.kind === 'video' && e.source === 'screen') {
      try {
        tr = pc.addTransceiver(e.track, init([{ maxFramerate: SCREEN_MAX_FRAMERATE }]));
      } catch (err) {
        console.warn('duet: sendEncodings refused for the screen; maxFramerate set later', err);
      }
    }
    if (!tr) tr = pc.addTransceiver(e.track, init(null));
    return { tr: tr, track: e.track, source: e.source, simulcast: simulcast };
  }

  /* ---- Sender parameters (simulcast layers, screen frame rate) ---- */

  /**
   * Runs `mutate(params)` on the sender's current parameters and applies them when it returns
   * true. Calls for one sender run one after another (setParameters rejects while another is in
   * flight); failures are logged, never thrown.
   */
  function queueSenderParams(p, sender, mutate, what) {
    var prev = p.paramChains.get(sender) || Promise.resolve();
    var next = prev.then(function () {
      if (p !== pub || !p.pc || p.pc.signalingState === 'closed' || !sender.track) return;
      var prm = sender.getParameters();
      if (!prm || !prm.encodings || !prm.encodings.length) return;   // re-applied after negotiation
      if (!mutate(prm)) return;
      return sender.setParameters(prm);
    }).catch(function (e) {
      console.warn('duet: setParameters (' + what + ') failed', e);
    });
    p.paramChains.set(sender, next);
    return next;
  }

  /** Courseware keeps its resolution and drops frames when the uplink is short (if supported). */
  function preferResolution(p, rec) {
    queueSenderParams(p, rec.tr.sender, function (prm) {
      if (prm.degradationPreference === 'maintain-resolution') return false;
      prm.degradationPreference = 'maintain-resolution';
      return true;
    }, 'degradationPreference');
  }

  /**
   * Brings one publish sender's encodings to what they should be now: the screen's frame-rate cap
   * (when sendEncodings was refused), the full-size layer when the SFU's answer declined simulcast
   * (the browser then keeps only the first, quarter-size encoding), and the layers the SFU last
   * asked for (publish_layers). Called after every negotiation and on every publish_layers.
   */
  function tuneSender(p, rec) {
    queueSenderParams(p, rec.tr.sender, function (prm) {
      var encs = prm.encodings;
      var changed = false;
      var set = function (o, k, v) { if (o[k] !== v) { o[k] = v; changed = true; } };
      if (rec.source === 'screen') {
        encs.forEach(function (x) { set(x, 'maxFramerate', SCREEN_MAX_FRAMERATE); });
      }
      var negotiated = !!(p.pc.currentRemoteDescription && p.pc.signalingState === 'stable');
      if (rec.simulcast && negotiated && encs.length === 1) {
        if (!rec.declined) {
          rec.declined = true;
          console.info('duet: the SFU declined simulcast; sending the camera as one full-size encoding');
        }
        set(encs[0], 'scaleResolutionDownBy', 1);
        set(encs[0], 'maxBitrate', CAMERA_SINGLE_MAX_BITRATE);
        if (encs[0].maxFramerate != null) set(encs[0], 'maxFramerate', 30);   // the capture's rate
      }
      var want = p.layerWant.get(rec.track.id);
      if (want) {
        encs.forEach(function (x) {
          // One encoding (no simulcast): paused only when nobody receives any layer.
          set(x, 'active', encs.length > 1 ? want.indexOf(x.rid) >= 0 : want.length > 0);
        });
      }
      return changed;
    }, rec.source);
  }

  /** publish_layers: keep encoding the rids in `active`, pause the others (unknown tracks: ignored). */
  function onPublishLayers(trackId, active) {
    if (typeof trackId !== 'string' || !Array.isArray(active)) {
      console.warn('duet: malformed publish_layers', trackId, active);
      return;
    }
    var p = pub;
    var rec = null;
    p.transceivers.forEach(function (r) {
      var tr = r.tr.sender && r.tr.sender.track;
      if (!rec && tr && tr.id === trackId) rec = r;
    });
    if (!rec) { console.info('duet: publish_layers for a track not published here', trackId); return; }
    p.layerWant.set(trackId, active.filter(function (x) { return typeof x === 'string'; }));
    tuneSender(p, rec);
  }

  /** Every track the publish offer carries (only transceivers that got a mid in this offer). */
  function publishedTrackList(p) {
    var list = [];
    p.transceivers.forEach(function (rec, source) {
      if (rec.tr.mid != null) list.push({ track_id: rec.track.id, source: source });
    });
    return list;
  }

  /** Creates the publish PC if needed and renegotiates when the set of local tracks changed. */
  function updatePublishing() {
    if (!state.joined || !window.RTCPeerConnection) return;
    if (!pub.pc && localEntries().length === 0) return;   // observers never get a publish PC
    try {
      ensurePublishPc();
      if (syncPublishTransceivers()) negotiatePublish();
    } catch (e) {
      toast(t('err.publish', { msg: errorText(e) }), 'error', 8000);
    }
  }

  /** Offer → publish_offer → wait publish_answer → setRemoteDescription; serialised, coalesced. */
  async function negotiatePublish() {
    var p = pub;
    var gen = session.gen;
    if (p.negotiating) { p.pending = true; return; }
    p.negotiating = true;
    try {
      do {
        p.pending = false;
        var pc = p.pc;
        if (!pc || gen !== session.gen) return;
        var offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        if (gen !== session.gen) return;
        var answer = waitForPublishAnswer(p, 15000);
        send({ type: 'publish_offer', sdp: pc.localDescription.sdp, tracks: publishedTrackList(p) });
        p.descSent = true;
        flushLocalIce('publisher', p);
        var sdp = await answer;
        if (gen !== session.gen) return;
        await pc.setRemoteDescription({ type: 'answer', sdp: sdp });
        await flushRemoteIce(p);
        if (gen !== session.gen) return;
        p.transceivers.forEach(function (rec) { if (rec.track.kind === 'video') tuneSender(p, rec); });
      } while (p.pending);
    } catch (e) {
      if (gen !== session.gen) return;
      console.error('duet: publish negotiation failed', e);
      toast(t('err.publish', { msg: errorText(e) }), 'error', 8000);
      try {
        if (p.pc && p.pc.signalingState === 'have-local-offer') await p.pc.setLocalDescription({ type: 'rollback' });
      } catch (e2) { /* ignore */ }
    } finally {
      p.negotiating = false;
    }
  }

  function waitForPublishAnswer(p, ms) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { p.waiter = null; reject(new Error(t('err.answerTimeout'))); }, ms);
      p.waiter = {
        resolve: function (sdp) { clearTimeout(timer); p.waiter = null; resolve(sdp); },
        reject: function (e) { clearTimeout(timer); p.waiter = null; reject(e); }
      };
    });
  }

  /** Video codec order: the wanted codec first (H.264: packetization-mode=1, 42e01f first), then rtx/red/fec. */
  var codecWarned = false;
  function applyCodecPreferences(tr) {
    if (typeof tr.setCodecPreferences !== 'function' || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    var caps = RTCRtpReceiver.getCapabilities('video');
    if (!caps || !caps.codecs) return;
    var want = 'video/' + CODEC;
    var preferred = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === want; });
    if (!preferred.length) {
      if (!codecWarned) { codecWarned = true; toast(t('err.codecMissing', { codec: CODEC.toUpperCase() }), 'warn'); }
      return;
    }
    if (CODEC === 'h264') {
      var score = function (c) {
        var f = (c.sdpFmtpLine || '').toLowerCase();
        return (/packetization-mode=1/.test(f) ? 2 : 0) + (/profile-level-id=42e01f/.test(f) ? 1 : 0);
      };
      preferred.sort(function (a, b) { return score(b) - score(a); });
    }
    var resilience = caps.codecs.filter(function (c) { return /\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType); });
    try {
      tr.setCodecPreferences(preferred.concat(resilience));
    } catch (e) {
      try { tr.setCodecPreferences(preferred); } catch (e2) { console.warn('duet: setCodecPreferences failed', e2); }
    }
  }

  /**
   * Audio: Opus inside RED (RFC 2198) first when the browser has it, so every packet also
   * carries the previous frame and a lossy rural link loses far fewer of the teacher's words;
   * plain Opus stays offered for peers without RED. `?red=0` turns it off.
   */
  function preferAudioRedundancy(tr) {
    if (params.get('red') === '0') return;
    if (typeof tr.setCodecPreferences !== 'function' || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
    var caps = RTCRtpSender.getCapabilities('audio');
    if (!caps || !caps.codecs) return;
    var red = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === 'audio/red'; });
    if (!red.length) return;
    var rest = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() !== 'audio/red'; });
    try { tr.setCodecPreferences(red.concat(rest)); } catch (e) { console.warn('duet: RED preference failed', e); }
  }

  /* ---- ICE ---- */

  function sendLocalIce(target, cand, p) {
    if (!cand || !cand.candidate) return;       // end-of-candidates
    var j = typeof cand.toJSON === 'function' ? cand.toJSON() : cand;
    var c = { candidate: j.candidate };
    if (j.sdpMid != null) c.sdpMid = j.sdpMid;
    if (j.sdpMLineIndex != null) c.sdpMLineIndex = j.sdpMLineIndex;
    if (j.usernameFragment != null) c.usernameFragment = j.usernameFragment;
    var msg = { type: 'ice', target: target, candidate: c };
    if (p.descSent) send(msg); else p.outQueue.push(msg);
  }

  function flushLocalIce(target, p) {
    var q = p.outQueue;
    p.outQueue = [];
    q.forEach(send);
  }

  function onRemoteIce(target, cand) {
    if (!cand || !cand.candidate) return;
    var p = target === 'publisher' ? pub : sub;
    if (p.pc && p.pc.remoteDescription) {
      p.pc.addIceCandidate(cand).catch(function (e) { console.warn('duet: addIceCandidate', target, e); });
    } else {
      p.iceQueue.push(cand);
    }
  }

  async function flushRemoteIce(p) {
    var q = p.iceQueue;
    p.iceQueue = [];
    for (var i = 0; i < q.length; i++) {
      try { await p.pc.addIceCandidate(q[i]); } catch (e) { console.warn('duet: queued addIceCandidate', e); }
    }
  }

  /** 'failed' → reconnect now; 'disconnected' → reconnect if still not back after 5 s. */
  function onPcState(pc, p, gen) {
    if (gen !== session.gen) return;
    var s = pc.connectionState;
    if (s === 'failed') {
      scheduleReconnect('pc_failed');
    } else if (s === 'disconnected') {
      clearTimeout(p.discTimer);
      p.discTimer = setTimeout(function () {
        if (gen === session.gen && (pc.connectionState === 'disconnected' || pc.connectionState === 'failed')) {
          scheduleReconnect('pc_disconnected');
        }
      }, 5000);
    } else {
      clearTimeout(p.discTimer);
    }
  }

  /* ---- Screen share (lead only) ---- */

  async function shareScreen(opts) {
    opts = opts || {};
    if (!state.joined) { toast(t('err.notJoined'), 'warn'); return false; }
    if (state.publishSources.indexOf('screen') < 0) { toast(t('screen.notAllowed'), 'error'); return false; }
    if (liveEntry(media.screen)) return true;
    if (media.screenStarting) return false;
    media.screenStarting = true;
    scheduleRender();
    try {
      var entry;
      if (opts.synthetic) {
        entry = createSyntheticCourseware();
      } else {
        if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
          toast(t('screen.unsupported'), 'error');
          return false;
        }
        var stream;
        try {
          stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 5, max: 15 } }, audio: false });
        } catch (e) {
          var cancelled = e && (e.name === 'NotAllowedError' || e.name === 'AbortError');
          toast(cancelled ? t('screen.cancelled') : t('screen.failed', { msg: errorText(e) }), cancelled ? 'warn' : 'error');
          return false;
        }
        var track = stream.getVideoTracks()[0];
        if (!track) { toast(t('screen.failed', { msg: 'no video track' }), 'error'); return false; }
        entry = { source: 'screen', track: track, stream: stream, synthetic: false, stopDrawing: null };
      }
      entry.track.contentHint = 'detail';
      entry.track.addEventListener('ended', function () {
        // The browser's own "stop sharing" bar, or the window went away.
        if (media.screen === entry) { stopScreen(); toast(t('screen.ended'), 'info', 3000); }
      });
      media.screen = entry;
      state.sharing = true;
      updatePublishing();
      return true;
    } catch (e) {
      toast(t('screen.failed', { msg: errorText(e) }), 'error');
      return false;
    } finally {
      media.screenStarting = false;
      scheduleRender();
    }
  }

  function stopScreenTrack() {
    var e = media.screen;
    media.screen = null;
    state.sharing = false;
    if (!e) return;
    if (e.stopDrawing) e.stopDrawing();
    e.track.stop();
  }

  function stopScreen() {
    if (!media.screen) return false;
    stopScreenTrack();
    dropTile('self:screen');
    updatePublishing();     // removeTrack(sender) + renegotiate without the screen track
    scheduleRender();
    return true;
  }

  /**
   * TEST / DEMO SOURCE — not real screen capture.
   * Headless test browsers cannot use getDisplayMedia, so window.duet.shareScreen({synthetic:true})
   * publishes this instead: a 1280x720 canvas redrawn at 5 fps showing a "课件 / Courseware" slide
   * and the current time, captured with canvas.captureStream(5).
   */
  function createSyntheticCourseware() {
    var canvas = document.createElement('canvas');
    canvas.width = 1280;
    canvas.height = 720;
    // willReadFrequently → a software canvas: Chrome hibernates accelerated canvases of hidden
    // pages and a hibernated canvas captures as black frames (the lead tab may be in background).
    var ctx = canvas.getContext('2d', { alpha: false, willReadFrequently: true });
    var frame = 0;
    var title = state.room || '';
    var fonts = '"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif';
    function draw() {
      frame++;
      ctx.fillStyle = '#fdfaf0';
      ctx.fillRect(0, 0, 1280, 720);
      ctx.fillStyle = '#1d4e89';
      ctx.fillRect(0, 0, 1280, 110);
      ctx.fillStyle = '#ffffff';
      ctx.font = 'bold 60px ' + fonts;
      ctx.textBaseline = 'middle';
      ctx.fillText(t('screen.syntheticTitle'), 40, 56);
      ctx.font = '32px ' + fonts;
      ctx.textAlign = 'right';
      ctx.fillText(new Date().toLocaleTimeString(), 1240, 56);
      ctx.textAlign = 'left';
      ctx.fillStyle = '#222222';
      ctx.font = '40px ' + fonts;
      ctx.fillText(title, 60, 180);
      ctx.font = 'bold 120px ' + fonts;
      ctx.fillText('24 ÷ 3 = ?', 60, 360);
      ctx.font = '44px ' + fonts;
      ctx.fillText('12 × 4 = 48    48 ÷ 6 = 8', 60, 500);
      // A moving marker so every frame differs (keeps the encoder producing frames).
      var x = 60 + (frame * 16) % 1160;
      ctx.fillStyle = '#e4572e';
      ctx.fillRect(x, 620, 60, 40);
      ctx.fillStyle = '#555555';
      ctx.font = '24px ' + fonts;
      ctx.fillText('#' + frame, 60, 690);
    }
    draw();
    var timer = setInterval(draw, 200);
    var stream = canvas.captureStream(5);
    var track = stream.getVideoTracks()[0];
    return {
      source: 'screen', track: track, stream: stream, synthetic: true, canvas: canvas,
      stopDrawing: function () { clearInterval(timer); }
    };
  }

  /* ---- Subscribe side ---- */

  function ensureSubscribePc(p) {
    if (p.pc) return p.pc;
    var gen = session.gen;
    var pc = new RTCPeerConnection({ iceServers: [] });
    pc.onicecandidate = function (ev) { if (gen === session.gen) sendLocalIce('subscriber', ev.candidate, p); };
    pc.onconnectionstatechange = function () { onPcState(pc, p, gen); };
    pc.ontrack = function (ev) {
      if (gen !== session.gen) return;
      reconcileRemoteMedia(p, ev);
    };
    p.pc = pc;
    return pc;
  }

  function onSubscribeOffer(msg) {
    var p = sub;
    var gen = session.gen;
    p.chain = p.chain.then(function () { return applySubscribeOffer(msg, p, gen); }).catch(function (e) {
      if (gen !== session.gen) return;
      console.error('duet: subscribe negotiation failed', e);
      toast(t('err.subscribe', { msg: errorText(e) }), 'error', 8000);
    });
  }

  async function applySubscribeOffer(msg, p, gen) {
    if (gen !== session.gen || typeof msg.sdp !== 'string') return;
    (msg.tracks || []).forEach(upsertTrackInfo);
    syncTrackState();
    p.midMap = parseSdpMsids(msg.sdp);
    var pc = ensureSubscribePc(p);
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    if (gen !== session.gen) return;
    await flushRemoteIce(p);
    var answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (gen !== session.gen) return;
    send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
    p.descSent = true;
    flushLocalIce('subscriber', p);
    reconcileRemoteMedia(p, null);
  }

  /** mid → {kind, streamId, trackId, sending} from each m-section's a=mid / a=msid / direction. */
  function parseSdpMsids(sdp) {
    var map = new Map();
    sdp.split(/\r?\nm=/).slice(1).forEach(function (sec) {
      var lines = sec.split(/\r?\n/);
      var head = lines[0].split(' ');
      var mid = null, streamId = null, trackId = null, dir = 'sendrecv';
      lines.forEach(function (l) {
        l = l.trim();
        if (l.indexOf('a=mid:') === 0) mid = l.slice(6);
        else if (l.indexOf('a=msid:') === 0) {
          var parts = l.slice(7).split(/\s+/);
          streamId = parts[0] || null;
          trackId = parts[1] || null;
        } else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l)) dir = l.slice(2);
      });
      if (mid != null) {
        map.set(mid, { kind: head[0], streamId: streamId, trackId: trackId,
          sending: head[1] !== '0' && (dir === 'sendonly' || dir === 'sendrecv') });
      }
    });
    return map;
  }

  /**
   * Rebuilds remoteMedia from the subscribe PC's transceivers: each receiving m-section's msid
   * names "<participant id> <track id>". A receiver's MediaStreamTrack may be reused for another
   * track when the SFU recycles an m-line, so the SDP (not track.id) is authoritative; track.id and
   * event.streams are the fallback. Tracks owned by ourselves are counted and never attached.
   */
  function reconcileRemoteMedia(p, ev) {
    if (!p.pc) return;
    var youId = state.you && state.you.id;
    var next = new Map();
    p.pc.getTransceivers().forEach(function (tr) {
      if (tr.stopped || tr.currentDirection === 'stopped' || tr.mid == null || !tr.receiver || !tr.receiver.track) return;
      var m = p.midMap.get(tr.mid);
      if (!m && (tr.direction === 'inactive' || tr.direction === 'sendonly')) return;
      var track = tr.receiver.track;
      var trackId = null, participant = null;
      if (m) {
        if (!m.sending) return;
        trackId = m.trackId;
        participant = m.streamId;
      }
      if (!trackId || (!trackInfo.has(trackId) && trackInfo.has(track.id))) trackId = track.id;
      if (ev && ev.transceiver === tr && !participant && ev.streams && ev.streams[0]) participant = ev.streams[0].id;
      var info = trackInfo.get(trackId);
      if (info) participant = info.participant;
      if (!trackId) return;
      if (youId && participant === youId) {
        if (!ownCounted.has(trackId)) { ownCounted.add(trackId); state.ownTracksReceived++; }
        return;
      }
      next.set(trackId, { track: track, participant: participant, kind: track.kind, mid: tr.mid });
    });
    remoteMedia = next;
    syncAudio();
    scheduleRender();
  }

  /* ---- Remote audio (one <audio autoplay> per remote microphone track) ---- */

  var audioEls = new Map();   // track_id → <audio>

  function syncAudio() {
    var sink = el('audio-sink');
    remoteMedia.forEach(function (m, id) {
      if (m.kind !== 'audio') return;
      var a = audioEls.get(id);
      if (!a) {
        a = h('audio', { autoplay: true, 'data-track': id, 'data-participant': m.participant || '' });
        audioEls.set(id, a);
        if (sink) sink.appendChild(a);
      }
      if (a.__track !== m.track) {
        a.__track = m.track;
        a.srcObject = new MediaStream([m.track]);
        playAudio(a);
      }
    });
    audioEls.forEach(function (a, id) {
      var m = remoteMedia.get(id);
      if (!m || m.kind !== 'audio') {
        a.srcObject = null;
        if (a.parentNode) a.parentNode.removeChild(a);
        audioEls.delete(id);
      }
    });
  }

  function playAudio(a) {
    var pr = a.play();
    if (pr && pr.catch) {
      pr.catch(function (e) {
        if (e && e.name === 'NotAllowedError') { ui.soundBlocked = true; renderShell(); }
      });
    }
  }

  /** Called from the "点击开启声音" button (a user gesture): retry every remote audio element. */
  function enableSound() {
    var all = [];
    audioEls.forEach(function (a) { all.push(a.play()); });
    return Promise.all(all).then(function () {
      ui.soundBlocked = false;
      renderShell();
      return true;
    }, function () { return false; });
  }

  /* ======================================================================================
   * 7. Views
   * ==================================================================================== */

  /**
   * Tiles are persistent per key ("<participant>:camera", "<participant>:screen", "self:camera",
   * "self:screen") so their <video> elements survive re-renders and language switches; renders
   * only move them between regions and update their labels.
   */
  var tiles = new Map();

  function getTile(key) {
    var tile = tiles.get(key);
    if (tile) return tile;
    var video = h('video', { autoplay: true, playsinline: true, muted: true });
    video.muted = true;          // remote audio plays through <audio>; video elements stay silent
    video.playsInline = true;
    var root = h('div', { class: 'tile', 'data-tile': key });
    var placeholder = h('div', { class: 'tile-placeholder' });
    var quality = h('span', { class: 'q-dot', 'data-grade': 'unknown', hidden: true });
    var hand = h('span', { class: 'hand-marker', hidden: true }, '✋');
    var spot = h('span', { class: 'spot-badge', hidden: true });
    var name = h('span', { class: 'tile-name' });
    var layer = h('span', { class: 'q-layer', hidden: true });
    var label = h('div', { class: 'tile-label' }, quality, name, layer);
    var badges = h('div', { class: 'tile-badges' }, hand, spot);
    var actions = h('div', { class: 'tile-actions', hidden: true });
    root.appendChild(video);
    root.appendChild(placeholder);
    root.appendChild(badges);
    root.appendChild(label);
    root.appendChild(actions);
    tile = { key: key, root: root, video: video, placeholder: placeholder, quality: quality, hand: hand,
      spot: spot, name: name, layer: layer, actions: actions, track: null, buttons: null };
    tiles.set(key, tile);
    if (viewObserver) viewObserver.observe(video);
    video.addEventListener('resize', scheduleTrackViews);   // the picture's aspect became known
    return tile;
  }

  function dropTile(key) {
    var tile = tiles.get(key);
    if (!tile) return;
    if (viewObserver) viewObserver.unobserve(tile.video);
    setTileTrack(tile, null);
    if (tile.root.parentNode) tile.root.parentNode.removeChild(tile.root);
    tiles.delete(key);
  }

  function dropTilesOf(participant) {
    Array.from(tiles.keys()).forEach(function (k) { if (k.indexOf(participant + ':') === 0) dropTile(k); });
  }

  function setTileTrack(tile, track) {
    if (tile.track !== track) {
      tile.track = track;
      if (track) {
        tile.video.srcObject = new MediaStream([track]);
        if (!track.__duetListening) {
          // Remote tracks start muted until packets flow; re-render to drop the "no video" overlay.
          track.__duetListening = true;
          track.addEventListener('mute', scheduleRender);
          track.addEventListener('unmute', scheduleRender);
          track.addEventListener('ended', scheduleRender);
        }
      } else {
        tile.video.srcObject = null;
      }
    }
  }

  /** Muted <video> elements may always play; (re)start any that a DOM move paused. */
  function ensurePlaying(tile) {
    if (!tile.track || !tile.video.paused || !tile.root.isConnected) return;
    var pr = tile.video.play();
    if (pr && pr.catch) pr.catch(function () { /* retried on the next render */ });
  }

  /* ---- Track views: how large each received video is shown (track_view → the SFU) ---- */

  /** A tile's new size is reported once it differs from the last one sent by more than this. */
  var VIEW_CHANGE_RATIO = 0.1;
  /** …and once it has stayed so for this long (a window being dragged sends one message). */
  var VIEW_DEBOUNCE_MS = 300;
  /** room track id → {sent: height last sent | null, seen: last measured, timer, due}. */
  var views = new Map();
  var viewsQueued = false;
  var viewObserver = typeof window.ResizeObserver === 'function'
    ? new ResizeObserver(function () { scheduleTrackViews(); }) : null;

  /** Measures on a timer, not in the ResizeObserver callback nor the render microtask. */
  function scheduleTrackViews() {
    if (viewsQueued) return;
    viewsQueued = true;
    setTimeout(function () { viewsQueued = false; updateTrackViews(); }, 0);
  }

  /**
   * The height, in device pixels, at which a tile draws its picture: the <video> box, less the
   * bars of object-fit: contain, or more than the box where object-fit: cover crops the sides.
   */
  function shownHeight(tile) {
    var v = tile.video;
    if (!tile.root.isConnected) return 0;
    var w = v.clientWidth, ht = v.clientHeight;
    if (!w || !ht) return 0;      // display: none somewhere above, or not laid out yet
    var aspect = v.videoWidth && v.videoHeight ? v.videoWidth / v.videoHeight : 16 / 9;
    var fit = window.getComputedStyle(v).objectFit;
    var pictureHt = w / aspect;   // the picture's height when it spans the box's width
    var shown = fit === 'cover' ? Math.max(ht, pictureHt) : (fit === 'fill' ? ht : Math.min(ht, pictureHt));
    return Math.round(shown * (window.devicePixelRatio || 1));
  }

  /**
   * Sends {"type":"track_view", track_id, height} for every received video track: the first
   * height as soon as a tile shows it, later changes of more than VIEW_CHANGE_RATIO after
   * VIEW_DEBOUNCE_MS, and 0 once no tile shows it while it is still subscribed. A track shown in
   * two tiles reports the larger one.
   */
  function updateTrackViews() {
    if (!state.joined) return;
    var byTrack = new Map();   // MediaStreamTrack → room track id
    var want = new Map();      // room track id → height
    remoteMedia.forEach(function (m, id) {
      if (m.kind !== 'video' || !m.track) return;
      byTrack.set(m.track, id);
      want.set(id, 0);
    });
    tiles.forEach(function (tile) {
      var id = tile.track ? byTrack.get(tile.track) : null;
      if (id == null) return;
      want.set(id, Math.max(want.get(id), shownHeight(tile)));
    });
    views.forEach(function (v, id) {
      if (!want.has(id)) { clearTimeout(v.timer); views.delete(id); }   // unsubscribed: nothing to say
    });
    want.forEach(function (height, id) {
      var v = views.get(id);
      if (!v) { v = { sent: null, seen: null, timer: null, due: false }; views.set(id, v); }
      var moved = height !== v.seen;
      v.seen = height;
      if (!v.sent && height > 0) { sendTrackView(id, v, height); return; }   // first shown, or shown again
      if (v.sent == null) return;                                            // never shown yet
      var significant = Math.abs(height - v.sent) > v.sent * VIEW_CHANGE_RATIO;
      if (!significant) { clearTimeout(v.timer); v.timer = null; v.due = false; return; }
      if (v.due) { sendTrackView(id, v, height); return; }
      if (moved || !v.timer) {
        clearTimeout(v.timer);
        v.timer = setTimeout(function () { v.timer = null; v.due = true; updateTrackViews(); }, VIEW_DEBOUNCE_MS);
      }
    });
  }

  function sendTrackView(id, v, height) {
    clearTimeout(v.timer);
    v.timer = null;
    v.due = false;
    if (send({ type: 'track_view', track_id: id, height: height })) v.sent = height;
  }

  /** Forgets what was reported (the subscribe connection is gone; a new one starts afresh). */
  function resetTrackViews() {
    views.forEach(function (v) { clearTimeout(v.timer); });
    views.clear();
  }

  /**
   * Records window.duet.state.firstTeacherFrameMs the first time a frame of the lead's camera is
   * presented, via requestVideoFrameCallback; 'loadeddata' is the fallback (used if rVFC is missing,
   * or if it has not fired 1.5 s after loadeddata, e.g. an element the compositor never paints).
   */
  function watchFirstTeacherFrame(video) {
    if (state.firstTeacherFrameMs != null || video.__duetWatched) return;
    video.__duetWatched = true;
    var mark = function (ms) { if (state.firstTeacherFrameMs == null) state.firstTeacherFrameMs = ms; };
    if (typeof video.requestVideoFrameCallback === 'function') {
      video.requestVideoFrameCallback(function () { mark(performance.now()); });
      video.addEventListener('loadeddata', function () {
        var at = performance.now();
        setTimeout(function () { mark(at); }, 1500);
      }, { once: true });
    } else {
      var once = function () { mark(performance.now()); };
      video.addEventListener('loadeddata', once, { once: true });
      video.addEventListener('playing', once, { once: true });
    }
  }

  /** Updates a tile's label, badges, quality dot and classes. */
  function updateTile(tile, o) {
    setTileTrack(tile, o.track || null);
    var videoOff = !o.track || o.track.muted || (o.local && !o.track.enabled);
    tile.root.classList.toggle('has-video', !videoOff);
    tile.root.classList.toggle('mirror', !!o.mirror);
    tile.root.classList.toggle('screen', o.kind === 'screen');
    tile.root.classList.toggle('speaking', !!o.speaking);
    tile.root.classList.toggle('spotlighted', !!o.spotlighted);
    tile.root.classList.toggle('hand-up', !!o.hand);
    setAttr(tile.root, 'data-participant', o.participant || null);
    setText(tile.name, o.label);
    setText(tile.placeholder, o.local && o.track && !o.track.enabled ? t('tile.cameraOff') : t('tile.noVideo'));
    tile.hand.hidden = !o.hand;
    setAttr(tile.hand, 'title', t('tile.handRaised'));
    setAttr(tile.hand, 'aria-label', t('tile.handRaised'));
    tile.spot.hidden = !o.spotlighted;
    setText(tile.spot, t('tile.spotlighted'));
    if (o.showQuality) {
      var q = state.quality[o.participant];
      var grade = q && q.grade ? q.grade : 'unknown';
      var gradeText = t('quality.' + (I18N.has('quality.' + grade) ? grade : 'unknown'));
      var tip = q ? t('quality.detail', { grade: gradeText, loss: round(q.loss_pct || 0, 1), rtt: Math.round(q.rtt_ms || 0), jitter: Math.round(q.jitter_ms || 0) }) : gradeText;
      var layerKey = q ? layerKeyOf(leadCameraLayer(q)) : null;
      var layerText = layerKey ? t('quality.layer', { layer: t('quality.layer.' + layerKey) }) : '';
      if (q && typeof q.estimate_kbps === 'number' && isFinite(q.estimate_kbps)) {
        tip += ' · ' + t('quality.estimate', { rate: formatRate(q.estimate_kbps) });
      }
      if (layerText) tip += ' · ' + layerText;
      tile.quality.hidden = false;
      setAttr(tile.quality, 'data-grade', grade);
      setAttr(tile.quality, 'title', tip);
      setAttr(tile.quality, 'aria-label', tip);
      setAttr(tile.root, 'title', tip);
      tile.layer.hidden = !layerKey;
      setText(tile.layer, layerText);
      setAttr(tile.layer, 'data-layer', layerKey);
    } else {
      tile.quality.hidden = true;
      tile.layer.hidden = true;
      setAttr(tile.root, 'title', null);
    }
    if (o.leadActions) {
      if (!tile.buttons) {
        tile.buttons = {
          spot: h('button', { type: 'button', class: 'btn btn-tile btn-primary', 'data-spotlight': o.participant }),
          mute: h('button', { type: 'button', class: 'btn btn-tile', 'data-mute': o.participant }),
          lower: h('button', { type: 'button', class: 'btn btn-tile btn-warn', 'data-lower-hand': o.participant })
        };
        tile.actions.appendChild(tile.buttons.spot);
        tile.actions.appendChild(tile.buttons.mute);
        tile.actions.appendChild(tile.buttons.lower);
      }
      tile.actions.hidden = false;
      setText(tile.buttons.spot, o.spotlighted ? t('lead.unspotlight') : t('lead.spotlight'));
      setAttr(tile.buttons.spot, 'aria-pressed', o.spotlighted ? 'true' : 'false');
      setText(tile.buttons.mute, t('lead.mute'));
      setText(tile.buttons.lower, t('lead.lowerHand'));
      tile.buttons.lower.hidden = !o.hand;
    } else {
      tile.actions.hidden = true;
    }
  }

  /**
   * The simulcast layer a participant receives of the lead's camera, from its quality entry:
   * 0/1/2 (low/medium/high), null (paused: its link cannot carry the video), or undefined (no
   * layer reported). The lead's own page is not told its own tracks' room ids; there the
   * camera is recognised by the SFU's "<participant>-camera-<n>" track ids. Without the lead's
   * camera among the entries, the lowest layer of the participant's cameras (else of all its
   * entries) stands in.
   */
  function leadCameraLayer(q) {
    var list = (Array.isArray(q.layers) ? q.layers : []).filter(function (x) {
      return x && typeof x.track_id === 'string' && (x.layer === null || typeof x.layer === 'number');
    });
    if (!list.length) return undefined;
    var lead = state.you && state.you.role === 'lead' ? state.you : leadParticipant();
    var sourceOf = function (x) {
      var info = trackInfo.get(x.track_id);
      if (info) return { participant: info.participant, source: info.source };
      var m = /^(.+)-(camera|screen|microphone)-\d+$/.exec(x.track_id);
      return m ? { participant: m[1], source: m[2] } : null;
    };
    var own = null, cams = [];
    list.forEach(function (x) {
      var s = sourceOf(x);
      if (!s || s.source !== 'camera') return;
      cams.push(x);
      if (!own && lead && s.participant === lead.id) own = x;
    });
    if (own) return own.layer;
    var low;   // a paused track (null) counts as the lowest
    (cams.length ? cams : list).forEach(function (x) {
      var l = x.layer === null ? -1 : x.layer;
      if (low === undefined || l < low) low = l;
    });
    return low === -1 ? null : low;
  }

  function layerKeyOf(layer) {
    if (layer === undefined) return null;
    if (layer === null) return 'paused';
    return layer >= 2 ? 'high' : (layer === 1 ? 'medium' : 'low');
  }

  /** 850 → "850 kbps", 1234 → "1.2 Mbps", 12345 → "12 Mbps". */
  function formatRate(kbps) {
    if (kbps < 1000) return t('quality.kbps', { n: Math.round(kbps) });
    return t('quality.mbps', { n: (kbps / 1000).toFixed(kbps < 10000 ? 1 : 0) });
  }

  var renderQueued = false;
  /** Coalesces renders into one microtask (works in background tabs, unlike requestAnimationFrame). */
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    Promise.resolve().then(function () {
      renderQueued = false;
      if (ui.screen === 'class') renderClass();
    });
  }

  function renderClass() {
    var screen = el('screen');
    renderShell();
    if (!state.you) {
      if (!screen.querySelector('.entering')) {
        screen.textContent = '';
        screen.appendChild(h('div', { class: 'entering' }, h('p', null, t('class.entering'))));
      }
      return;
    }
    var role = state.you.role;
    var sk = ui.classSkeleton;
    if (!sk || sk.role !== role || sk.lang !== I18N.getLang()) {
      sk = ui.classSkeleton = role === 'lead' ? buildLeadSkeleton() : buildRoomSkeleton(role);
      screen.textContent = '';
      screen.appendChild(sk.root);
    }
    var placed = new Set();
    if (role === 'lead') renderLead(sk, placed); else renderRoom(sk, placed);
    // Tiles not on screen release their tracks (they keep their <video> for reuse).
    tiles.forEach(function (tile) {
      if (placed.has(tile)) ensurePlaying(tile); else setTileTrack(tile, null);
    });
    renderControls(sk);
    scheduleTrackViews();
  }

  function isSpeaking(id) { return !!id && state.activeSpeaker === id; }
  function handUp(id) { return state.hands.indexOf(id) >= 0; }

  function selfCameraTile(placed, labelText) {
    if (!media.camera && !media.acquiring && !media.microphone) return null;
    var tile = getTile('self:camera');
    updateTile(tile, {
      track: liveEntry(media.camera) ? media.camera.track : null, local: true, mirror: true, kind: 'camera',
      participant: state.you.id, label: labelText,
      speaking: isSpeaking(state.you.id), spotlighted: state.spotlight === state.you.id, hand: handUp(state.you.id)
    });
    placed.add(tile);
    return tile.root;
  }

  /* ---- Lead teacher view ---- */

  function buildLeadSkeleton() {
    var sk = { role: 'lead', lang: I18N.getLang() };
    sk.selfRegion = h('div', { class: 'self-region', id: 'self-region' });
    sk.controls = buildControls(sk, 'lead');
    sk.handsList = h('ol', { class: 'hands-list', id: 'hands-list' });
    sk.observers = h('p', { class: 'observers muted', id: 'observers-line' });
    sk.spotHeading = h('h2', { class: 'spot-heading', id: 'spot-heading', hidden: true });
    sk.spotRegion = h('div', { class: 'spot-region', id: 'spot-region' });
    sk.gridHeading = h('h2', { class: 'grid-heading' });
    sk.grid = h('div', { class: 'grid', id: 'grid' });
    sk.empty = h('p', { class: 'empty', id: 'grid-empty' }, t('lead.noClassrooms'));
    sk.root = h('div', { class: 'class-view lead-view' },
      h('aside', { class: 'lead-side' },
        h('h2', null, t('lead.myCamera')),
        sk.selfRegion,
        sk.controls.root,
        h('section', { class: 'hands-panel' }, h('h2', null, t('lead.hands')), sk.handsList),
        sk.observers),
      h('section', { class: 'lead-main' }, sk.spotHeading, sk.spotRegion, sk.gridHeading, sk.grid, sk.empty));
    return sk;
  }

  function renderLead(sk, placed) {
    var you = state.you;
    var selfEls = [selfCameraTile(placed, you.name + t('tile.you'))];
    if (liveEntry(media.screen)) {
      var st = getTile('self:screen');
      updateTile(st, { track: media.screen.track, local: true, kind: 'screen', participant: you.id, label: t('lead.myScreen') });
      placed.add(st);
      selfEls.push(st.root);
    }
    place(sk.selfRegion, selfEls);

    var classrooms = state.participants.filter(function (p) { return p.role === 'receiving'; });
    var spotP = null;
    var gridEls = [];
    classrooms.forEach(function (p) {
      var tile = getTile(p.id + ':camera');
      var spotlighted = state.spotlight === p.id;
      updateTile(tile, {
        track: remoteTrackFor(p.id, 'camera'), kind: 'camera', participant: p.id, label: p.name,
        speaking: isSpeaking(p.id), spotlighted: spotlighted, hand: handUp(p.id),
        showQuality: true, leadActions: true
      });
      placed.add(tile);
      if (spotlighted) spotP = { p: p, tile: tile }; else gridEls.push(tile.root);
    });
    place(sk.spotRegion, spotP ? [spotP.tile.root] : []);
    sk.spotHeading.hidden = !spotP;
    setText(sk.spotHeading, spotP ? t('lead.spotlightHeading', { name: spotP.p.name }) : '');
    place(sk.grid, gridEls);
    sk.grid.setAttribute('data-count', String(gridEls.length));
    setText(sk.gridHeading, t('lead.classrooms', { count: classrooms.length }));
    sk.empty.hidden = classrooms.length > 0;

    // Raised hands, in the order they were raised.
    var items = state.hands.map(function (id) {
      return h('li', { 'data-hand': id }, h('span', { class: 'hand-name' }, '✋ ' + nameOf(id)),
        h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-hand-spotlight': id },
          state.spotlight === id ? t('lead.unspotlight') : t('lead.spotlight')),
        h('button', { type: 'button', class: 'btn btn-small btn-warn', 'data-hand-lower': id }, t('lead.lowerHand')));
    });
    var sig = JSON.stringify([state.hands, state.spotlight, I18N.getLang(), state.hands.map(nameOf)]);
    if (sk.handsList.__sig !== sig) {
      sk.handsList.__sig = sig;
      sk.handsList.textContent = '';
      if (items.length) items.forEach(function (li) { sk.handsList.appendChild(li); });
      else sk.handsList.appendChild(h('li', { class: 'muted' }, t('lead.noHands')));
    }
    var observers = state.participants.filter(function (p) { return p.role === 'observer'; }).map(function (p) { return p.name; });
    setText(sk.observers, observers.length ? t('lead.observers', { names: observers.join('、') }) : '');
  }

  /* ---- Receiving classroom / observer view ---- */

  function buildRoomSkeleton(role) {
    var sk = { role: role, lang: I18N.getLang() };
    sk.stageMain = h('div', { class: 'stage-main', id: 'stage-main' });
    sk.stageSide = h('div', { class: 'stage-side', id: 'stage-side' });
    sk.stage = h('section', { class: 'stage', id: 'stage' }, sk.stageMain, sk.stageSide);
    sk.waiting = h('div', { class: 'waiting' }, t('room.waitTeacher'));
    sk.strip = h('div', { class: 'strip', id: 'strip' });
    sk.controls = buildControls(sk, role);
    sk.root = h('div', { class: 'class-view room-view role-' + role },
      sk.stage,
      h('section', { class: 'room-bottom' }, sk.strip, sk.controls.root));
    return sk;
  }

  function renderRoom(sk, placed) {
    var you = state.you;
    var lead = leadParticipant();
    var teacherCam = null, courseware = null;
    if (lead) {
      var tc = getTile(lead.id + ':camera');
      var camTrack = remoteTrackFor(lead.id, 'camera');
      updateTile(tc, { track: camTrack, kind: 'camera', participant: lead.id,
        label: t('tile.teacher') + ' · ' + lead.name, speaking: isSpeaking(lead.id),
        spotlighted: state.spotlight === lead.id, showQuality: !!state.quality[lead.id] });
      if (camTrack) watchFirstTeacherFrame(tc.video);
      teacherCam = tc;
      if (hasAnnouncedTrack(lead.id, 'screen')) {
        courseware = getTile(lead.id + ':screen');
        updateTile(courseware, { track: remoteTrackFor(lead.id, 'screen'), kind: 'screen', participant: lead.id,
          label: t('tile.coursewareOf', { name: lead.name }) });
      }
    }

    var selfTile = null;
    if (you.role === 'receiving' && (media.camera || media.microphone || media.acquiring)) {
      selfCameraTile(placed, you.name + t('tile.you'));
      selfTile = tiles.get('self:camera');
    }

    var spotId = state.spotlight;
    var spotTile = null;
    if (spotId && spotId === you.id && selfTile) {
      spotTile = selfTile;
    } else if (spotId && (!lead || spotId !== lead.id)) {
      var sp = participantById(spotId);
      if (sp && sp.id !== you.id) spotTile = classroomTile(sp, placed);
    }

    // Stage: spotlighted classroom > courseware > teacher camera; the rest beside it.
    var main, side;
    if (spotTile) { main = spotTile; side = [teacherCam, courseware]; }
    else if (courseware) { main = courseware; side = [teacherCam]; }
    else { main = teacherCam; side = []; }
    side = side.filter(Boolean);
    [main].concat(side).forEach(function (x) { if (x) placed.add(x); });
    place(sk.stageMain, [main ? main.root : sk.waiting]);
    place(sk.stageSide, side.map(function (x) { return x.root; }));
    sk.stage.classList.toggle('has-side', side.length > 0);

    // Strip: own preview small, then the other classrooms as thumbnails.
    var strip = [];
    if (selfTile && selfTile !== main) strip.push(selfTile.root);
    state.participants.forEach(function (p) {
      if (p.role !== 'receiving' || p.id === you.id) return;
      var tile = classroomTile(p, placed);
      if (tile !== main) strip.push(tile.root);
    });
    place(sk.strip, strip);
    sk.strip.hidden = strip.length === 0;
  }

  function classroomTile(p, placed) {
    var tile = getTile(p.id + ':camera');
    updateTile(tile, {
      track: remoteTrackFor(p.id, 'camera'), kind: 'camera', participant: p.id, label: p.name,
      speaking: isSpeaking(p.id), spotlighted: state.spotlight === p.id, hand: handUp(p.id),
      showQuality: !!state.quality[p.id]
    });
    placed.add(tile);
    return tile;
  }

  /* ---- Controls (share / mic / camera / raise hand) ---- */

  function buildControls(sk, role) {
    var c = { root: h('div', { class: 'controls', id: 'controls' }) };
    if (role === 'lead') {
      c.share = h('button', { type: 'button', id: 'share-screen', class: 'btn btn-primary btn-big' });
      c.root.appendChild(c.share);
    }
    if (role === 'receiving') {
      c.hand = h('button', { type: 'button', id: 'raise-hand', class: 'btn btn-hand btn-huge' });
      c.root.appendChild(c.hand);
    }
    if (role === 'lead' || role === 'receiving') {
      c.mic = h('button', { type: 'button', id: 'toggle-mic', class: 'btn btn-big' });
      c.cam = h('button', { type: 'button', id: 'toggle-camera', class: 'btn btn-big' });
      c.root.appendChild(c.mic);
      c.root.appendChild(c.cam);
    } else {
      c.root.appendChild(h('p', { class: 'observer-note' }, t('room.observerNote')));
    }
    return c;
  }

  function renderControls(sk) {
    var c = sk.controls;
    if (c.share) {
      var canShare = state.publishSources.indexOf('screen') >= 0;
      c.share.hidden = !canShare;
      var sharing = !!liveEntry(media.screen);
      setText(c.share, media.screenStarting ? t('ctl.sharing') : (sharing ? t('ctl.stopShare') : t('ctl.share')));
      c.share.disabled = media.screenStarting || !state.joined;
      c.share.classList.toggle('active', sharing);
      setAttr(c.share, 'aria-pressed', sharing ? 'true' : 'false');
    }
    if (c.hand) {
      var up = !!state.you && handUp(state.you.id);
      setText(c.hand, up ? t('ctl.lower') : t('ctl.raise'));
      c.hand.classList.toggle('active', up);
      setAttr(c.hand, 'aria-pressed', up ? 'true' : 'false');
      c.hand.disabled = !state.joined;
    }
    if (c.mic) {
      var mic = liveEntry(media.microphone);
      setText(c.mic, !mic ? t('ctl.noMic') : (mic.track.enabled ? t('ctl.micOn') : t('ctl.micOff')));
      c.mic.disabled = !mic;
      c.mic.classList.toggle('off', !!mic && !mic.track.enabled);
      setAttr(c.mic, 'aria-pressed', mic && !mic.track.enabled ? 'true' : 'false');
    }
    if (c.cam) {
      var cam = liveEntry(media.camera);
      setText(c.cam, !cam ? t('ctl.noCam') : (cam.track.enabled ? t('ctl.camOn') : t('ctl.camOff')));
      c.cam.disabled = !cam;
      c.cam.classList.toggle('off', !!cam && !cam.track.enabled);
      setAttr(c.cam, 'aria-pressed', cam && !cam.track.enabled ? 'true' : 'false');
    }
  }

  function toggleMic(on) {
    var mic = liveEntry(media.microphone);
    if (!mic) return false;
    mic.track.enabled = typeof on === 'boolean' ? on : !mic.track.enabled;
    if (mic.track.enabled) { state.muteRequested = false; clearBanner('mute'); }
    scheduleRender();
    return mic.track.enabled;
  }

  function toggleCamera(on) {
    var cam = liveEntry(media.camera);
    if (!cam) return false;
    cam.track.enabled = typeof on === 'boolean' ? on : !cam.track.enabled;
    scheduleRender();
    return cam.track.enabled;
  }

  /* ======================================================================================
   * 8. Quality: every 2 s, from our own getStats
   * ==================================================================================== */

  var qualityPrev = new Map();   // inbound-rtp id → {received, lost}

  function startQualityLoop(gen) {
    stopQualityLoop();
    session.qualityTimer = setInterval(function () {
      if (gen !== session.gen || !state.joined) return;
      // Tile sizes, again: a background tab gets no ResizeObserver callbacks (no rendering).
      scheduleTrackViews();
      measureQuality().then(function (q) {
        if (q && gen === session.gen) send({ type: 'quality', loss_pct: q.loss_pct, rtt_ms: q.rtt_ms, jitter_ms: q.jitter_ms });
      }, function (e) { console.warn('duet: getStats failed', e); });
    }, 2000);
  }

  function stopQualityLoop() {
    clearInterval(session.qualityTimer);
    session.qualityTimer = null;
  }

  function selectedPairRttMs(stats) {
    var pair = null;
    stats.forEach(function (r) {
      if (r.type === 'transport' && r.selectedCandidatePairId && !pair) pair = stats.get(r.selectedCandidatePairId) || null;
    });
    if (!pair) {
      stats.forEach(function (r) {
        if (!pair && r.type === 'candidate-pair' && (r.selected || (r.nominated && r.state === 'succeeded'))) pair = r;
      });
    }
    return pair && typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null;
  }

  /** {loss_pct, rtt_ms, jitter_ms} or null when there is no peer connection to measure yet. */
  async function measureQuality() {
    var subPc = sub.pc, pubPc = pub.pc;
    if (!subPc && !pubPc) return null;
    var lost = 0, received = 0, jitters = [], rtt = null;
    if (subPc) {
      var stats = await subPc.getStats();
      stats.forEach(function (r) {
        if (r.type !== 'inbound-rtp') return;
        var prev = qualityPrev.get(r.id) || { received: 0, lost: 0 };
        var rec = r.packetsReceived || 0;
        var ls = Math.max(0, r.packetsLost || 0);
        received += Math.max(0, rec - prev.received);
        lost += Math.max(0, ls - prev.lost);
        qualityPrev.set(r.id, { received: rec, lost: ls });
        if (typeof r.jitter === 'number') jitters.push(r.jitter);
      });
      rtt = selectedPairRttMs(stats);
    }
    if (rtt == null && pubPc) rtt = selectedPairRttMs(await pubPc.getStats());
    var loss = received + lost > 0 ? (lost / (received + lost)) * 100 : 0;
    var jitter = jitters.length ? (jitters.reduce(function (a, b) { return a + b; }, 0) / jitters.length) * 1000 : 0;
    return { loss_pct: round(loss, 2), rtt_ms: round(rtt || 0, 1), jitter_ms: round(jitter, 2) };
  }

  /* ======================================================================================
   * 9. Test hooks (window.duet) and boot
   * ==================================================================================== */

  function statsOf(report, type) {
    var out = null;
    report.forEach(function (r) { if (!out && r.type === type) out = r; });
    return out;
  }

  function num(x) { return typeof x === 'number' ? x : null; }

  /** Per-track inbound/outbound RTP counters, for tests and diagnostics. */
  async function summary() {
    var inbound = [];
    var outbound = [];
    if (sub.pc) {
      var trs = sub.pc.getTransceivers();
      for (var i = 0; i < trs.length; i++) {
        var tr = trs[i];
        if (!tr.receiver || !tr.receiver.track || tr.mid == null) continue;
        var entryId = null;
        remoteMedia.forEach(function (m, id) { if (m.mid === tr.mid) entryId = id; });
        if (!entryId) continue;
        var m = remoteMedia.get(entryId);
        var info = trackInfo.get(entryId);
        var rep = await tr.receiver.getStats();
        var rtp = statsOf(rep, 'inbound-rtp');
        var codec = rtp && rtp.codecId ? rep.get(rtp.codecId) : null;
        inbound.push({
          track_id: entryId,
          participant: info ? info.participant : m.participant,
          source: info ? info.source : null,
          kind: (rtp && rtp.kind) || m.kind,
          codec: codec ? codec.mimeType : null,
          framesDecoded: rtp ? num(rtp.framesDecoded) : null,
          frameWidth: rtp ? num(rtp.frameWidth) : null,
          frameHeight: rtp ? num(rtp.frameHeight) : null,
          totalSamplesReceived: rtp ? num(rtp.totalSamplesReceived) : null,
          concealedSamples: rtp ? num(rtp.concealedSamples) : null,
          packetsReceived: rtp ? num(rtp.packetsReceived) : null,
          packetsLost: rtp ? num(rtp.packetsLost) : null,
          freezeCount: rtp ? num(rtp.freezeCount) : null,
          totalFreezesDuration: rtp ? num(rtp.totalFreezesDuration) : null,
          fecPacketsReceived: rtp ? num(rtp.fecPacketsReceived) : null,
          jitter: rtp ? num(rtp.jitter) : null
        });
      }
    }
    if (pub.pc) {
      var senders = pub.pc.getSenders();
      for (var j = 0; j < senders.length; j++) {
        var s = senders[j];
        if (!s.track) continue;
        var source = null;
        pub.transceivers.forEach(function (rec, src) { if (rec.track === s.track) source = src; });
        if (!source) continue;
        var srep = await s.getStats();
        var out = statsOf(srep, 'outbound-rtp');
        var scodec = out && out.codecId ? srep.get(out.codecId) : null;
        // A simulcast sender has one outbound-rtp per layer: packets add up, frames are the
        // most any layer encoded; `layers` has each one (rid order as the SFU numbers them).
        var outs = [];
        srep.forEach(function (r) { if (r.type === 'outbound-rtp') outs.push(r); });
        var encs = [];
        try { encs = (s.getParameters().encodings || []); } catch (e) { /* closed */ }
        var layers = outs.map(function (r) {
          var enc = null;
          encs.forEach(function (x) { if (x.rid != null && x.rid === r.rid) enc = x; });
          return {
            rid: r.rid != null ? r.rid : null,
            active: enc ? enc.active !== false : (encs.length === 1 ? encs[0].active !== false : null),
            frameWidth: num(r.frameWidth),
            frameHeight: num(r.frameHeight),
            framesEncoded: num(r.framesEncoded),
            packetsSent: num(r.packetsSent),
            pliCount: num(r.pliCount),
            firCount: num(r.firCount),
            keyFramesEncoded: num(r.keyFramesEncoded),
            qualityLimitationReason: r.qualityLimitationReason || null
          };
        }).sort(function (a, b) { return SIMULCAST_RIDS.indexOf(a.rid) - SIMULCAST_RIDS.indexOf(b.rid); });
        var sumOf = function (field) {
          var any = false, total = 0;
          outs.forEach(function (r) { if (typeof r[field] === 'number') { any = true; total += r[field]; } });
          return any ? total : null;
        };
        var maxOf = function (field) {
          var best = null;
          outs.forEach(function (r) { if (typeof r[field] === 'number' && (best == null || r[field] > best)) best = r[field]; });
          return best;
        };
        outbound.push({
          track_id: s.track.id,
          source: source,
          kind: s.track.kind,
          codec: scodec ? scodec.mimeType : null,
          packetsSent: sumOf('packetsSent'),
          framesEncoded: maxOf('framesEncoded'),
          encodings: encs.length,
          layers: layers
        });
      }
    }
    return { you: state.you, inbound: inbound, outbound: outbound, hands: state.hands.slice(), spotlight: state.spotlight };
  }

  function raiseHand() { return send({ type: 'raise_hand' }); }
  function lowerHand(id) { return send({ type: 'lower_hand', participant: id || null }); }
  function spotlight(id) { return send({ type: 'spotlight', participant: id || null }); }
  function muteRequest(id) {
    var ok = send({ type: 'mute_request', participant: id });
    if (ok) toast(t('lead.muteSent', { name: nameOf(id) }), 'ok', 3000);
    return ok;
  }

  window.duet = {
    state: state,
    get firstTeacherFrameMs() { return state.firstTeacherFrameMs; },
    get ownTracksReceived() { return state.ownTracksReceived; },
    summary: summary,
    raiseHand: raiseHand,
    lowerHand: lowerHand,
    spotlight: spotlight,
    muteRequest: muteRequest,
    shareScreen: shareScreen,
    stopScreen: stopScreen,
    leave: leave,
    // Extras (not required by the tests, handy for manual debugging):
    toggleMic: toggleMic,
    toggleCamera: toggleCamera,
    enableSound: enableSound,
    setLang: function (lang) { return I18N.setLang(lang, true); },
    codec: CODEC,
    simulcast: SIMULCAST,
    /** Heights last sent in track_view messages: room track id → device px. */
    trackViews: function () {
      var o = {};
      views.forEach(function (v, id) { if (v.sent != null) o[id] = v.sent; });
      return o;
    }
  };

  /* ---- Event delegation for every button ---- */

  document.addEventListener('click', function (ev) {
    if (ui.soundBlocked && ev.target.closest && ev.target.id !== 'enable-sound') enableSound();
    var b = ev.target.closest ? ev.target.closest('button') : null;
    if (!b || b.disabled) return;
    var d = b.dataset;
    if (b.id === 'lang-toggle') I18N.toggle();
    else if (b.id === 'leave') leave();
    else if (b.id === 'enable-sound') enableSound();
    else if (b.id === 'share-screen') { if (liveEntry(media.screen)) stopScreen(); else shareScreen({ synthetic: false }); }
    else if (b.id === 'raise-hand') { if (state.you && handUp(state.you.id)) lowerHand(null); else if (raiseHand()) toast(t('toast.handRaised'), 'ok', 2500); }
    else if (b.id === 'toggle-mic') toggleMic();
    else if (b.id === 'toggle-camera') toggleCamera();
    else if (d.spotlight !== undefined) spotlight(state.spotlight === d.spotlight ? null : d.spotlight);
    else if (d.mute !== undefined) muteRequest(d.mute);
    else if (d.lowerHand !== undefined) lowerHand(d.lowerHand);
    else if (d.handSpotlight !== undefined) spotlight(state.spotlight === d.handSpotlight ? null : d.handSpotlight);
    else if (d.handLower !== undefined) lowerHand(d.handLower);
    else if (d.dismissBanner !== undefined) clearBanner(d.dismissBanner);
  });

  I18N.onChange(function () { renderBanners(); renderScreen(); });

  // ResizeObserver reports tile sizes; this also covers browsers without it.
  window.addEventListener('resize', scheduleTrackViews);

  window.addEventListener('pagehide', function () {
    // The browser closes the socket anyway; do it cleanly so the SFU frees the seat at once.
    if (session.ws) { session.gen++; closeSocket(1000, 'pagehide'); }
  });

  window.addEventListener('pageshow', function (ev) {
    // Restored from the back/forward cache with a dead socket: start over (sessionStorage rejoins).
    if (ev.persisted) location.reload();
  });

  /* ---- Boot ---- */

  function boot() {
    renderShell();
    var urlToken = params.get('token');
    if (urlToken) {
      saveSession({ token: urlToken, sfu: params.get('sfu') || '', expiresAt: null });
      startSession(urlToken, params.get('sfu') || '');
      return;
    }
    var saved = loadSession();
    if (saved) {
      startSession(saved.token, saved.sfu || '');
      return;
    }
    showScreen('join');
  }

  boot();
})();
