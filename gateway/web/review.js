/*
 * Duet review page — review.js (served at /review/<lesson_id> as /assets/review.js)
 * ==============================================================================
 * Plain JavaScript in one IIFE; no build step, no dependencies, nothing loaded from elsewhere.
 * Loaded after /assets/review-i18n.js (window.REVIEW_I18N). Talks to the JSON API (docs/api.md and
 * the issue-5 contract): GET /api/lessons/{id}, /media, /comments, /reviews, /st, /api/rubrics.
 *
 * Sections:
 *   1. Utilities ...... DOM builder h() with live translation (data-i18n), times
 *   2. API client ..... same-origin cookie, X-CSRF-Token on every change (from GET /api/me), one
 *                       retry after a stale token
 *   3. Player ......... sources on the lesson timeline (source time = lesson time − offset_ms),
 *                       source switcher, side by side (second video follows the first: rate, play
 *                       state, re-seek on drift > 0.3 s), speed, timeline with comment marks and
 *                       storyboard previews, keyboard shortcuts, expired signed URLs (refetch /media,
 *                       resume at the same time)
 *   4. Comments (旁评)
 *   5. Score sheets (评分表 and 总评), final score
 *   6. S-T analysis ... curve (SVG), Rt/Ch, type, Rt–Ch diagram, shares, correction strip, recompute
 *   7. Clip export (晒课)
 *   8. Boot
 *
 * Server data only reaches the page through textContent / attributes (never innerHTML).
 *
 * Stable ids for tests: #player (main video), #player-side, #source-switcher button[data-source]
 * (data-source = "review" for the composed video, else the source id), #speed (select), #side-toggle,
 * #timeline, .timeline-mark (data-at-ms, data-category), #time-now, #help-panel,
 * #comment-form #comment-text #comment-category #comment-submit, .comment-item (data-at-ms,
 * data-id), #rubric-form with input[name="score-<key>"], #review-strengths #review-weaknesses
 * #review-suggestions #review-summary, #review-save, #review-total, #review-band, #final-score
 * (data-score), #reviews-list .review-card, #st-chart (svg; .st-point with data-t-ms), #st-rt, #st-ch,
 * #st-type (data-type = practice|lecture|dialogue|mixed; the automatic result), #st-corrected-rt,
 * #st-corrected-ch, #st-corrected-type, #st-rtch, #st-shares, #st-strip .st-cell (data-index,
 * data-code), #st-save-corrected, #st-interval, #st-recompute, #clip-form #clip-start #clip-end
 * #clip-set-start #clip-set-end #clip-course #clip-grade #clip-edition #clip-teacher #clip-school
 * #clip-submit #clip-progress (progress, data-state) #clip-download. window.duetReview = test hooks.
 */
(function () {
  'use strict';

  var L = window.REVIEW_I18N;
  var SVGNS = 'http://www.w3.org/2000/svg';

  /* ======================================================================================
   * 1. Utilities
   * ==================================================================================== */

  function resolveVars(vars) {
    if (!vars) return vars;
    var out = {};
    Object.keys(vars).forEach(function (name) {
      var v = vars[name];
      out[name] = v && typeof v === 'object' && typeof v.k === 'string' ? L.t(v.k, resolveVars(v.vars)) : v;
    });
    return out;
  }

  function t(key, vars) { return L.t(key, resolveVars(vars)); }

  function $(id) { return document.getElementById(id); }

  /** Creates an element (same props as admin.js's h(): class, text, i18n + vars, i18nAttr, data, on…). */
  function h(tag, props) {
    var el = document.createElement(tag);
    var value;
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v == null || v === false) return;
        switch (k) {
          case 'class': el.className = v; break;
          case 'text': el.textContent = String(v); break;
          case 'i18n': el.setAttribute('data-i18n', v); break;
          case 'vars': el.setAttribute('data-i18n-vars', JSON.stringify(v)); break;
          case 'i18nAttr': el.setAttribute('data-i18n-attr', JSON.stringify(v)); break;
          case 'data':
            Object.keys(v).forEach(function (d) { if (v[d] != null) el.setAttribute('data-' + d, String(v[d])); });
            break;
          case 'on': Object.keys(v).forEach(function (ev) { el.addEventListener(ev, v[ev]); }); break;
          case 'value': value = v; break;
          case 'checked': el.checked = true; break;
          case 'disabled': el.disabled = true; break;
          case 'hidden': el.hidden = true; break;
          default: el.setAttribute(k, v === true ? '' : String(v));
        }
      });
    }
    for (var i = 2; i < arguments.length; i++) appendOne(el, arguments[i]);
    if (value != null) el.value = value;
    translateEl(el);
    return el;
  }

  /** An SVG element with attributes. */
  function s(tag, attrs) {
    var el = document.createElementNS(SVGNS, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { if (attrs[k] != null) el.setAttribute(k, String(attrs[k])); });
    for (var i = 2; i < arguments.length; i++) appendOne(el, arguments[i]);
    return el;
  }

  function appendOne(el, c) {
    if (c == null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { appendOne(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }

  function append(el) { for (var i = 1; i < arguments.length; i++) appendOne(el, arguments[i]); return el; }

  function empty(el) { while (el && el.firstChild) el.removeChild(el.firstChild); return el; }

  function fill(el) {
    empty(el);
    for (var i = 1; i < arguments.length; i++) appendOne(el, arguments[i]);
    return el;
  }

  function translateEl(el) {
    var key = el.getAttribute('data-i18n');
    var vars = el.getAttribute('data-i18n-vars');
    if (key) el.textContent = t(key, vars ? JSON.parse(vars) : null);
    var attrs = el.getAttribute('data-i18n-attr');
    if (attrs) {
      attrs = JSON.parse(attrs);
      Object.keys(attrs).forEach(function (a) { el.setAttribute(a, t(attrs[a], vars ? JSON.parse(vars) : null)); });
    }
  }

  function applyI18n(root) {
    var list = root.querySelectorAll('[data-i18n],[data-i18n-attr]');
    for (var i = 0; i < list.length; i++) translateEl(list[i]);
  }

  function setKey(el, key, vars) {
    el.setAttribute('data-i18n', key);
    if (vars) el.setAttribute('data-i18n-vars', JSON.stringify(vars));
    else el.removeAttribute('data-i18n-vars');
    translateEl(el);
  }

  function arr(x) { return Array.isArray(x) ? x : []; }
  function enc(x) { return encodeURIComponent(String(x)); }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }

  /** Lesson time in ms → "m:ss" (or "h:mm:ss"). */
  function fmtMs(ms) {
    var total = Math.max(0, Math.floor((+ms || 0) / 1000));
    var hh = Math.floor(total / 3600);
    var mm = Math.floor((total % 3600) / 60);
    var ss = total % 60;
    return hh ? hh + ':' + pad(mm) + ':' + pad(ss) : mm + ':' + pad(ss);
  }

  /** "12:30", "1:02:03", "75" (seconds), "12：30" → ms; null when unreadable. */
  function parseClock(str) {
    var v = String(str || '').trim().replace(/：/g, ':');
    if (!v) return null;
    if (/^\d+(\.\d+)?$/.test(v)) return Math.round(parseFloat(v) * 1000);
    var m = /^(?:(\d+):)?(\d{1,3}):(\d{1,2}(?:\.\d+)?)$/.exec(v);
    if (!m || parseFloat(m[3]) >= 60) return null;
    return Math.round(((+(m[1] || 0)) * 3600 + (+m[2]) * 60 + parseFloat(m[3])) * 1000);
  }

  /** An RFC 3339 instant as "YYYY-MM-DD HH:MM" in Asia/Shanghai (UTC+8 all year). */
  function fmtInstant(iso) {
    var ms = Date.parse(iso);
    if (isNaN(ms)) return '';
    var d = new Date(ms + 8 * 3600000);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes());
  }

  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === 'TEXTAREA' || tag === 'SELECT' || el.isContentEditable ||
      (tag === 'INPUT' && !/^(button|checkbox|radio|range|submit)$/.test(el.type));
  }

  /* ======================================================================================
   * 2. API client
   * ==================================================================================== */

  var state = {
    id: null,          // lesson id from the path
    me: null,
    csrf: null,
    lesson: null,
    media: null,       // GET /media answer
    sources: [],       // [{id, label, labelKey, kind, url, offset_ms, duration_ms}] — index 0: composed
    cur: null,         // source on the main player
    side: null,        // source on the side player (null: side by side off)
    heldMs: 0,         // lesson time while no picture plays (outside a source's span)
    durationMs: 0,
    rate: 1,
    comments: [],
    reviews: null,
    rubrics: [],
    st: null,
    mayReview: false,
    mayClip: false
  };

  function ApiError(status, body) {
    body = body && typeof body === 'object' ? body : {};
    this.name = 'ApiError';
    this.status = status;
    this.code = typeof body.code === 'string' ? body.code
      : (typeof body.error === 'string' ? body.error : (status ? 'http' : 'network'));
    this.serverMessage = typeof body.message === 'string' ? body.message : '';
    this.field = typeof body.field === 'string' ? body.field : null;
    this.message = this.serverMessage || this.code;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function api(method, path, body, retried) {
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, 20000) : null;
    return fetch(path, {
      method: method, headers: headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl ? ctrl.signal : undefined
    }).then(function (res) {
      if (timer) clearTimeout(timer);
      return res.text().then(function (txt) {
        var data = null;
        if (txt) {
          try { data = JSON.parse(txt); } catch (e) { if (res.ok) throw new ApiError(res.status, { code: 'bad_response' }); }
        }
        if (res.ok) return data;
        var err = new ApiError(res.status, data);
        if (err.code === 'csrf' && !retried && method !== 'GET') {
          return api('GET', '/api/me').then(function (me) {
            if (me && me.csrf_token) state.csrf = me.csrf_token;
            return api(method, path, body, true);
          });
        }
        throw err;
      });
    }, function (e) {
      if (timer) clearTimeout(timer);
      throw new ApiError(0, { code: e && e.name === 'AbortError' ? 'timeout' : 'network' });
    });
  }

  function lessonPath(sub) { return '/api/lessons/' + enc(state.id) + (sub || ''); }

  /* ---- Feedback ---- */

  function errMsgVar(err) {
    if (!(err instanceof ApiError)) return { k: 'err.unexpected', vars: { msg: String(err && err.message || err) } };
    if (err.serverMessage) return err.serverMessage;
    var key = 'err.code.' + err.code;
    return L.has(key) ? { k: key } : { k: 'err.http', vars: { status: err.status } };
  }

  function errorLine(actionKey, err) {
    return h('span', { class: 'err-line', i18n: 'err.withAction', vars: { action: { k: actionKey }, msg: errMsgVar(err) } });
  }

  function toast(kind, content) {
    var box = $('toasts');
    var item = h('div', { class: 'toast toast-' + kind, role: kind === 'error' ? 'alert' : 'status' });
    function remove() { if (item.parentNode) item.parentNode.removeChild(item); }
    append(item, h('div', { class: 'toast-body' }, content),
      h('button', { type: 'button', class: 'toast-close', text: '×', i18nAttr: { 'aria-label': 'common.close' }, on: { click: remove } }));
    box.appendChild(item);
    while (box.children.length > 3) box.removeChild(box.firstChild);
    setTimeout(remove, kind === 'error' ? 12000 : 4000);
  }

  function toastOk(key, vars) { toast('ok', h('span', { i18n: key, vars: vars })); }

  function notifyError(actionKey, err, box) {
    toast('error', errorLine(actionKey, err));
    if (box) { fill(box, errorLine(actionKey, err)); box.hidden = false; }
  }

  function fieldError(input) {
    var e = h('div', { class: 'field-error', id: input.id + '-error', 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', e.id);
    return e;
  }

  function setFieldError(input, key, vars, serverMsg) {
    input.setAttribute('aria-invalid', 'true');
    var e = $(input.id + '-error');
    if (e) fill(e, key ? h('span', { i18n: key, vars: vars }) : null, serverMsg ? h('span', { text: serverMsg }) : null);
  }

  function clearErrors(form) {
    var bad = form.querySelectorAll('[aria-invalid]');
    for (var i = 0; i < bad.length; i++) bad[i].removeAttribute('aria-invalid');
    var lines = form.querySelectorAll('.field-error');
    for (var j = 0; j < lines.length; j++) empty(lines[j]);
    var boxes = form.querySelectorAll('.form-error');
    for (var k = 0; k < boxes.length; k++) { empty(boxes[k]); boxes[k].hidden = true; }
  }

  function formError(form, node) {
    var box = form.querySelector('.form-error');
    if (box) { fill(box, node); box.hidden = false; }
  }

  function labelled(key, input, extra) {
    return h('div', { class: 'field' }, h('label', { class: 'label', for: input.id, i18n: key }),
      extra ? h('div', { class: 'input-row' }, input, extra) : input, fieldError(input));
  }

  /** Runs fn (→ promise) with the button disabled; a second click is ignored until it settles. */
  function busy(button, fn) {
    if (button.disabled) return Promise.resolve();
    button.disabled = true;
    return Promise.resolve().then(fn).then(function () { button.disabled = false; }, function () { button.disabled = false; });
  }

  /* ======================================================================================
   * 3. Player
   * ==================================================================================== */

  var SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
  var player = null;       // #player
  var sidePlayer = null;   // #player-side
  var els = {};            // player parts: note, sideNote, timeline, progress, marks, preview, timeNow, playBtn

  /** The sources from a /media answer: the composed review video first, then each registered source. */
  function buildSources(media) {
    var list = [];
    if (media && media.review && media.review.url) {
      list.push({ id: 'review', labelKey: 'player.src.review', kind: 'video', url: media.review.url, offset_ms: 0, duration_ms: null });
    }
    arr(media && media.sources).forEach(function (x) {
      if (!x || !x.url || x.id == null) return;
      list.push({ id: String(x.id), label: String(x.label || x.id), kind: x.kind === 'audio' ? 'audio' : 'video',
        url: x.url, offset_ms: +x.offset_ms || 0, duration_ms: x.duration_ms == null ? null : +x.duration_ms });
    });
    return list;
  }

  function sourceById(id) {
    for (var i = 0; i < state.sources.length; i++) if (state.sources[i].id === id) return state.sources[i];
    return null;
  }

  /** Whether lesson time ms lies inside the source's span. */
  function inSpan(src, ms) {
    if (!src) return false;
    var local = ms - src.offset_ms;
    if (local < 0) return false;
    return src.duration_ms == null || local <= src.duration_ms;
  }

  /** The lesson time now: the main video's time on the lesson timeline, else the held time. */
  function lessonNow() {
    // While the main video shows a picture (the "no picture" note hidden) its clock is the lesson's.
    if (player && state.cur && els.note && els.note.hidden && player.readyState > 0 && player.getAttribute('data-loading') !== '1') {
      return clamp(player.currentTime * 1000 + state.cur.offset_ms, 0, state.durationMs || Infinity);
    }
    return state.heldMs;
  }

  function setNote(noteEl, src, ms) {
    var show = !!src && !inSpan(src, ms);
    noteEl.hidden = !show;
    if (show) {
      var from = src.offset_ms;
      var to = src.duration_ms == null ? state.durationMs : src.offset_ms + src.duration_ms;
      fill(noteEl.querySelector('.note-hint'), h('span', { i18n: 'player.noPictureHint', vars: { from: fmtMs(from), to: fmtMs(to) } }));
    }
    return show;
  }

  /** Loads src into a video element and positions it at lesson time ms (play if asked). */
  function loadInto(video, src, ms, play) {
    video.setAttribute('data-loading', '1');
    video.setAttribute('data-source', src.id);
    var done = false;
    function ready() {
      if (done) return;
      done = true;
      video.removeEventListener('loadedmetadata', ready);
      video.removeAttribute('data-loading');
      // Seeks made while loading win: the main player goes to the held time, the side one follows.
      ms = video === player ? state.heldMs : lessonNow();
      var local = (ms - src.offset_ms) / 1000;
      try { video.currentTime = Math.max(0, local); } catch (e) { /* not seekable yet */ }
      video.playbackRate = state.rate;
      video.defaultPlaybackRate = state.rate;
      if (play && inSpan(src, ms)) video.play().catch(function () { /* autoplay refused */ });
      if (video === player) syncSide(true);
    }
    video.addEventListener('loadedmetadata', ready);
    video.src = src.url;
    video.load();
  }

  /** Seeks the lesson to ms (both players), keeping the play state. */
  function seekLesson(ms) {
    if (!player) return;
    ms = clamp(Math.round(ms), 0, state.durationMs || Math.max(ms, 0));
    state.heldMs = ms;
    var out = setNote(els.note, state.cur, ms);
    if (state.cur && player.readyState > 0 && player.getAttribute('data-loading') !== '1') {
      var local = (ms - state.cur.offset_ms) / 1000;
      if (out) {
        player.pause();
        player.currentTime = clamp(local, 0, player.duration || 0);
      } else {
        player.currentTime = Math.max(0, local);
      }
    }
    syncSide(true);
    renderClock();
  }

  function skip(deltaMs) { seekLesson(lessonNow() + deltaMs); }

  function togglePlay() {
    if (!player || !state.cur) return;
    if (!inSpan(state.cur, lessonNow())) return;
    if (player.paused) player.play().catch(function () { /* refused */ });
    else player.pause();
  }

  function setRate(r) {
    state.rate = r;
    if (player) { player.playbackRate = r; player.defaultPlaybackRate = r; }
    if (sidePlayer) sidePlayer.playbackRate = r;
    if (els.speed) els.speed.value = String(r);
  }

  function stepRate(dir) {
    var i = SPEEDS.indexOf(state.rate);
    if (i < 0) i = SPEEDS.indexOf(1);
    setRate(SPEEDS[clamp(i + dir, 0, SPEEDS.length - 1)]);
  }

  /** Shows another source on the main player at the same lesson time. */
  function switchSource(id) {
    var src = sourceById(id);
    if (!src || !player) return;
    var ms = lessonNow();
    var playing = !player.paused;
    state.cur = src;
    state.heldMs = ms;
    markSourceButtons();
    setNote(els.note, src, ms);
    player.poster = src.id === 'review' && state.media && state.media.poster_url ? state.media.poster_url : '';
    player.classList.toggle('audio-only', src.kind === 'audio');
    loadInto(player, src, ms, playing);
  }

  function markSourceButtons() {
    var bs = els.switcher ? els.switcher.querySelectorAll('button[data-source]') : [];
    for (var i = 0; i < bs.length; i++) {
      bs[i].setAttribute('aria-pressed', state.cur && bs[i].getAttribute('data-source') === state.cur.id ? 'true' : 'false');
    }
  }

  /* ---- Side by side: the second video follows the main one ---- */

  function setSide(id) {
    var src = id ? sourceById(id) : null;
    state.side = src;
    els.sideWrap.hidden = !src;
    els.videos.classList.toggle('side-by-side', !!src);
    els.sideToggle.setAttribute('aria-pressed', src ? 'true' : 'false');
    els.sideSel.hidden = !src;
    if (!src) { sidePlayer.pause(); sidePlayer.removeAttribute('src'); sidePlayer.load(); return; }
    els.sideSel.value = src.id;
    loadInto(sidePlayer, src, lessonNow(), !player.paused);
  }

  /** Keeps the side player on the main one's time, rate and play state (re-seek on drift > 0.3 s). */
  function syncSide(force) {
    var src = state.side;
    if (!src || !sidePlayer || sidePlayer.getAttribute('data-loading') === '1') return;
    var ms = lessonNow();
    var out = setNote(els.sideNote, src, ms);
    if (sidePlayer.readyState === 0) return;
    if (sidePlayer.playbackRate !== player.playbackRate) sidePlayer.playbackRate = player.playbackRate;
    var want = (ms - src.offset_ms) / 1000;
    if (out) {
      if (!sidePlayer.paused) sidePlayer.pause();
      return;
    }
    if (force || Math.abs(sidePlayer.currentTime - want) > 0.3) {
      try { sidePlayer.currentTime = Math.max(0, want); } catch (e) { /* not seekable yet */ }
    }
    var mainPlaying = !player.paused && !player.ended;
    if (mainPlaying && sidePlayer.paused) sidePlayer.play().catch(function () { /* refused */ });
    if (!mainPlaying && !sidePlayer.paused) sidePlayer.pause();
  }

  /* ---- Expired signed URLs: refetch /media and resume at the same time ---- */

  var lastRefresh = 0;

  function onVideoError(video) {
    if (!video.getAttribute('src')) return;
    if (Date.now() - lastRefresh < 10000) return; // one refresh at a time; a real failure stays visible
    lastRefresh = Date.now();
    var ms = lessonNow();
    state.heldMs = ms;
    var playing = !player.paused || player.getAttribute('data-was-playing') === '1';
    toast('ok', h('span', { i18n: 'player.refreshing' }));
    api('GET', lessonPath('/media')).then(function (media) {
      state.media = media;
      var fresh = buildSources(media);
      fresh.forEach(function (f) {
        var old = sourceById(f.id);
        if (old) old.url = f.url;
      });
      if (state.cur) loadInto(player, state.cur, ms, playing);
      if (state.side) loadInto(sidePlayer, state.side, ms, playing);
      if (state.media && state.media.storyboard && state.media.storyboard.url && els.preview) {
        els.preview.style.backgroundImage = 'url("' + state.media.storyboard.url + '")';
      }
    }, function (err) { notifyError('player.mediaFailed', err); });
  }

  /* ---- Timeline: progress, comment marks, storyboard previews ---- */

  function renderClock() {
    if (!els.timeNow) return;
    var ms = lessonNow();
    els.timeNow.textContent = fmtMs(ms) + ' / ' + fmtMs(state.durationMs);
    var f = state.durationMs ? clamp(ms / state.durationMs, 0, 1) : 0;
    els.progress.style.width = (f * 100).toFixed(2) + '%';
    els.timeline.setAttribute('aria-valuenow', String(Math.round(ms / 1000)));
    els.timeline.setAttribute('aria-valuemax', String(Math.round(state.durationMs / 1000)));
    els.timeline.setAttribute('aria-valuetext', fmtMs(ms));
    if (els.playBtn) setKey(els.playBtn, player && !player.paused ? 'player.pause' : 'player.play');
  }

  function timelineMs(ev) {
    var r = els.timeline.getBoundingClientRect();
    return clamp((ev.clientX - r.left) / Math.max(1, r.width), 0, 1) * state.durationMs;
  }

  function showPreview(ev) {
    var sb = state.media && state.media.storyboard;
    var ms = timelineMs(ev);
    var r = els.timeline.getBoundingClientRect();
    els.hoverTime.textContent = fmtMs(ms);
    els.hover.hidden = false;
    var x = clamp(ev.clientX - r.left, 0, r.width);
    if (sb && sb.url && +sb.interval_ms > 0 && +sb.columns > 0 && +sb.count > 0) {
      var idx = clamp(Math.floor(ms / +sb.interval_ms), 0, +sb.count - 1);
      var col = idx % +sb.columns;
      var row = Math.floor(idx / +sb.columns);
      var w = +sb.tile_width || 160;
      var ht = +sb.tile_height || 90;
      els.preview.hidden = false;
      els.preview.style.width = w + 'px';
      els.preview.style.height = ht + 'px';
      els.preview.style.backgroundImage = 'url("' + sb.url + '")';
      els.preview.style.backgroundPosition = (-col * w) + 'px ' + (-row * ht) + 'px';
      els.hover.style.left = clamp(x - w / 2, 0, Math.max(0, r.width - w)) + 'px';
    } else {
      els.preview.hidden = true;
      els.hover.style.left = clamp(x - 30, 0, Math.max(0, r.width - 60)) + 'px';
    }
  }

  function renderMarks() {
    if (!els.marks) return;
    empty(els.marks);
    var dur = state.durationMs || 1;
    state.comments.forEach(function (c) {
      var cat = catKey(c.category);
      var mark = h('button', {
        type: 'button', class: 'timeline-mark cat-' + cat,
        data: { 'at-ms': c.at_ms, category: cat, id: c.id },
        title: fmtMs(c.at_ms) + ' ' + t('cat.' + cat) + '：' + String(c.body || '').slice(0, 80),
        on: { click: function (ev) { ev.stopPropagation(); seekLesson(+c.at_ms); } }
      });
      mark.style.left = clamp(+c.at_ms / dur * 100, 0, 100).toFixed(3) + '%';
      els.marks.appendChild(mark);
    });
  }

  /* ---- Keyboard shortcuts ---- */

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (isTyping(ev.target)) {
      if (ev.key === 'Escape' && ev.target.blur) ev.target.blur();
      return;
    }
    var k = ev.key;
    var handled = true;
    if (k === ' ' || k === 'Spacebar') togglePlay();
    else if (k === 'ArrowLeft') skip(-5000);
    else if (k === 'ArrowRight') skip(5000);
    else if (k === 'j' || k === 'J') skip(-10000);
    else if (k === 'l' || k === 'L') skip(10000);
    else if (k === '[') stepRate(-1);
    else if (k === ']') stepRate(1);
    else if (k === 'c' || k === 'C') startComment();
    else if (k === '?') toggleHelp();
    else if (k === 'Escape') toggleHelp(false);
    else if (/^[1-9]$/.test(k) && state.sources[+k - 1]) switchSource(state.sources[+k - 1].id);
    else handled = false;
    if (handled) ev.preventDefault();
  }

  function toggleHelp(force) {
    var panel = $('help-panel');
    if (!panel) return;
    panel.hidden = typeof force === 'boolean' ? !force : !panel.hidden;
    $('help-toggle').setAttribute('aria-expanded', panel.hidden ? 'false' : 'true');
  }

  function helpPanel() {
    return h('div', { id: 'help-panel', class: 'panel help-panel no-print', role: 'dialog', hidden: true },
      h('h2', { i18n: 'help.title' }),
      h('ul', { class: 'plain-list' }, ['space', 'arrows', 'jl', 'brackets', 'c', 'digits', 'q'].map(function (k) {
        return h('li', { i18n: 'help.' + k });
      })),
      h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.close', on: { click: function () { toggleHelp(false); } } }));
  }

  function buildPlayer(box) {
    if (!state.sources.length) {
      append(box, h('p', { class: 'notice', i18n: 'player.noMedia' }));
      return;
    }
    state.cur = state.sources[0];
    player = h('video', { id: 'player', class: 'player-video', preload: 'metadata', playsinline: true });
    player.controls = false;
    sidePlayer = h('video', { id: 'player-side', class: 'player-video', preload: 'metadata', playsinline: true });
    sidePlayer.muted = true;
    function note(id) {
      return h('div', { class: 'no-picture', id: id, hidden: true },
        h('strong', { i18n: 'player.noPicture' }), h('div', { class: 'note-hint' }));
    }
    els.note = note('no-picture');
    var jump = h('button', { type: 'button', class: 'btn btn-small', i18n: 'player.jumpToSpan', on: { click: function () {
      if (state.cur) seekLesson(state.cur.offset_ms);
    } } });
    els.note.appendChild(jump);
    els.sideNote = note('no-picture-side');
    var mainWrap = h('div', { class: 'video-wrap' }, player, els.note);
    mainWrap.addEventListener('click', function (ev) { if (ev.target === player) togglePlay(); });
    els.sideWrap = h('div', { class: 'video-wrap side-wrap', hidden: true }, sidePlayer, els.sideNote);
    els.videos = h('div', { class: 'videos' }, mainWrap, els.sideWrap);

    els.switcher = h('div', { id: 'source-switcher', class: 'source-switcher', role: 'group', i18nAttr: { 'aria-label': 'player.sources' } },
      state.sources.map(function (src, i) {
        return h('button', {
          type: 'button', class: 'btn btn-small src-btn', data: { source: src.id, kind: src.kind },
          title: String(i + 1), on: { click: function () { switchSource(src.id); } }
        }, h('span', { class: 'src-key', text: (i < 9 ? i + 1 : '') + ' ' }),
          src.labelKey ? h('span', { i18n: src.labelKey }) : h('span', { text: src.label }),
          src.kind === 'audio' ? h('span', { i18n: 'player.audioOnly' }) : null);
      }));

    els.playBtn = h('button', { type: 'button', class: 'btn btn-primary', id: 'play-toggle', i18n: 'player.play', on: { click: togglePlay } });
    var back = h('button', { type: 'button', class: 'btn btn-small', id: 'skip-back', i18n: 'player.back5', on: { click: function () { skip(-5000); } } });
    var fwd = h('button', { type: 'button', class: 'btn btn-small', id: 'skip-fwd', i18n: 'player.fwd5', on: { click: function () { skip(5000); } } });
    els.speed = h('select', { id: 'speed', class: 'input input-small', i18nAttr: { 'aria-label': 'player.speed' } },
      SPEEDS.map(function (r) { return h('option', { value: String(r), text: r + '×' }); }));
    els.speed.value = '1';
    els.speed.addEventListener('change', function () { setRate(parseFloat(els.speed.value) || 1); });
    els.sideSel = h('select', { id: 'side-source', class: 'input input-small', hidden: true, i18nAttr: { 'aria-label': 'player.sideSource' } },
      state.sources.map(function (src) {
        return src.labelKey ? h('option', { value: src.id, i18n: src.labelKey }) : h('option', { value: src.id, text: src.label });
      }));
    els.sideSel.addEventListener('change', function () { if (state.side) setSide(els.sideSel.value); });
    els.sideToggle = h('button', { type: 'button', class: 'btn btn-small', id: 'side-toggle', 'aria-pressed': 'false', i18n: 'player.side', on: { click: function () {
      if (state.side) { setSide(null); return; }
      // The second picture: the one chosen, else the first source that is not on the main player.
      var pick = els.sideSel.value && els.sideSel.value !== state.cur.id ? els.sideSel.value : null;
      if (!pick) state.sources.some(function (x) { if (x.id !== state.cur.id && x.kind === 'video') { pick = x.id; return true; } return false; });
      setSide(pick || state.sources[0].id);
    } } });
    els.timeNow = h('span', { id: 'time-now', class: 'time-now' });
    var controls = h('div', { class: 'player-controls' }, els.playBtn, back, fwd,
      h('label', { class: 'inline-label', for: 'speed', i18n: 'player.speed' }), els.speed,
      els.sideToggle, els.sideSel, els.timeNow);

    els.progress = h('div', { class: 'timeline-progress' });
    els.marks = h('div', { class: 'timeline-marks' });
    els.preview = h('div', { class: 'storyboard-tile', hidden: true });
    els.hoverTime = h('div', { class: 'hover-time' });
    els.hover = h('div', { class: 'timeline-hover', hidden: true }, els.preview, els.hoverTime);
    els.timeline = h('div', { id: 'timeline', class: 'timeline', role: 'slider', tabindex: '0', 'aria-valuemin': '0',
      i18nAttr: { 'aria-label': 'player.timeline', title: 'player.timeline' } }, els.progress, els.marks, els.hover);
    els.timeline.addEventListener('click', function (ev) { seekLesson(timelineMs(ev)); });
    els.timeline.addEventListener('mousemove', showPreview);
    els.timeline.addEventListener('mouseleave', function () { els.hover.hidden = true; });

    append(box, els.switcher, els.videos, els.timeline, controls);

    player.addEventListener('timeupdate', function () {
      if (player.getAttribute('data-loading') !== '1' && state.cur && els.note.hidden && inSpan(state.cur, player.currentTime * 1000 + state.cur.offset_ms)) {
        state.heldMs = player.currentTime * 1000 + state.cur.offset_ms;
      }
      syncSide(false);
      renderClock();
    });
    ['play', 'pause', 'seeked', 'ratechange'].forEach(function (ev) {
      player.addEventListener(ev, function () {
        player.setAttribute('data-was-playing', player.paused ? '0' : '1');
        if (ev === 'ratechange' && player.playbackRate !== state.rate) setRate(player.playbackRate);
        syncSide(ev === 'seeked');
        renderClock();
      });
    });
    player.addEventListener('loadedmetadata', function () {
      if (state.cur && state.cur.id === 'review' && !state.durationMs && isFinite(player.duration)) {
        state.durationMs = Math.round(player.duration * 1000);
        renderMarks();
      }
    });
    player.addEventListener('error', function () { onVideoError(player); });
    sidePlayer.addEventListener('error', function () { onVideoError(sidePlayer); });
    // A coarse safety net for the side player (timeupdate fires only ~4 times a second).
    setInterval(function () { syncSide(false); }, 500);

    if (state.media && state.media.poster_url) player.poster = state.media.poster_url;
    markSourceButtons();
    loadInto(player, state.cur, 0, false);
    renderClock();
  }

  /* ======================================================================================
   * 4. Comments (旁评)
   * ==================================================================================== */

  var CATS = ['highlight', 'issue', 'suggestion', 'question', 'other'];
  var CAT_ZH = { '亮点': 'highlight', '问题': 'issue', '建议': 'suggestion', '提问': 'question', '其他': 'other' };

  /** The category's key whether the server stores the key or the Chinese word. */
  function catKey(c) { return CATS.indexOf(c) >= 0 ? c : (CAT_ZH[c] || 'other'); }

  var commentAtMs = null; // the time captured by C (or the textarea's first focus), until submitted

  function startComment() {
    var text = $('comment-text');
    if (!text) return;
    commentAtMs = Math.round(lessonNow());
    if (player && !player.paused) player.pause();
    showCommentAt();
    text.focus();
  }

  function showCommentAt() {
    var at = $('comment-at');
    if (at) setKey(at, 'comments.at', { time: fmtMs(commentAtMs == null ? lessonNow() : commentAtMs) });
  }

  function buildComments(box) {
    var count = h('span', { class: 'muted', id: 'comments-count' });
    var list = h('ol', { id: 'comment-list', class: 'comment-list' });
    var formBox = h('div', { class: 'no-print' });
    append(box, h('div', { class: 'panel-head' }, h('h2', { i18n: 'comments.title' }), count), formBox, list);

    if (state.mayReview) {
      var cat = h('select', { id: 'comment-category', name: 'category', class: 'input input-small' },
        CATS.map(function (c) { return h('option', { value: c, i18n: 'cat.' + c }); }));
      var text = h('textarea', { id: 'comment-text', name: 'body', class: 'input', rows: '3', maxlength: '2000' });
      var submit = h('button', { type: 'submit', id: 'comment-submit', class: 'btn btn-primary', i18n: 'comments.submit' });
      var at = h('span', { id: 'comment-at', class: 'comment-at' });
      var now = h('button', { type: 'button', class: 'btn btn-small', id: 'comment-now', i18n: 'comments.useNow', on: { click: function () {
        commentAtMs = Math.round(lessonNow());
        showCommentAt();
      } } });
      var form = h('form', { id: 'comment-form', class: 'form comment-form', novalidate: true },
        h('div', { class: 'comment-form-row' },
          h('label', { class: 'inline-label', for: 'comment-category', i18n: 'comments.category' }), cat, at, now),
        h('label', { class: 'label sr-only', for: 'comment-text', i18n: 'comments.text' }), text, fieldError(text),
        h('div', { class: 'form-error', role: 'alert', hidden: true }),
        h('div', { class: 'form-actions' }, submit));
      text.addEventListener('focus', function () { if (commentAtMs == null && !text.value) { commentAtMs = Math.round(lessonNow()); showCommentAt(); } });
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        clearErrors(form);
        var body = text.value.trim();
        if (!body || body.length > 2000) { setFieldError(text, 'comments.needText'); text.focus(); return; }
        var atMs = commentAtMs == null ? Math.round(lessonNow()) : commentAtMs;
        var payload = { at_ms: atMs, category: cat.value, body: body };
        if (state.cur && state.cur.id !== 'review') payload.source_id = state.cur.id;
        busy(submit, function () {
          return api('POST', lessonPath('/comments'), payload).then(function (c) {
            text.value = '';
            commentAtMs = null;
            showCommentAt();
            toastOk('comments.added');
            if (c && c.id != null) {
              state.comments.push(c);
              state.comments.sort(function (a, b) { return a.at_ms - b.at_ms; });
              renderComments();
            } else {
              return loadComments();
            }
          }, function (err) {
            if (err.status === 403) { formError(form, h('span', { i18n: 'comments.notAssigned' })); return; }
            if (err.field === 'at_ms' || err.field === 'body' || err.field === 'category') {
              setFieldError(err.field === 'category' ? cat : text, null, null, err.serverMessage || t('err.code.invalid'));
            }
            formError(form, errorLine('comments.addFailed', err));
          });
        });
      });
      append(formBox, form);
      setInterval(function () { if (commentAtMs == null && document.activeElement !== text) showCommentAt(); }, 1000);
      showCommentAt();
    }
    renderComments();
  }

  function renderComments() {
    var list = $('comment-list');
    if (!list) return;
    empty(list);
    setKey($('comments-count'), 'comments.count', { n: state.comments.length });
    if (!state.comments.length) append(list, h('li', { class: 'muted empty-item', i18n: 'comments.none' }));
    var myId = state.me && state.me.id;
    state.comments.forEach(function (c) {
      var cat = catKey(c.category);
      var author = c.author && (c.author.name || c.author.display_name) || '';
      var del = null;
      if (c.author && c.author.id != null && c.author.id === myId) {
        del = h('button', { type: 'button', class: 'btn btn-small btn-danger no-print', data: { del: c.id }, i18n: 'common.delete', on: { click: function () {
          busy(del, function () {
            return api('DELETE', lessonPath('/comments/' + enc(c.id))).then(function () {
              state.comments = state.comments.filter(function (x) { return x !== c; });
              renderComments();
            }, function (err) { notifyError('comments.deleteFailed', err); });
          });
        } } });
      }
      append(list, h('li', { class: 'comment-item cat-' + cat, data: { 'at-ms': c.at_ms, id: c.id, category: cat } },
        h('div', { class: 'comment-meta' },
          h('button', { type: 'button', class: 'comment-time', text: fmtMs(c.at_ms), i18nAttr: { title: 'comments.seek' },
            vars: { time: fmtMs(c.at_ms) }, on: { click: function () { seekLesson(+c.at_ms); } } }),
          h('span', { class: 'chip cat-chip cat-' + cat, i18n: 'cat.' + cat }),
          h('span', { class: 'comment-author', text: author }), del),
        h('div', { class: 'comment-body', text: String(c.body || '') })));
    });
    renderMarks();
  }

  function loadComments() {
    return api('GET', lessonPath('/comments')).then(function (list) {
      state.comments = arr(list).slice().sort(function (a, b) { return a.at_ms - b.at_ms; });
      renderComments();
    });
  }

  /* ======================================================================================
   * 5. Score sheets (评分表, 总评) and the final score
   * ==================================================================================== */

  var EVAL = ['strengths', 'weaknesses', 'suggestions', 'summary'];

  function bandOf(total, bands) {
    var list = arr(bands).slice().sort(function (a, b) { return b.min - a.min; });
    for (var i = 0; i < list.length; i++) if (total >= list[i].min) return list[i].label;
    return '';
  }

  function currentRubric() {
    var r = state.reviews || {};
    var mine = myReview();
    var want = mine ? mine.rubric_id : null;
    var found = null;
    if (want != null) state.rubrics.forEach(function (x) { if (x.id === want) found = x; });
    if (!found && r.rubric && arr(r.rubric.items).length) found = r.rubric;
    return found || state.rubrics[0] || null;
  }

  function myReview() {
    var myId = state.me && state.me.id;
    var found = null;
    arr(state.reviews && state.reviews.reviews).forEach(function (x) { if (x.reviewer && x.reviewer.id === myId) found = x; });
    return found;
  }

  function buildMySheet(box) {
    empty(box);
    if (!state.mayReview) { box.hidden = true; return; }
    box.hidden = false;
    var rubric = currentRubric();
    append(box, h('h2', { i18n: 'review.mine' }));
    if (!rubric) { append(box, h('p', { class: 'muted', i18n: 'review.noRubric' })); return; }
    var mine = myReview();
    var items = arr(rubric.items);
    var total = h('strong', { id: 'review-total', text: '0' });
    var band = h('span', { id: 'review-band', class: 'band' });
    var rows = items.map(function (it) {
      var input = h('input', { type: 'number', class: 'input input-small score-input', id: 'score-' + it.key, name: 'score-' + it.key,
        min: '0', max: String(it.weight), step: '1', inputmode: 'numeric', data: { key: it.key, weight: it.weight } });
      if (mine && mine.scores && mine.scores[it.key] != null) input.value = String(mine.scores[it.key]);
      input.addEventListener('input', recalc);
      return h('tr', null, h('td', null, h('label', { for: input.id, text: String(it.name || it.key) })),
        h('td', { class: 'num', text: String(it.weight) }), h('td', null, input, fieldError(input)));
    });
    var scoresErr = h('div', { class: 'field-error', id: 'rubric-scores-error', 'aria-live': 'polite' });
    var evalInputs = {};
    var evalFields = EVAL.map(function (k) {
      var ta = h('textarea', { id: 'review-' + k, name: k, class: 'input', rows: k === 'summary' ? '4' : '3', maxlength: '4000' });
      if (mine && mine.evaluation && mine.evaluation[k] != null) ta.value = String(mine.evaluation[k]);
      evalInputs[k] = ta;
      return labelled('review.' + k, ta);
    });
    var save = h('button', { type: 'submit', id: 'review-save', class: 'btn btn-primary', i18n: 'review.save' });
    var form = h('form', { id: 'rubric-form', class: 'form rubric-form', novalidate: true, data: { rubric: rubric.id } },
      h('div', { class: 'muted', i18n: 'review.rubric', vars: { name: String(rubric.name || '') } }),
      h('table', { class: 'table rubric-table' },
        h('thead', null, h('tr', null, h('th', { i18n: 'review.item' }), h('th', { class: 'num', i18n: 'review.weight' }), h('th', { i18n: 'review.points' }))),
        h('tbody', null, rows),
        h('tfoot', null, h('tr', null, h('th', { i18n: 'review.total' }), h('td', { class: 'num', text: '100' }), h('td', null, total, ' ', band)))),
      scoresErr, evalFields,
      h('div', { class: 'form-error', role: 'alert', hidden: true }),
      h('div', { class: 'form-actions' }, save));

    function recalc() {
      var sum = 0;
      items.forEach(function (it) {
        var v = parseFloat(form.querySelector('input[name="score-' + it.key + '"]').value);
        if (!isNaN(v)) sum += v;
      });
      var any = false;
      items.forEach(function (it) { if (form.querySelector('input[name="score-' + it.key + '"]').value.trim() !== '') any = true; });
      total.textContent = String(Math.round(sum * 10) / 10);
      band.textContent = any ? bandOf(sum, rubric.bands) : '';
    }

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var scores = {};
      var bad = null;
      items.forEach(function (it) {
        var input = form.querySelector('input[name="score-' + it.key + '"]');
        var raw = input.value.trim();
        var v = Number(raw);
        if (raw === '' || !isFinite(v) || Math.floor(v) !== v || v < 0 || v > it.weight) {
          setFieldError(input, 'review.badScore', { max: it.weight });
          bad = bad || input;
        } else scores[it.key] = v;
      });
      if (bad) { bad.focus(); return; }
      var evaluation = {};
      EVAL.forEach(function (k) { evaluation[k] = evalInputs[k].value.trim(); });
      busy(save, function () {
        return api('PUT', lessonPath('/my-review'), { rubric_id: rubric.id, scores: scores, evaluation: evaluation }).then(function () {
          toastOk('review.saved');
          return loadReviews();
        }, function (err) {
          var f = err.field || '';
          var target = null;
          if (f === 'scores' || f.indexOf('scores') === 0) {
            var key = f.split('.')[1];
            target = key ? form.querySelector('input[name="score-' + key + '"]') : null;
            if (!target) fill(scoresErr, h('span', { text: err.serverMessage || t('err.code.invalid') }));
          } else if (f) {
            var k = f.replace(/^evaluation\.?/, '') || 'summary';
            target = evalInputs[k] || null;
          }
          if (target) { setFieldError(target, null, null, err.serverMessage || t('err.code.invalid')); target.focus(); }
          formError(form, errorLine('review.saveFailed', err));
        });
      });
    });
    append(box, form);
    recalc();
  }

  function renderAllReviews() {
    var box = $('reviews-list');
    var finalBox = $('final-score');
    if (!box || !finalBox) return;
    var r = state.reviews || {};
    var fin = r.final;
    if (fin && fin.mean != null) {
      var mean = Math.round(+fin.mean * 10) / 10;
      finalBox.setAttribute('data-score', String(fin.mean));
      fill(finalBox, h('span', { i18n: 'review.final', vars: { n: fin.count } }), ' ',
        h('strong', { class: 'final-number', text: String(mean) }), ' ', h('span', { class: 'band', text: String(fin.band || '') }));
    } else {
      finalBox.setAttribute('data-score', '');
      fill(finalBox, h('span', { i18n: 'review.finalNone' }));
    }
    empty(box);
    var list = arr(r.reviews);
    if (!list.length) { append(box, h('p', { class: 'muted', i18n: 'review.none' })); return; }
    var rubricById = {};
    state.rubrics.forEach(function (x) { rubricById[x.id] = x; });
    if (r.rubric && r.rubric.id != null) rubricById[r.rubric.id] = r.rubric;
    list.forEach(function (rv) {
      var rub = rubricById[rv.rubric_id] || r.rubric || {};
      var names = {};
      arr(rub.items).forEach(function (it) { names[it.key] = it; });
      var keys = arr(rub.items).length ? arr(rub.items).map(function (it) { return it.key; }) : Object.keys(rv.scores || {});
      var ev = rv.evaluation || {};
      append(box, h('article', { class: 'review-card', data: { reviewer: rv.reviewer && rv.reviewer.id, total: rv.total } },
        h('div', { class: 'review-card-head' },
          h('strong', { i18n: 'review.by', vars: { name: String(rv.reviewer && rv.reviewer.name || '') } }),
          h('span', { class: 'review-card-total', text: String(rv.total) }), h('span', { class: 'band', text: String(rv.band || '') }),
          rv.updated_at ? h('span', { class: 'muted small', i18n: 'review.updated', vars: { time: fmtInstant(rv.updated_at) } }) : null),
        h('table', { class: 'table score-table' }, h('tbody', null, keys.map(function (k) {
          var it = names[k] || { name: k, weight: '' };
          return h('tr', null, h('td', { text: String(it.name || k) }),
            h('td', { class: 'num', text: String(rv.scores && rv.scores[k] != null ? rv.scores[k] : '') + (it.weight !== '' ? ' / ' + it.weight : '') }));
        }))),
        EVAL.map(function (k) {
          if (!ev[k]) return null;
          return h('div', { class: 'eval-line' }, h('span', { class: 'eval-k', i18n: 'review.' + k }), h('p', { class: 'eval-v', text: String(ev[k]) }));
        })));
    });
  }

  function loadReviews() {
    return api('GET', lessonPath('/reviews')).then(function (r) {
      state.reviews = r || {};
      renderAllReviews();
      buildMySheet($('my-sheet'));
    });
  }

  /* ======================================================================================
   * 6. S-T analysis
   * ==================================================================================== */

  var ST_TYPES = ['practice', 'lecture', 'dialogue', 'mixed'];
  var stStrip = null;     // codes being corrected
  var showCorrectedCurve = true;

  function codesOf(res) {
    if (!res) return [];
    var sm = res.samples;
    if (typeof sm === 'string') return sm.split('');
    return arr(sm).map(function (c) { return String(c); });
  }

  function stType(res) { return res && ST_TYPES.indexOf(res.lesson_type) >= 0 ? res.lesson_type : 'mixed'; }

  function num(x, d) { return x == null || isNaN(+x) ? '—' : (+x).toFixed(d); }

  /** The S-T curve: x = cumulative S, y = cumulative T, both axes to N, the diagonal, clickable points. */
  function stChart(auto, corr) {
    var size = 340;
    var pad0 = 44;
    var n = Math.max(1, +auto.n || codesOf(auto).length || 1);
    var span = size - pad0 - 12;
    function X(v) { return pad0 + v / n * span; }
    function Y(v) { return size - pad0 - v / n * span; }
    var svg = s('svg', { id: 'st-chart', class: 'st-chart', viewBox: '0 0 ' + size + ' ' + size, role: 'img', width: size, height: size });
    var title = s('title');
    title.textContent = t('st.curve');
    svg.appendChild(title);
    append(svg,
      s('rect', { x: pad0, y: 12, width: span, height: span, class: 'st-frame' }),
      s('line', { x1: X(0), y1: Y(0), x2: X(n), y2: Y(n), class: 'st-diagonal' }),
      s('line', { x1: X(0), y1: Y(0), x2: X(n), y2: Y(0), class: 'st-axis' }),
      s('line', { x1: X(0), y1: Y(0), x2: X(0), y2: Y(n), class: 'st-axis' }));
    var tx = s('text', { x: X(n / 2), y: size - 10, class: 'st-label', 'text-anchor': 'middle' });
    tx.textContent = t('st.axisS');
    var ty = s('text', { x: 14, y: Y(n / 2), class: 'st-label', 'text-anchor': 'middle', transform: 'rotate(-90 14 ' + Y(n / 2) + ')' });
    ty.textContent = t('st.axisT');
    var t0 = s('text', { x: X(0) - 4, y: Y(0) + 18, class: 'st-tick', 'text-anchor': 'end' });
    t0.textContent = '0';
    var tn1 = s('text', { x: X(n), y: Y(0) + 18, class: 'st-tick', 'text-anchor': 'end' });
    tn1.textContent = String(n);
    var tn2 = s('text', { x: X(0) - 6, y: Y(n) + 12, class: 'st-tick', 'text-anchor': 'end' });
    tn2.textContent = String(n);
    append(svg, tx, ty, t0, tn1, tn2);

    function curve(res, cls, points) {
      var pts = [[0, 0, 0]].concat(arr(res.curve));
      append(svg, s('polyline', { points: pts.map(function (p) { return X(+p[1]) + ',' + Y(+p[2]); }).join(' '), class: 'st-line ' + cls }));
      if (!points) return;
      arr(res.curve).forEach(function (p, i) {
        var c = s('circle', { cx: X(+p[1]), cy: Y(+p[2]), r: 4, class: 'st-point', 'data-t-ms': +p[0], 'data-index': i, tabindex: '0' });
        var tt = s('title');
        tt.textContent = t('st.pointTitle', { i: i + 1, time: fmtMs(+p[0]), s: p[1], t: p[2] });
        c.appendChild(tt);
        c.addEventListener('click', function () { seekLesson(+p[0]); });
        c.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') seekLesson(+p[0]); });
        svg.appendChild(c);
      });
    }
    if (corr && showCorrectedCurve && (+corr.n || 0) === n) curve(corr, 'st-line-corrected', false);
    curve(auto, 'st-line-auto', true);
    return svg;
  }

  /** The Rt–Ch diagram: Rt on x, Ch on y (0..1), the regions, and the lesson's point(s). */
  function rtchDiagram(auto, corr) {
    var size = 240;
    var p0 = 34;
    var span = size - p0 - 10;
    function X(v) { return p0 + clamp(v, 0, 1) * span; }
    function Y(v) { return 10 + (1 - clamp(v, 0, 1)) * span; }
    var svg = s('svg', { id: 'st-rtch', class: 'st-rtch', viewBox: '0 0 ' + size + ' ' + size, role: 'img', width: size, height: size });
    function region(x0, y0, x1, y1, cls, key) {
      append(svg, s('rect', { x: X(x0), y: Y(y1), width: X(x1) - X(x0), height: Y(y0) - Y(y1), class: 'st-region ' + cls }));
      var tx = s('text', { x: (X(x0) + X(x1)) / 2, y: (Y(y0) + Y(y1)) / 2 + 6, class: 'st-region-label', 'text-anchor': 'middle' });
      tx.textContent = t('st.type.' + key);
      svg.appendChild(tx);
    }
    region(0, 0, 0.3, 1, 'region-practice', 'practice');
    region(0.7, 0, 1, 1, 'region-lecture', 'lecture');
    region(0.3, 0.4, 0.7, 1, 'region-dialogue', 'dialogue');
    region(0.3, 0, 0.7, 0.4, 'region-mixed', 'mixed');
    [['0', X(0), Y(0) + 16], ['1', X(1), Y(0) + 16], ['Rt', X(0.5), size - 2]].forEach(function (l) {
      var tx = s('text', { x: l[1], y: l[2], class: 'st-tick', 'text-anchor': 'middle' });
      tx.textContent = l[0];
      svg.appendChild(tx);
    });
    var chl = s('text', { x: 12, y: Y(0.5), class: 'st-tick', 'text-anchor': 'middle', transform: 'rotate(-90 12 ' + Y(0.5) + ')' });
    chl.textContent = 'Ch';
    svg.appendChild(chl);
    if (corr && corr.rt != null) append(svg, s('circle', { cx: X(+corr.rt), cy: Y(+corr.ch), r: 7, class: 'st-dot st-dot-corrected' }));
    if (auto.rt != null) append(svg, s('circle', { cx: X(+auto.rt), cy: Y(+auto.ch), r: 8, class: 'st-dot st-dot-auto', id: 'st-dot' }));
    return svg;
  }

  function sharesBar(shares) {
    if (!shares) return null;
    var parts = ['teacher', 'pupil', 'silence'].map(function (k) {
      var p = Math.round(clamp(+shares[k] || 0, 0, 1) * 1000) / 10;
      return { k: k, p: p };
    });
    var bar = h('div', { class: 'shares-bar', id: 'st-shares' }, parts.map(function (x) {
      var seg = h('div', { class: 'share share-' + x.k, data: { share: x.k, value: x.p } });
      seg.style.width = x.p + '%';
      return seg;
    }));
    var legend = h('div', { class: 'shares-legend' }, parts.map(function (x) {
      return h('span', { class: 'legend legend-' + x.k, i18n: 'st.share.' + x.k, vars: { p: x.p } });
    }));
    return h('div', { class: 'st-shares' }, h('div', { class: 'label', i18n: 'st.shares' }), bar, legend);
  }

  function stFacts(res, prefix) {
    var type = stType(res);
    return h('dl', { class: 'st-facts' },
      h('dt', { i18n: 'st.rt' }), h('dd', { id: prefix + 'rt', text: num(res.rt, 2) }),
      h('dt', { i18n: 'st.ch' }), h('dd', { id: prefix + 'ch', text: num(res.ch, 2) }),
      h('dt', { i18n: 'st.type' }), h('dd', { id: prefix + 'type', class: 'st-type st-type-' + type, data: { type: type }, i18n: 'st.type.' + type }),
      h('dd', { class: 'st-meta muted small', i18n: 'st.meta', vars: {
        variant: { k: 'st.variant.' + (res.variant === 'std' ? 'std' : 'st') }, s: Math.round((+res.interval_ms || 0) / 100) / 10, n: res.n } }));
  }

  function renderSt() {
    var box = $('st-body');
    if (!box) return;
    empty(box);
    var auto = state.st && state.st.automatic;
    var corr = state.st && state.st.corrected;
    if (!auto) {
      append(box, h('p', { class: 'muted', i18n: 'st.none' }));
      if (state.mayReview) append(box, recomputeForm(null));
      return;
    }
    var cols = h('div', { class: 'st-results' },
      h('div', { class: 'st-col st-auto' }, h('h3', { i18n: 'st.automatic' }), stFacts(auto, 'st-')),
      corr ? h('div', { class: 'st-col st-corr', id: 'st-corrected' }, h('h3', { i18n: 'st.corrected' }), stFacts(corr, 'st-corrected-'),
        corr.author ? h('div', { class: 'muted small', i18n: 'st.author', vars: { name: String(corr.author.name || corr.author.display_name || corr.author) } }) : null) : null);
    var chartBox = h('div', { class: 'st-charts' },
      h('figure', { class: 'st-fig' }, stChart(auto, corr), h('figcaption', { i18n: 'st.curve' })),
      h('figure', { class: 'st-fig' }, rtchDiagram(auto, corr), h('figcaption', { i18n: 'st.rtch' })));
    var toggle = null;
    if (corr) {
      var cb = h('input', { type: 'checkbox', id: 'st-show-corrected', checked: showCorrectedCurve });
      cb.addEventListener('change', function () { showCorrectedCurve = cb.checked; renderSt(); });
      toggle = h('label', { class: 'check no-print', for: 'st-show-corrected' }, cb, h('span', { i18n: 'st.showCorrected' }));
    }
    append(box, cols, sharesBar(auto.shares), chartBox, toggle);
    if (state.mayReview) append(box, correctionStrip(auto, corr), recomputeForm(auto));
  }

  function correctionStrip(auto, corr) {
    var variant = auto.variant === 'std' ? 'std' : 'st';
    var base = codesOf(corr && +corr.interval_ms === +auto.interval_ms && codesOf(corr).length === codesOf(auto).length ? corr : auto);
    stStrip = base.slice();
    var order = variant === 'std' ? ['T', 'S', 'D'] : ['T', 'S'];
    var interval = +auto.interval_ms || 0;
    var strip = h('div', { id: 'st-strip', class: 'st-strip', role: 'group', i18nAttr: { 'aria-label': 'st.strip' } });
    function cell(i) {
      var code = stStrip[i];
      var b = h('button', { type: 'button', class: 'st-cell code-' + code + (code !== codesOf(auto)[i] ? ' changed' : ''), data: { index: i, code: code },
        text: code, title: t('st.cellTitle', { time: fmtMs(i * interval), code: code }) });
      b.addEventListener('click', function () {
        var next = order[(order.indexOf(stStrip[i]) + 1) % order.length];
        stStrip[i] = next;
        strip.replaceChild(cell(i), b);
      });
      b.addEventListener('dblclick', function () { seekLesson(i * interval); });
      return b;
    }
    for (var i = 0; i < stStrip.length; i++) strip.appendChild(cell(i));
    var save = h('button', { type: 'button', id: 'st-save-corrected', class: 'btn btn-primary', i18n: 'st.saveCorrected' });
    var reset = h('button', { type: 'button', id: 'st-reset-strip', class: 'btn', i18n: 'st.resetStrip', on: { click: function () {
      var a = codesOf(auto);
      stStrip = a.slice();
      for (var j = 0; j < a.length; j++) strip.replaceChild(cell(j), strip.children[j]);
    } } });
    var err = h('div', { class: 'form-error', role: 'alert', hidden: true });
    save.addEventListener('click', function () {
      err.hidden = true;
      var samples = typeof auto.samples === 'string' ? stStrip.join('') : stStrip.slice();
      busy(save, function () {
        return api('PUT', lessonPath('/st/corrected'), { interval_ms: interval, variant: variant, samples: samples }).then(function () {
          toastOk('st.corrSaved');
          return loadSt();
        }, function (e) { notifyError('st.corrFailed', e, err); });
      });
    });
    return h('div', { class: 'st-correct no-print' }, h('div', { class: 'label', i18n: 'st.strip' }), strip, err,
      h('div', { class: 'form-actions' }, save, reset));
  }

  function recomputeForm(auto) {
    var sec = h('input', { type: 'number', id: 'st-interval', class: 'input input-small', min: '1', max: '300', step: '1',
      value: String(auto ? Math.round((+auto.interval_ms || 30000) / 1000) : 30) });
    var variant = h('select', { id: 'st-variant', class: 'input input-small' },
      h('option', { value: 'st', i18n: 'st.variant.st' }), h('option', { value: 'std', i18n: 'st.variant.std' }));
    variant.value = auto && auto.variant === 'std' ? 'std' : 'st';
    var go = h('button', { type: 'submit', id: 'st-recompute', class: 'btn', i18n: 'st.recompute' });
    var form = h('form', { id: 'st-recompute-form', class: 'form st-recompute no-print', novalidate: true },
      h('div', { class: 'toolbar' },
        h('label', { class: 'inline-label', for: 'st-interval', i18n: 'st.interval' }), sec,
        h('label', { class: 'inline-label', for: 'st-variant', i18n: 'st.variant' }), variant, go),
      fieldError(sec), h('div', { class: 'form-error', role: 'alert', hidden: true }));
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var v = Number(sec.value);
      if (!isFinite(v) || v < 1 || v > 300) { setFieldError(sec, 'st.badInterval'); sec.focus(); return; }
      busy(go, function () {
        return api('POST', lessonPath('/st/recompute'), { interval_ms: Math.round(v * 1000), variant: variant.value }).then(function () {
          toastOk('st.recomputed');
          return loadSt();
        }, function (e) {
          if (e.field) setFieldError(sec, null, null, e.serverMessage || t('err.code.invalid'));
          formError(form, errorLine('st.recomputeFailed', e));
        });
      });
    });
    return form;
  }

  function loadSt() {
    return api('GET', lessonPath('/st')).then(function (r) { state.st = r || {}; renderSt(); });
  }

  /* ======================================================================================
   * 7. Clip export (晒课)
   * ==================================================================================== */

  var clipTimer = null;

  function buildClip(box) {
    var l = state.lesson || {};
    var startIn = h('input', { type: 'text', id: 'clip-start', class: 'input input-small clock-input', inputmode: 'numeric', placeholder: '0:00', value: '0:00' });
    var endIn = h('input', { type: 'text', id: 'clip-end', class: 'input input-small clock-input', inputmode: 'numeric', placeholder: '0:00',
      value: fmtMs(Math.min(state.durationMs, 60 * 60000)) });
    var setStart = h('button', { type: 'button', id: 'clip-set-start', class: 'btn btn-small', i18n: 'clip.setStart', on: { click: function () { startIn.value = fmtMs(lessonNow()); } } });
    var setEnd = h('button', { type: 'button', id: 'clip-set-end', class: 'btn btn-small', i18n: 'clip.setEnd', on: { click: function () { endIn.value = fmtMs(lessonNow()); } } });
    function text(id, value) { return h('input', { type: 'text', id: id, class: 'input', maxlength: '100', value: value || '' }); }
    var fields = {
      course: text('clip-course', l.subject || l.title),
      grade: text('clip-grade', l.grade),
      edition: text('clip-edition', l.edition),
      teacher: text('clip-teacher', l.teacher),
      school: text('clip-school', l.school_name || (l.school && l.school.name) || '')
    };
    var submit = h('button', { type: 'submit', id: 'clip-submit', class: 'btn btn-primary', i18n: 'clip.submit' });
    var progress = h('progress', { id: 'clip-progress', max: '1', value: '0', hidden: true });
    var status = h('span', { id: 'clip-status', class: 'clip-status', 'aria-live': 'polite' });
    var download = h('a', { id: 'clip-download', class: 'btn btn-primary', hidden: true, download: '', i18n: 'clip.download' });
    var form = h('form', { id: 'clip-form', class: 'form clip-form', novalidate: true },
      h('div', { class: 'clip-times' },
        labelled('clip.start', startIn, setStart), labelled('clip.end', endIn, setEnd)),
      h('fieldset', { class: 'fieldset' }, h('legend', { i18n: 'clip.card' }),
        h('div', { class: 'clip-card' }, ['course', 'grade', 'edition', 'teacher', 'school'].map(function (k) { return labelled('clip.' + k, fields[k]); }))),
      h('div', { class: 'form-error', role: 'alert', hidden: true }),
      h('div', { class: 'form-actions' }, submit, progress, status, download));

    function poll(id) {
      if (clipTimer) clearTimeout(clipTimer);
      api('GET', '/api/clips/' + enc(id)).then(function (c) {
        c = c || {};
        show(c);
        if (c.state === 'queued' || c.state === 'rendering') clipTimer = setTimeout(function () { poll(id); }, 1000);
        else submit.disabled = false;
      }, function (err) {
        notifyError('clip.pollFailed', err);
        clipTimer = setTimeout(function () { poll(id); }, 3000);
      });
    }

    function show(c) {
      progress.hidden = false;
      progress.setAttribute('data-state', String(c.state || ''));
      progress.value = c.state === 'done' ? 1 : clamp(+c.progress || 0, 0, 1);
      if (c.state === 'done') setKey(status, 'clip.state.done');
      else if (c.state === 'failed') setKey(status, 'clip.state.failed', { msg: String(c.error || '') });
      else if (c.state === 'rendering') setKey(status, 'clip.state.rendering', { p: Math.round(clamp(+c.progress || 0, 0, 1) * 100) });
      else setKey(status, 'clip.state.queued');
      status.classList.toggle('clip-failed', c.state === 'failed');
      if (c.state === 'done' && c.url) { download.href = c.url; download.hidden = false; } else download.hidden = true;
    }

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearErrors(form);
      var start = parseClock(startIn.value);
      var end = parseClock(endIn.value);
      var bad = null;
      if (start == null) { setFieldError(startIn, 'clip.badTime'); bad = startIn; }
      if (end == null) { setFieldError(endIn, 'clip.badTime'); bad = bad || endIn; }
      if (!bad && (end - start < 1000 || end - start > 3600000 || (state.durationMs && end > state.durationMs + 999))) {
        setFieldError(endIn, 'clip.badRange');
        bad = endIn;
      }
      var body = { start_ms: start, end_ms: state.durationMs ? Math.min(end, state.durationMs) : end };
      Object.keys(fields).forEach(function (k) {
        var v = fields[k].value.trim();
        if (!v || v.length > 100) { setFieldError(fields[k], 'clip.needText'); bad = bad || fields[k]; }
        body[k] = v;
      });
      if (bad) { bad.focus(); return; }
      download.hidden = true;
      submit.disabled = true;
      api('POST', lessonPath('/clips'), body).then(function (c) {
        c = c || {};
        show(c);
        if (c.id != null && c.state !== 'done' && c.state !== 'failed') poll(c.id);
        else submit.disabled = false;
      }, function (err) {
        submit.disabled = false;
        var map = { start_ms: startIn, end_ms: endIn, course: fields.course, grade: fields.grade, edition: fields.edition, teacher: fields.teacher, school: fields.school };
        if (err.field && map[err.field]) setFieldError(map[err.field], null, null, err.serverMessage || t('err.code.invalid'));
        formError(form, errorLine('clip.failed', err));
      });
    });
    if (!fields.school.value && l.school_id != null) {
      api('GET', '/api/schools').then(function (list) {
        arr(list).forEach(function (x) { if (x.id === l.school_id && !fields.school.value) fields.school.value = String(x.name || ''); });
      }, function () { /* the teacher types it */ });
    }
    var earlier = h('ul', { id: 'clip-list', class: 'plain-list clip-list' });
    append(box, h('h2', { i18n: 'clip.title' }), form, earlier);
    // Clips exported before (best effort: the list is a convenience, the form works without it).
    api('GET', lessonPath('/clips')).then(function (list) {
      arr(list).forEach(function (c) {
        var range = fmtMs(c.start_ms) + '–' + fmtMs(c.end_ms) + ' ';
        append(earlier, h('li', { class: 'clip-item', data: { clip: c.id, state: c.state } }, h('span', { text: range }),
          c.state === 'done' && c.url ? h('a', { href: c.url, download: '', i18n: 'clip.download' })
            : h('span', { class: 'muted', i18n: c.state === 'failed' ? 'clip.state.failed' : 'clip.state.queued', vars: { msg: String(c.error || '') } })));
      });
    }, function () { /* not listed: nothing to show */ });
  }

  /* ======================================================================================
   * 8. Boot
   * ==================================================================================== */

  function lessonHeader(l) {
    var startMs = Date.parse(l.started_at);
    var endMs = Date.parse(l.ended_at);
    var mins = isNaN(startMs) || isNaN(endMs) ? null : Math.round((endMs - startMs) / 60000);
    var kind = l.kind === 'live' ? 'live' : 'room';
    return h('section', { id: 'lesson-header', class: 'lesson-header' },
      h('h1', null, h('span', { class: 'badge kind-' + kind, i18n: 'kind.' + kind }), ' ', h('span', { id: 'lesson-title', text: String(l.title || l.id) }),
        l.published === false ? h('span', { class: 'badge badge-off', i18n: 'lesson.unpublished' }) : null),
      h('dl', { class: 'lesson-facts' },
        l.teacher ? [h('dt', { i18n: 'lesson.teacher' }), h('dd', { text: String(l.teacher) })] : null,
        l.subject ? [h('dt', { i18n: 'lesson.subject' }), h('dd', { text: String(l.subject) })] : null,
        h('dt', { i18n: 'lesson.when' }), h('dd', null, h('span', { text: fmtInstant(l.started_at) + ' ' }),
          mins != null ? h('span', { class: 'muted', i18n: 'lesson.duration', vars: { m: mins } }) : null),
        l.classroom_name || l.classroom_id ? [h('dt', { i18n: 'lesson.where' }), h('dd', { text: String(l.classroom_name || l.classroom_id) })] : null),
      h('div', { class: 'print-only muted', id: 'print-time', i18n: 'print.generated', vars: { time: fmtInstant(new Date().toISOString()) } }));
  }

  function layout() {
    var l = state.lesson;
    var screen = $('screen');
    var playerBox = h('section', { id: 'player-box', class: 'panel player-panel no-print', 'aria-labelledby': 'player-title' },
      h('h2', { id: 'player-title', class: 'sr-only', i18n: 'player.title' }));
    var commentsBox = h('section', { id: 'comments', class: 'panel comments-panel' });
    var reviewsBox = h('section', { id: 'reviews', class: 'panel reviews-panel' },
      h('h2', { i18n: 'review.all' }), h('div', { id: 'final-score', class: 'final-score' }), h('div', { id: 'reviews-list' }));
    var mySheet = h('section', { id: 'my-sheet', class: 'panel my-sheet no-print', hidden: true });
    var stBox = h('section', { id: 'st', class: 'panel st-panel' }, h('h2', { i18n: 'st.title' }), h('div', { id: 'st-body' }, h('p', { class: 'muted', i18n: 'common.loading' })));
    var clipBox = h('section', { id: 'clip', class: 'panel clip-panel no-print', hidden: !state.mayClip });
    fill(screen, helpPanel(), h('div', { class: 'review-layout' },
      h('div', { class: 'review-main' }, lessonHeader(l), playerBox, commentsBox),
      h('div', { class: 'review-side' }, mySheet, reviewsBox, stBox, clipBox)));
    buildPlayer(playerBox);
    buildComments(commentsBox);
    if (state.mayClip) buildClip(clipBox);
  }

  function failScreen(err) {
    var screen = $('screen');
    if (err instanceof ApiError && err.status === 401) {
      fill(screen, h('div', { class: 'join-wrap' }, h('div', { class: 'card' }, h('h1', { i18n: 'login.needed' }),
        h('a', { class: 'btn btn-primary btn-big', href: '/admin', i18n: 'login.go' }))));
      return;
    }
    var retry = h('button', { type: 'button', class: 'btn btn-primary btn-big', i18n: 'common.retry', on: { click: start } });
    fill(screen, h('div', { class: 'join-wrap' }, h('div', { class: 'card' },
      h('h1', { i18n: 'load.failed' }), h('p', { class: 'notice', role: 'alert' }, errorLine('load.failed', err)), retry)));
  }

  function start() {
    fill($('screen'), h('div', { class: 'entering', i18n: 'common.loading' }));
    api('GET', '/api/me').then(function (me) {
      state.me = me || {};
      state.csrf = me && me.csrf_token;
      return api('GET', lessonPath(''));
    }).then(function (lesson) {
      state.lesson = lesson || {};
      var l = state.lesson;
      var role = state.me.role;
      var dur = Date.parse(l.ended_at) - Date.parse(l.started_at);
      state.durationMs = isNaN(dur) || dur <= 0 ? 0 : dur;
      var admin = role === 'district_admin' || (role === 'school_admin' && state.me.school_id === l.school_id);
      state.mayReview = role === 'reviewer' || admin;
      state.mayClip = admin || (role === 'teacher' && !!l.teacher && (state.me.display_name === l.teacher || state.me.username === l.teacher));
      document.title = String(l.title || '') + ' · ' + t('page.title');
      // Everything else at once; each part shows its own failure.
      var assigned = role === 'teacher'
        ? api('GET', lessonPath('/reviewers')).then(function (list) {
          arr(list).forEach(function (a) {
            var id = a.reviewer_id != null ? a.reviewer_id : (a.reviewer && a.reviewer.id != null ? a.reviewer.id : a.id);
            if (id === state.me.id) state.mayReview = true;
          });
        }).catch(function () { /* not readable for teachers: not assigned as far as we know */ })
        : Promise.resolve();
      var media = api('GET', lessonPath('/media')).then(function (m) {
        state.media = m || {};
        state.sources = buildSources(state.media);
        if (!state.durationMs && state.media.sources) {
          state.media.sources.forEach(function (x) { state.durationMs = Math.max(state.durationMs, (+x.offset_ms || 0) + (+x.duration_ms || 0)); });
        }
      }, function (err) { notifyError('player.mediaFailed', err); });
      var rubrics = api('GET', '/api/rubrics').then(function (r) { state.rubrics = arr(r); }, function () { state.rubrics = []; });
      return Promise.all([assigned, media, rubrics]);
    }).then(function () {
      layout();
      loadComments().catch(function (err) { notifyError('load.failed', err); });
      loadReviews().catch(function (err) { notifyError('review.loadFailed', err, $('reviews-list')); });
      loadSt().catch(function (err) { notifyError('load.failed', err, $('st-body')); });
    }).catch(failScreen);
  }

  function boot() {
    state.id = decodeURIComponent((location.pathname.match(/^\/review\/([^/]+)/) || [])[1] || '');
    var toggle = $('lang-toggle');
    function label() {
      toggle.textContent = t('lang.toggle');
      toggle.title = t('lang.toggleTitle');
      $('back-link').textContent = t('nav.back');
      $('print-report').textContent = t('nav.print');
      $('help-toggle').textContent = t('nav.help');
      $('page-title').textContent = t('page.title');
    }
    label();
    toggle.addEventListener('click', function () { L.toggle(); });
    L.onChange(function () {
      label();
      applyI18n(document.body);
      renderSt();   // SVG labels are plain text: rebuild them
      renderMarks();
    });
    $('print-report').addEventListener('click', function () { window.print(); });
    window.addEventListener('beforeprint', function () {
      var el = $('print-time');
      if (el) setKey(el, 'print.generated', { time: fmtInstant(new Date().toISOString()) });
    });
    $('help-toggle').addEventListener('click', function () { toggleHelp(); });
    document.addEventListener('keydown', onKey);
    start();
  }

  /** Test hooks. */
  window.duetReview = {
    state: state,
    seek: seekLesson,
    now: function () { return lessonNow(); },
    switchSource: switchSource,
    setSide: setSide,
    parseClock: parseClock,
    fmtMs: fmtMs,
    bandOf: bandOf
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
