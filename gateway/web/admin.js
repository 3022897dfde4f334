/*
 * Duet management pages — admin.js (served at /admin as /assets/admin.js)
 * =======================================================================
 * Plain JavaScript in one IIFE; no build step, no dependencies, nothing loaded from elsewhere.
 * Loaded after /assets/admin-i18n.js (window.ADMIN_I18N). Talks to the JSON API of docs/api.md.
 *
 * Sections (in this order):
 *   1. Utilities ...... DOM builder h() with live translation (data-i18n), dates and times in
 *                       Asia/Shanghai, random Idempotency-Key
 *   2. API client ..... fetch wrapper: same-origin cookie, X-CSRF-Token on every change, one retry
 *                       after a stale CSRF token, 401 → login screen, errors as ApiError
 *   3. Feedback ....... toasts, inline form errors (client validation and the server's 422 `field`)
 *   4. Lookups ........ schools, classrooms, users, subjects, terms, pairings (cached per screen)
 *   5. Shell .......... top bar, tabs by role, hash router, language toggle, logout
 *   6. Login
 *   7. Today .......... teacher / classroom / reviewer: now, next, the day's list, join
 *   8. School admin ... classrooms and devices, bell schedule, accounts
 *   9. District admin . schools, pairings, terms, subjects, the unified week timetable
 *  9b. Recording ...... 录播教室 (state, previews refreshed every 2 s, start/stop/extend) and
 *                       课堂实录 (the archive of recorded lessons)
 *  10. Boot ........... GET /api/me, window.duetAdmin (test hooks)
 *
 * Server data only ever reaches the page through textContent / attributes (never innerHTML).
 * Every translated text node carries data-i18n (+ data-i18n-vars), so switching the language
 * relabels the page in place and keeps whatever the user has typed.
 *
 * Stable ids for tests: #login-username #login-password #login-submit #logout #join-current
 * (#join-next for a class starting within 10 minutes), [data-occurrence="<series_id>/<date>"],
 * [data-conflict], #conflicts, #add-series-form, #series-submit, [data-classroom] (recording room
 * cards, with data-state / data-online, [data-cmd] buttons, [data-preview] pictures),
 * [data-lesson] (archive rows, with data-kind / data-published; [data-act] publish / unpublish /
 * assign / delete buttons, [data-open] links to /review/<id>), #archive-q #archive-kind #archive-school
 * #archive-classroom #archive-teacher #archive-subject #archive-pairing #archive-from #archive-to.
 */
(function () {
  'use strict';

  var L = window.ADMIN_I18N;

  /* ======================================================================================
   * 1. Utilities
   * ==================================================================================== */

  /** Vars may hold {k: key, vars?} to embed another translated string (resolved at each render). */
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

  /**
   * Creates an element. props: class, id, text (plain text), i18n (key) + vars, i18nAttr
   * ({attr: key}), bi ({zh, en}: server text in both languages), data ({name: value} → data-*),
   * on ({event: fn}), value, checked, disabled, hidden; anything else becomes an attribute.
   * Further arguments are children (nodes, strings, arrays; null skipped).
   */
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
          case 'bi':
            el.setAttribute('data-bi-zh', v.zh || v.en || '');
            el.setAttribute('data-bi-en', v.en || v.zh || '');
            break;
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
    if (value != null) el.value = value; // after the children: a <select> needs its options first
    translateEl(el);
    return el;
  }

  /** append(el, child, child, …): nodes, strings, arrays; null and false are skipped. */
  function append(el) {
    for (var i = 1; i < arguments.length; i++) appendOne(el, arguments[i]);
  }

  function appendOne(el, c) {
    if (c == null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { appendOne(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }

  function empty(el) { while (el && el.firstChild) el.removeChild(el.firstChild); return el; }

  function fill(el) {
    empty(el);
    for (var i = 1; i < arguments.length; i++) appendOne(el, arguments[i]);
    return el;
  }

  function translateEl(el) {
    var key = el.getAttribute('data-i18n');
    var vars;
    if (key) {
      vars = el.getAttribute('data-i18n-vars');
      el.textContent = t(key, vars ? JSON.parse(vars) : null);
    }
    var attrs = el.getAttribute('data-i18n-attr');
    if (attrs) {
      vars = el.getAttribute('data-i18n-vars');
      attrs = JSON.parse(attrs);
      Object.keys(attrs).forEach(function (a) { el.setAttribute(a, t(attrs[a], vars ? JSON.parse(vars) : null)); });
    }
    if (el.hasAttribute('data-bi-zh')) {
      el.textContent = el.getAttribute(L.getLang() === 'en' ? 'data-bi-en' : 'data-bi-zh');
    }
  }

  /** Re-translates everything under root (after a language switch). */
  function applyI18n(root) {
    var list = root.querySelectorAll('[data-i18n],[data-i18n-attr],[data-bi-zh]');
    for (var i = 0; i < list.length; i++) translateEl(list[i]);
  }

  /** Changes the translation key (and vars) of an element built with h(). */
  function setKey(el, key, vars) {
    el.setAttribute('data-i18n', key);
    if (vars) el.setAttribute('data-i18n-vars', JSON.stringify(vars));
    else el.removeAttribute('data-i18n-vars');
    translateEl(el);
  }

  function arr(x) { return Array.isArray(x) ? x : []; }

  function enc(s) { return encodeURIComponent(String(s)); }

  /** Promise.allSettled for older classroom browsers. */
  function settle(promises) {
    return Promise.all(promises.map(function (p) {
      return Promise.resolve(p).then(
        function (value) { return { ok: true, value: value }; },
        function (reason) { return { ok: false, reason: reason }; });
    }));
  }

  /* ---- Dates and times. The school's clock is Asia/Shanghai, whatever the PC is set to. ---- */

  var TZ = 'Asia/Shanghai';
  var partsFmt = null;

  function shanghaiParts(date) {
    if (!partsFmt) {
      try {
        partsFmt = new Intl.DateTimeFormat('en-GB', {
          timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
          hour: '2-digit', minute: '2-digit', hourCycle: 'h23'
        });
      } catch (e) { partsFmt = false; }
    }
    if (partsFmt === false) { // no time-zone data: Shanghai is UTC+8 all year (no DST)
      var d = new Date(date.getTime() + 8 * 3600000);
      return { year: String(d.getUTCFullYear()), month: pad(d.getUTCMonth() + 1), day: pad(d.getUTCDate()),
        hour: pad(d.getUTCHours()), minute: pad(d.getUTCMinutes()) };
    }
    var p = {};
    partsFmt.formatToParts(date).forEach(function (x) { p[x.type] = x.value; });
    if (p.hour === '24') p.hour = '00';
    return p;
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  /** Today's date in Asia/Shanghai, YYYY-MM-DD. */
  function todayStr() {
    var p = shanghaiParts(new Date());
    return p.year + '-' + p.month + '-' + p.day;
  }

  function hhmmOf(ms) { var p = shanghaiParts(new Date(ms)); return p.hour + ':' + p.minute; }

  function parseDate(s) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || '');
    return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])) : null;
  }

  function fmtDate(d) { return d.toISOString().slice(0, 10); }

  function validDate(s) { var d = parseDate(s); return !!d && fmtDate(d) === s; }

  function addDays(s, n) { var d = parseDate(s); d.setUTCDate(d.getUTCDate() + n); return fmtDate(d); }

  /** 1 = Monday … 7 = Sunday. */
  function isoWeekday(s) { var w = parseDate(s).getUTCDay(); return w === 0 ? 7 : w; }

  function mondayOf(s) { return addDays(s, 1 - isoWeekday(s)); }

  function shortDate(s) { return s ? s.slice(5) : ''; }

  var HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

  function toMinutes(s) { var m = HHMM.exec(s || ''); return m ? +m[1] * 60 + +m[2] : null; }

  function fromMinutes(n) { n = Math.max(0, Math.min(23 * 60 + 59, n)); return pad(Math.floor(n / 60)) + ':' + pad(n % 60); }

  /** "8:00", "0800", "8：00" → "08:00"; anything else is returned trimmed for validation to reject. */
  function normTime(s) {
    s = String(s || '').trim().replace('：', ':');
    var m = /^(\d{1,2}):?(\d{2})$/.exec(s);
    if (!m || +m[1] > 23 || +m[2] > 59) return s;
    return pad(+m[1]) + ':' + m[2];
  }

  /** A random UUID v4 (crypto.randomUUID needs a secure context; school PCs often use plain HTTP). */
  function randomKey() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var x = '';
    for (var i = 0; i < 16; i++) x += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return x.slice(0, 8) + '-' + x.slice(8, 12) + '-' + x.slice(12, 16) + '-' + x.slice(16, 20) + '-' + x.slice(20);
  }

  /* ---- Occurrences (the timetable's unit). The contract names their fields but not the shape of
   * lead_classroom / receivers / teacher / subject; we accept a string (name or id) or an object
   * with name / display_name (and school_name / school for classrooms). ---- */

  function occKey(o) { return o.series_id + '/' + o.date; }

  function occStartMs(o) {
    var ms = Date.parse(o.start);
    if (!isNaN(ms)) return ms;
    return Date.parse(o.date + 'T' + (o.local_start || '00:00') + ':00+08:00');
  }

  function occEndMs(o) {
    var ms = Date.parse(o.end);
    if (!isNaN(ms)) return ms;
    return o.local_end ? Date.parse(o.date + 'T' + o.local_end + ':00+08:00') : NaN;
  }

  /** docs/api.md has `moved` (bool); a server may instead give `moved_from` (the original date). */
  function occMoved(o) { return !!(o.moved || o.moved_from); }

  function occTimeRange(o) {
    var s = o.local_start || (o.start ? hhmmOf(Date.parse(o.start)) : '');
    var e = o.local_end || (o.end ? hhmmOf(Date.parse(o.end)) : '');
    return s + (e ? '–' + e : '');
  }

  /* ======================================================================================
   * 2. API client
   * ==================================================================================== */

  var state = {
    me: null,          // Me from /api/me or the login answer; null = signed out
    csrf: null,        // X-CSRF-Token for changing requests
    timers: [],        // intervals of the current screen, cleared on every screen change
    view: null         // name of the screen on display (for tests and the title)
  };

  /** An API failure: HTTP status (0 = no answer), the stable code, the server's message and field. */
  function ApiError(status, body, retryAfter) {
    body = body && typeof body === 'object' ? body : {};
    this.name = 'ApiError';
    this.status = status;
    this.code = typeof body.code === 'string' ? body.code : (status ? 'http' : 'network');
    this.serverMessage = typeof body.message === 'string' ? body.message : '';
    this.field = typeof body.field === 'string' ? body.field : null;
    this.retryAfter = retryAfter;
    this.body = body;
    this.handled = false; // set when the error already led somewhere (401 → login)
    this.message = this.serverMessage || this.code;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  /** Retry-After: seconds or an HTTP date → seconds (null when absent or unreadable). */
  function parseRetryAfter(v) {
    if (!v) return null;
    v = v.trim();
    if (/^\d+$/.test(v)) return +v;
    var d = Date.parse(v);
    return isNaN(d) ? null : Math.max(0, Math.ceil((d - Date.now()) / 1000));
  }

  var REQUEST_TIMEOUT_MS = 20000;

  /**
   * One JSON request. Resolves with the parsed body (null for 204), rejects with an ApiError.
   * opts: headers, allow401 (do not jump to the login screen), retried (internal).
   */
  function api(method, path, body, opts) {
    opts = opts || {};
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    if (opts.headers) Object.keys(opts.headers).forEach(function (k) { headers[k] = opts.headers[k]; });
    var ctrl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, REQUEST_TIMEOUT_MS) : null;
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal: ctrl ? ctrl.signal : undefined
    }).then(function (res) {
      return res.text().then(function (txt) {
        var data = null;
        if (txt) {
          try { data = JSON.parse(txt); } catch (e) {
            if (res.ok) throw new ApiError(res.status, { code: 'bad_response' });
          }
        }
        if (res.ok) return data;
        var err = new ApiError(res.status, data, parseRetryAfter(res.headers.get('Retry-After')));
        if (err.code === 'csrf' && !opts.retried && method !== 'GET') {
          // The token went stale (a new session in another tab): fetch the current one, retry once.
          return refreshCsrf().then(function () {
            return api(method, path, body, Object.assign({}, opts, { retried: true }));
          }, function () { throw err; });
        }
        if (res.status === 401 && !opts.allow401) {
          err.handled = true; // the login screen says it; no toast per failed request
          if (state.me) sessionLost(err);
        }
        throw err;
      });
    }).catch(function (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(0, { code: e && e.name === 'AbortError' ? 'timeout' : 'network' });
    }).then(function (v) {
      if (timer) clearTimeout(timer);
      return v;
    }, function (e) {
      if (timer) clearTimeout(timer);
      throw e;
    });
  }

  function refreshCsrf() {
    return api('GET', '/api/me').then(function (me) {
      if (me && me.csrf_token) state.csrf = me.csrf_token;
      if (me) state.me = me;
    });
  }

  /* ======================================================================================
   * 3. Feedback: toasts and form errors
   * ==================================================================================== */

  /** The error's message as a vars value: the server's own words, else a translated fallback. */
  function errMsgVar(err) {
    if (!(err instanceof ApiError)) return { k: 'err.unexpected', vars: { msg: String(err && err.message || err) } };
    if (err.serverMessage) return err.serverMessage;
    var key = 'err.code.' + err.code;
    return L.has(key) ? { k: key } : { k: 'err.http', vars: { status: err.status } };
  }

  /** "<action failed>：<message>" (+ "retry in N s" for 429), translated live. */
  function errorLine(actionKey, err) {
    var line = h('span', { class: 'err-line', i18n: 'err.withAction', vars: { action: { k: actionKey }, msg: errMsgVar(err) } });
    if (err && err.retryAfter != null) {
      return h('span', null, line, ' ', h('span', { i18n: 'err.retryAfter', vars: { s: err.retryAfter } }));
    }
    return line;
  }

  function toast(kind, content, ms) {
    var box = $('toasts');
    if (!box) return;
    var item = h('div', { class: 'toast toast-' + kind, role: kind === 'error' ? 'alert' : 'status' });
    function remove() { if (item.parentNode) item.parentNode.removeChild(item); }
    append(item, h('div', { class: 'toast-body' }, content));
    append(item, h('button', {
      type: 'button', class: 'toast-close', text: '×',
      i18nAttr: { 'aria-label': 'common.close', title: 'common.close' }, on: { click: remove }
    }));
    box.appendChild(item);
    while (box.children.length > 3) box.removeChild(box.firstChild);
    setTimeout(remove, ms || (kind === 'error' ? 12000 : 4000));
  }

  function toastOk(key, vars) { toast('ok', h('span', { i18n: key, vars: vars })); }

  /** Shows a failed request in a toast and, when given, in an inline box. */
  function notifyError(actionKey, err, inlineBox) {
    if (err && err.handled) return;
    toast('error', errorLine(actionKey, err));
    if (inlineBox) { fill(inlineBox, errorLine(actionKey, err)); inlineBox.hidden = false; }
    if (!(err instanceof ApiError) && window.console) window.console.error(err);
  }

  /** A labelled form field with its own error line (aria-describedby). */
  function field(labelKey, input, cls) {
    var err = h('div', { class: 'field-error', id: input.id + '-error', 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', err.id);
    var label = input.tagName === 'FIELDSET'
      ? null
      : h('label', { class: 'label', for: input.id, i18n: labelKey });
    return h('div', { class: 'field' + (cls ? ' ' + cls : '') }, label, input, err);
  }

  /** Marks an input invalid; key/vars is our translated reason, serverMsg the server's words. */
  function setFieldError(input, key, vars, serverMsg) {
    input.setAttribute('aria-invalid', 'true');
    var err = $(input.id + '-error');
    if (err) fill(err, key ? h('span', { i18n: key, vars: vars }) : null, serverMsg ? h('span', { text: serverMsg }) : null);
  }

  function clearFieldError(input) {
    input.removeAttribute('aria-invalid');
    var err = $(input.id + '-error');
    if (err) empty(err);
  }

  function formErrorBox() { return h('div', { class: 'form-error', role: 'alert', hidden: true }); }

  function clearFormErrors(form) {
    var bad = form.querySelectorAll('[aria-invalid]');
    for (var i = 0; i < bad.length; i++) bad[i].removeAttribute('aria-invalid');
    var lines = form.querySelectorAll('.field-error, .row-error');
    for (var j = 0; j < lines.length; j++) { empty(lines[j]); if (lines[j].classList.contains('row-error')) lines[j].hidden = true; }
    var boxes = form.querySelectorAll('.form-error');
    for (var k = 0; k < boxes.length; k++) { empty(boxes[k]); boxes[k].hidden = true; }
  }

  function showFormError(form, node) {
    var box = form.querySelector('.form-error');
    if (!box) return;
    fill(box, node);
    box.hidden = false;
  }

  /** Focuses the first invalid control, if any; returns whether there was one. */
  function focusFirstInvalid(form) {
    var bad = form.querySelector('[aria-invalid="true"]');
    if (!bad) return false;
    var target = bad.tagName === 'FIELDSET' ? (bad.querySelector('input,select') || bad) : bad;
    if (target.focus) target.focus();
    return true;
  }

  /**
   * A failed form request: the server's 422 `field` goes next to its input (fieldMap: server
   * field name → input, or a function(field) → input), the message above the submit button and in a toast.
   */
  function formFailed(form, actionKey, err, fieldMap) {
    if (err && err.handled) return;
    if (err instanceof ApiError && err.field && fieldMap) {
      var input = typeof fieldMap === 'function' ? fieldMap(err.field) : fieldMap[err.field];
      if (input) {
        setFieldError(input, null, null, err.serverMessage || t('err.code.invalid'));
        if (input.focus) input.focus();
      }
    }
    showFormError(form, errorLine(actionKey, err));
    notifyError(actionKey, err);
  }

  /**
   * Runs fn() (→ promise) with the form marked pending: its submit button disabled and relabelled,
   * a second submission ignored until the first settles.
   */
  function pending(form, button, fn, busyKey) {
    if (form.getAttribute('data-pending') === '1') return Promise.resolve();
    form.setAttribute('data-pending', '1');
    form.setAttribute('aria-busy', 'true');
    button.disabled = true;
    var idleKey = button.getAttribute('data-i18n');
    if (idleKey) setKey(button, busyKey || 'common.saving');
    function done() {
      form.removeAttribute('data-pending');
      form.removeAttribute('aria-busy');
      button.disabled = false;
      if (idleKey) setKey(button, idleKey);
    }
    return Promise.resolve().then(fn).then(done, function (e) { done(); throw e; });
  }

  /** A one-line inline notice (loading failures of a screen). */
  function noticeBox() { return h('div', { class: 'notice', role: 'alert', hidden: true }); }

  /* ======================================================================================
   * 4. Lookups (cached for the lifetime of one screen; cleared on every screen change)
   * ==================================================================================== */

  var cache = {};
  var names = { school: {}, classroom: {}, user: {}, subject: {} };

  function cached(key, loader) {
    if (!cache[key]) {
      cache[key] = loader().catch(function (e) { delete cache[key]; throw e; });
    }
    return cache[key];
  }

  function remember(kind, list) {
    list.forEach(function (x) { if (x && x.id != null) names[kind][x.id] = x; });
    return list;
  }

  function getSchools() {
    return cached('schools', function () { return api('GET', '/api/schools').then(arr).then(function (l) { return remember('school', l); }); });
  }

  function getClassrooms(schoolId) {
    return cached('classrooms:' + schoolId, function () {
      return api('GET', '/api/schools/' + enc(schoolId) + '/classrooms').then(arr).then(function (l) {
        l.forEach(function (c) { if (c.school_id == null) c.school_id = schoolId; });
        return remember('classroom', l);
      });
    });
  }

  /** Classrooms of every school given, as one list (each failure is reported, the rest kept). */
  function getAllClassrooms(schools) {
    return settle(schools.map(function (s) { return getClassrooms(s.id); })).then(function (rs) {
      var out = [];
      var failed = null;
      rs.forEach(function (r) { if (r.ok) out = out.concat(r.value); else failed = failed || r.reason; });
      if (failed) notifyError('load.classrooms', failed);
      return out;
    });
  }

  function getUsers() {
    return cached('users', function () { return api('GET', '/api/users').then(arr).then(function (l) { return remember('user', l); }); });
  }

  function getSubjects() {
    return cached('subjects', function () { return api('GET', '/api/subjects').then(arr).then(function (l) { return remember('subject', l); }); });
  }

  function getTerms() { return cached('terms', function () { return api('GET', '/api/terms').then(arr); }); }

  function getPairings() { return cached('pairings', function () { return api('GET', '/api/pairings').then(arr); }); }

  /** A pairing's receiving schools: `receiving_school_ids` as in the POST body, or `school_ids`. */
  function pairingReceivers(p) { return arr(p.receiving_school_ids).length ? arr(p.receiving_school_ids) : arr(p.school_ids); }

  function schoolName(id) { var s = names.school[id]; return s ? s.name : String(id == null ? '' : id); }

  /** A display name for a reference that may be a name, an id we know, or an object. */
  function refName(x, kind) {
    if (x == null) return '';
    if (typeof x !== 'object') {
      var known = kind && names[kind][x];
      return known ? (known.display_name || known.name || String(x)) : String(x);
    }
    return x.display_name || x.name || x.username || (x.id != null ? refName(x.id, kind) : '');
  }

  /** "School · Classroom" when the school is known and not already part of the name. */
  function classroomName(c) {
    if (c == null) return '';
    if (typeof c !== 'object') {
      var known = names.classroom[c];
      if (!known) return String(c);
      c = known;
    } else if (c.school_id == null && !c.school_name && !c.school && c.id != null && names.classroom[c.id]) {
      c = { name: c.name || names.classroom[c.id].name, school_id: names.classroom[c.id].school_id };
    }
    var n = refName(c, 'classroom');
    var school = c.school_name || (c.school ? refName(c.school, 'school') : '') ||
      (c.school_id != null && names.school[c.school_id] ? names.school[c.school_id].name : '');
    return school && n.indexOf(school) !== 0 ? school + ' · ' + n : n;
  }

  /* ======================================================================================
   * 5. Shell: top bar, tabs, router
   * ==================================================================================== */

  var TABS = {
    district_admin: ['schools', 'pairings', 'terms', 'subjects', 'timetable', 'accounts', 'recording', 'archive'],
    school_admin: ['classrooms', 'bells', 'accounts', 'recording', 'archive'],
    teacher: ['today', 'recording', 'archive'],
    classroom: ['today'],
    reviewer: ['archive', 'today']
  };

  var VIEWS = {}; // filled in below: name → function(viewElement, arg); intervals go in state.timers

  function roleLabel(role) { return L.has('role.' + role) ? { k: 'role.' + role } : String(role || ''); }

  function renderShell() {
    var me = state.me;
    $('logout').hidden = !me;
    var you = $('you-label');
    empty(you);
    if (me) {
      append(you, h('span', { i18n: 'shell.you', vars: { name: me.display_name || me.username, role: roleLabel(me.role) } }));
    }
    var tabs = $('tabs');
    empty(tabs);
    var list = me ? (TABS[me.role] || []) : [];
    tabs.hidden = list.length < 2;
    list.forEach(function (name) {
      append(tabs, h('a', { class: 'tab', href: '#/' + name, id: 'tab-' + name, data: { tab: name }, i18n: 'tab.' + name }));
    });
  }

  function markTab(name) {
    var links = $('tabs').querySelectorAll('.tab');
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute('data-tab') === name) links[i].setAttribute('aria-current', 'page');
      else links[i].removeAttribute('aria-current');
    }
  }

  function updateTitle() {
    var title = state.view ? t('tab.' + state.view) : t('login.title');
    document.title = title + ' · ' + t('app.name');
    $('page-title').textContent = t('app.admin');
  }

  function cleanupView() {
    state.timers.forEach(function (id) { clearInterval(id); });
    state.timers = [];
    cache = {};
  }

  function routeParts() {
    return (location.hash || '').replace(/^#\/?/, '').split('/').filter(Boolean).map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
  }

  function go(path) {
    if (location.hash === '#/' + path) renderRoute();
    else location.hash = '#/' + path;
  }

  /** Shows the screen the hash names, if the signed-in role has it; else the role's first. */
  function renderRoute() {
    if (!state.me) return;
    cleanupView();
    var tabs = TABS[state.me.role] || [];
    var parts = routeParts();
    var name = parts[0];
    var arg = null;
    var sub = null;
    if (state.me.role === 'district_admin' && name === 'schools' && parts[1] &&
        (parts[2] === 'classrooms' || parts[2] === 'bells')) {
      arg = parts[1];
      sub = parts[2];
    }
    if (tabs.indexOf(name) < 0) name = tabs[0];
    markTab(name);
    var screen = $('screen');
    empty(screen);
    state.view = sub || name || null;
    updateTitle();
    if (!name) {
      append(screen, h('div', { class: 'join-wrap' }, h('div', { class: 'card' },
        h('h1', { i18n: 'noaccess.title' }), h('p', { class: 'subtitle', i18n: 'noaccess.body', vars: { role: roleLabel(state.me.role) } }))));
      return;
    }
    var view = h('section', { class: 'view view-' + state.view, id: 'view-' + state.view });
    append(screen, view);
    screen.scrollTop = 0;
    VIEWS[sub || name](view, arg);
  }

  function signedIn(me, csrf) {
    state.me = me;
    state.csrf = csrf || me.csrf_token || state.csrf;
    renderShell();
    renderRoute();
  }

  /** The session ended (401 somewhere, or logout): back to the login screen. */
  function sessionLost(err) {
    state.me = null;
    state.csrf = null;
    cleanupView();
    renderShell();
    showLogin(err ? 'login.expired' : null);
  }

  function logout() {
    var btn = $('logout');
    btn.disabled = true;
    api('POST', '/api/logout', undefined, { allow401: true }).then(function () {
      sessionLost(null);
    }, function (err) {
      if (err.status === 401) sessionLost(null);
      else notifyError('logout.failed', err);
    }).then(function () { btn.disabled = false; });
  }

  /* ======================================================================================
   * 6. Login
   * ==================================================================================== */

  var loginCountdown = null;

  function showLogin(noticeKey) {
    state.view = null;
    updateTitle();
    var screen = $('screen');
    empty(screen);
    var user = h('input', { id: 'login-username', class: 'input', type: 'text', name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', maxlength: '64' });
    var pass = h('input', { id: 'login-password', class: 'input', type: 'password', name: 'password', autocomplete: 'current-password', maxlength: '128' });
    var submit = h('button', { id: 'login-submit', type: 'submit', class: 'btn btn-primary btn-big', i18n: 'login.submit' });
    var errBox = h('div', { id: 'login-error', class: 'notice', role: 'alert', hidden: true });
    var form = h('form', { id: 'login-form', class: 'join-form', novalidate: true },
      field('login.username', user), field('login.password', pass), errBox, submit);
    var card = h('div', { class: 'card login-card' },
      h('h1', { i18n: 'login.title' }),
      h('p', { class: 'subtitle', i18n: 'login.subtitle' }),
      noticeKey ? h('div', { class: 'notice notice-info', role: 'status', i18n: noticeKey }) : null,
      form);
    append(screen, h('div', { class: 'join-wrap' }, card));

    if (loginCountdown) { clearInterval(loginCountdown); loginCountdown = null; }

    function blockFor(seconds) {
      var until = Date.now() + seconds * 1000;
      submit.disabled = true;
      var line = h('div', { class: 'countdown', i18n: 'login.retryIn', vars: { s: seconds } });
      append(errBox, line);
      loginCountdown = setInterval(function () {
        var left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0 || !line.isConnected) {
          clearInterval(loginCountdown);
          loginCountdown = null;
          submit.disabled = false;
          if (line.parentNode) line.parentNode.removeChild(line);
          return;
        }
        setKey(line, 'login.retryIn', { s: left });
      }, 1000);
    }

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (submit.disabled && !form.getAttribute('data-pending')) return; // rate limited
      clearFormErrors(form);
      errBox.hidden = true;
      var username = user.value.trim();
      if (!username) setFieldError(user, 'login.needUsername');
      if (!pass.value) setFieldError(pass, 'login.needPassword');
      if (focusFirstInvalid(form)) return;
      var blocked = null;
      pending(form, submit, function () {
        return api('POST', '/api/login', { username: username, password: pass.value }, { allow401: true }).then(function (res) {
          if (!res || !res.user) throw new ApiError(200, { code: 'bad_response' });
          signedIn(res.user, res.csrf_token || res.user.csrf_token);
        }, function (err) {
          var key = err.code === 'account_locked' ? 'login.locked'
            : err.code === 'rate_limited' ? 'login.rateLimited'
              : err.code === 'bad_credentials' ? 'login.badCredentials' : 'login.failed';
          fill(errBox, h('div', { i18n: key }),
            err.serverMessage ? h('div', { class: 'server-msg', i18n: 'err.serverSays', vars: { msg: err.serverMessage } })
              : h('div', { class: 'server-msg', i18n: 'err.withAction', vars: { action: { k: 'login.failedShort' }, msg: errMsgVar(err) } }));
          errBox.hidden = false;
          if (err.code === 'rate_limited' || err.status === 429) blocked = err.retryAfter != null ? err.retryAfter : 30;
          if (err.code === 'bad_credentials') { pass.value = ''; pass.focus(); }
        });
      }, 'login.submitting').then(function () { if (blocked) blockFor(blocked); });
    });
    (user.value ? pass : user).focus();
  }

  /* ======================================================================================
   * 7. Today (teacher, classroom, reviewer)
   * ==================================================================================== */

  var JOIN_EARLY_MS = 10 * 60 * 1000;
  var REFRESH_MS = 30 * 1000;

  VIEWS.today = function (view) {
    var me = state.me;
    var model = { now: null, occ: [], today: todayStr(), loadedAt: null, joining: false };
    var ownNow = me.role === 'teacher' || me.role === 'classroom';

    function nowFromList(list) {
      var t0 = Date.now();
      var out = { current: null, next: null };
      list.forEach(function (o) {
        var s = occStartMs(o);
        var e = occEndMs(o);
        if (s <= t0 && t0 < e && !out.current) out.current = o;
        else if (s > t0 && (!out.next || s < occStartMs(out.next))) out.next = o;
      });
      return out;
    }
    var dateLine = h('span', { class: 'today-date' });
    var updated = h('span', { class: 'muted updated', 'aria-live': 'off' });
    var refreshBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'today-refresh', i18n: 'common.refresh' });
    var errBox = noticeBox();
    var nowGrid = h('div', { class: 'now-grid', id: 'now-grid' });
    var list = h('ol', { class: 'day-list', id: 'day-list' });
    append(view,
      h('div', { class: 'view-head' }, h('h1', { i18n: 'today.title' }), dateLine, updated, refreshBtn),
      errBox, nowGrid,
      h('h2', { class: 'section-title', i18n: 'today.list' }), list);
    refreshBtn.addEventListener('click', function () { load(); });

    function load() {
      var today = todayStr();
      var q = '/api/timetable?from=' + today + '&to=' + today;
      if (me.role === 'teacher' && me.id != null) q += '&teacher_id=' + enc(me.id);
      else if (me.role === 'classroom' && me.classroom_id != null) q += '&classroom_id=' + enc(me.classroom_id);
      refreshBtn.disabled = true;
      // /api/now answers for a teacher or a classroom; anyone else (a reviewer) gets now/next from
      // the day's list, worked out here.
      var nowReq = ownNow ? api('GET', '/api/now') : Promise.resolve(null);
      return settle([nowReq, api('GET', q)]).then(function (rs) {
        refreshBtn.disabled = false;
        if (!view.isConnected) return;
        errBox.hidden = true;
        empty(errBox);
        if (rs[1].ok) model.occ = arr(rs[1].value && rs[1].value.occurrences);
        if (rs[0].ok && ownNow) model.now = rs[0].value || {};
        else if (!ownNow || !model.now) model.now = nowFromList(model.occ);
        var failed = !rs[0].ok ? rs[0].reason : (!rs[1].ok ? rs[1].reason : null);
        if (failed && !failed.handled) {
          fill(errBox, errorLine('today.loadFailed', failed));
          errBox.hidden = false;
        }
        model.today = today;
        if (rs[0].ok || rs[1].ok) model.loadedAt = Date.now();
        render();
      });
    }

    function routeLine(o) {
      var receivers = arr(o.receivers).map(classroomName).join('、');
      return h('div', { class: 'occ-route' },
        h('span', { class: 'k', i18n: 'occ.lead' }), h('strong', { text: classroomName(o.lead_classroom) }),
        h('span', { class: 'arrow', text: ' → ' }),
        h('span', { class: 'k', i18n: 'occ.receivers' }), h('span', { text: receivers || '—' }));
    }

    function joinButton(o, id, big) {
      var b = h('button', {
        type: 'button', id: id || null, class: 'btn btn-primary ' + (big ? 'btn-huge' : 'btn-big') + ' join-btn',
        data: { join: occKey(o) }, i18n: 'today.join', disabled: model.joining
      });
      b.addEventListener('click', function () { join(o, b); });
      return b;
    }

    function nowCard(kind, o, nowMs) {
      var card = h('article', { class: 'now-card now-' + kind, id: 'now-' + kind, 'aria-labelledby': 'now-' + kind + '-label' },
        h('div', { class: 'now-label', id: 'now-' + kind + '-label', i18n: kind === 'current' ? 'today.current' : 'today.next' }));
      if (!o) {
        append(card, h('p', { class: 'now-empty', i18n: kind === 'current' ? 'today.noCurrent' : 'today.noNext' }));
        return card;
      }
      card.setAttribute('data-' + kind, occKey(o));
      var startMs = occStartMs(o);
      append(card,
        h('div', { class: 'now-time', text: occTimeRange(o) }),
        h('div', { class: 'now-subject', text: refName(o.subject, 'subject') }),
        h('div', { class: 'now-meta' },
          h('span', { i18n: 'occ.period', vars: { n: o.period } }),
          o.date !== model.today ? h('span', { text: ' · ' + o.date }) : null,
          occMoved(o) ? h('span', { class: 'badge badge-moved', i18n: 'occ.moved' }) : null),
        routeLine(o),
        o.teacher ? h('div', { class: 'occ-teacher' }, h('span', { class: 'k', i18n: 'occ.teacher' }), h('span', { text: refName(o.teacher, 'user') })) : null);
      if (kind === 'current') {
        append(card, joinButton(o, 'join-current', true));
      } else {
        var mins = Math.max(0, Math.ceil((startMs - nowMs) / 60000));
        if (!isNaN(startMs) && startMs > nowMs && mins <= 120) append(card, h('div', { class: 'now-starts', i18n: 'today.startsIn', vars: { min: mins } }));
        if (!isNaN(startMs) && startMs - nowMs <= JOIN_EARLY_MS) append(card, joinButton(o, 'join-next', true));
      }
      return card;
    }

    function render() {
      // A refresh rebuilds the cards; keep the keyboard focus on the same join button.
      var active = document.activeElement;
      var focusId = active && view.contains(active) ? active.id || null : null;
      var focusJoin = active && view.contains(active) ? active.getAttribute('data-join') : null;
      draw();
      var again = focusId ? $(focusId) : focusJoin ? view.querySelector('[data-join="' + focusJoin + '"]') : null;
      if (again && again.focus) again.focus();
    }

    function draw() {
      var nowMs = Date.now();
      fill(dateLine, h('span', { i18n: 'today.date', vars: { date: model.today, wd: { k: 'wd.' + isoWeekday(model.today) } } }));
      fill(updated, model.loadedAt ? h('span', { i18n: 'today.updated', vars: { time: hhmmOf(model.loadedAt) } }) : null);
      var now = model.now || {};
      fill(nowGrid, nowCard('current', now.current, nowMs), nowCard('next', now.next, nowMs));
      var currentKey = now.current ? occKey(now.current) : null;
      var items = model.occ.slice().sort(function (a, b) { return occStartMs(a) - occStartMs(b) || (a.period - b.period); });
      empty(list);
      if (!items.length) {
        append(list, h('li', { class: 'empty', i18n: 'today.noClasses' }));
        return;
      }
      items.forEach(function (o) {
        var s = occStartMs(o);
        var e = occEndMs(o);
        var key = occKey(o);
        var st = key === currentKey || (nowMs >= s && (isNaN(e) || nowMs < e)) ? 'current'
          : (!isNaN(e) && nowMs >= e) ? 'past'
            : (s - nowMs <= JOIN_EARLY_MS ? 'soon' : 'later');
        append(list, h('li', { class: 'day-item state-' + st, data: { occurrence: key, state: st } },
          h('div', { class: 'day-time' }, h('div', { class: 'day-hhmm', text: occTimeRange(o) }), h('div', { class: 'muted', i18n: 'occ.period', vars: { n: o.period } })),
          h('div', { class: 'day-main' },
            h('div', { class: 'day-subject' }, h('span', { text: refName(o.subject, 'subject') }),
              occMoved(o) ? h('span', { class: 'badge badge-moved', i18n: 'occ.moved' }) : null),
            routeLine(o),
            o.teacher ? h('div', { class: 'occ-teacher' }, h('span', { class: 'k', i18n: 'occ.teacher' }), h('span', { text: refName(o.teacher, 'user') })) : null),
          h('div', { class: 'day-side' },
            h('span', { class: 'badge badge-' + st, i18n: 'today.state.' + st }),
            st === 'current' || st === 'soon' ? joinButton(o, null, false) : null)));
      });
    }

    function join(o, btn) {
      if (model.joining) return;
      model.joining = true;
      var all = view.querySelectorAll('.join-btn');
      for (var i = 0; i < all.length; i++) all[i].disabled = true;
      setKey(btn, 'today.joining');
      api('POST', '/api/join', { series_id: o.series_id, date: o.date }).then(function (res) {
        if (!res || typeof res.token !== 'string' || !res.token) throw new ApiError(200, { code: 'bad_response' });
        var url = '/?token=' + enc(res.token);
        if (res.sfu_url) url += '&sfu=' + enc(res.sfu_url);
        location.assign(url);
      }).catch(function (err) {
        model.joining = false;
        render();
        if (!err.handled) {
          fill(errBox, errorLine('today.joinFailed', err));
          errBox.hidden = false;
        }
        notifyError('today.joinFailed', err);
      });
    }

    render();
    load();
    state.timers.push(setInterval(function () { if (!model.joining) load(); }, REFRESH_MS));
  };

  /* ======================================================================================
   * 8. School admin: classrooms and devices, bell schedule, accounts
   * ==================================================================================== */

  var CLASSROOM_KINDS = ['lead', 'receiving', 'recording'];
  var DEVICE_KINDS = ['camera', 'screen_capture', 'microphone'];
  var CAMERA_POSITIONS = ['teacher_close_up', 'teacher_wide', 'pupils_wide', 'pupil_close_up', 'blackboard'];
  var PTZ_PROTOCOLS = ['visca_ip', 'onvif'];

  /**
   * Device on the wire (docs/api.md names `Device` without fields): the flat form
   * {id, kind: "camera" | "screen_capture" | "microphone", position?, ptz?, source}; position and
   * ptz only for cameras. decodeDevice also reads hardware/src/device.rs's serde form, where
   * kind is an object {kind, position, ptz}.
   */
  function encodeDevice(d) {
    var out = { id: d.id, kind: d.kind, source: d.source };
    if (d.kind === 'camera') {
      out.position = d.position;
      if (d.ptz) out.ptz = d.ptz;
    }
    return out;
  }

  function decodeDevice(x) {
    x = x || {};
    var k = x.kind;
    var d = { id: x.id || '', kind: '', position: x.position || '', ptz: x.ptz || '', source: x.source || x.url || '' };
    if (k && typeof k === 'object') {
      d.kind = k.kind || '';
      d.position = k.position || d.position;
      d.ptz = k.ptz || d.ptz;
    } else {
      d.kind = k || '';
    }
    return d;
  }

  function options(values, prefix, blankKey) {
    var out = blankKey ? [h('option', { value: '', i18n: blankKey })] : [];
    return out.concat(values.map(function (v) { return h('option', { value: v, i18n: prefix + v }); }));
  }

  function viewHead(titleKey, schoolId, backToSchools) {
    var schoolLine = h('span', { class: 'head-school' });
    if (schoolId) {
      getSchools().then(function () {
        if (names.school[schoolId]) fill(schoolLine, h('span', { text: names.school[schoolId].name }));
      }, function () { /* the name is a nicety; the screen's own loads report errors */ });
    }
    return h('div', { class: 'view-head' },
      backToSchools ? h('a', { class: 'btn btn-small btn-ghost', href: '#/schools', i18n: 'common.backToSchools' }) : null,
      h('h1', { i18n: titleKey }), schoolLine);
  }

  function noSchool(view) {
    append(view, h('div', { class: 'notice', role: 'alert', i18n: 'err.noSchool' }));
  }

  /** An inline "Really?" in place of a button group; onYes() → promise. */
  function confirmInline(container, questionKey, vars, yesKey, onYes, restore) {
    var yes = h('button', { type: 'button', class: 'btn btn-small btn-danger', i18n: yesKey });
    var no = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.cancel' });
    fill(container, h('span', { class: 'confirm-q', i18n: questionKey, vars: vars }), yes, no);
    no.addEventListener('click', restore);
    yes.addEventListener('click', function () {
      yes.disabled = true;
      no.disabled = true;
      Promise.resolve().then(onYes).catch(function () { /* reported by onYes */ }).then(function () {
        if (yes.isConnected) restore();
      });
    });
    yes.focus();
  }

  /* ---- 教室与设备 ---- */

  VIEWS.classrooms = function (view, schoolId) {
    var fromDistrict = !!schoolId;
    schoolId = schoolId || state.me.school_id;
    append(view, viewHead('tab.classrooms', schoolId, fromDistrict));
    if (!schoolId) { noSchool(view); return; }
    var errBox = noticeBox();
    var tbody = h('tbody');
    var table = h('table', { class: 'table', id: 'classrooms-table' },
      h('thead', null, h('tr', null,
        h('th', { i18n: 'classroom.name' }), h('th', { i18n: 'classroom.kind' }), h('th', { i18n: 'classroom.devices' }), h('th', { i18n: 'common.actions' }))),
      tbody);
    append(view, errBox, h('div', { class: 'panel' }, table));

    var editing = null; // the classroom being edited, or null when adding
    var nameIn = h('input', { id: 'classroom-name', class: 'input', type: 'text', maxlength: '100' });
    var kindSel = h('select', { id: 'classroom-kind', class: 'input' }, options(CLASSROOM_KINDS, 'classroom.kind.'));
    var deviceRows = h('div', { class: 'device-rows', id: 'device-rows' });
    var devicesSet = h('fieldset', { class: 'fieldset', id: 'classroom-devices' },
      h('legend', { i18n: 'classroom.devices' }),
      h('div', { class: 'device-head', 'aria-hidden': 'true' },
        h('span', { i18n: 'device.id' }), h('span', { i18n: 'device.kind' }), h('span', { i18n: 'device.position' }),
        h('span', { i18n: 'device.ptz' }), h('span', { i18n: 'device.source' }), h('span')),
      deviceRows);
    var addDevice = h('button', { type: 'button', class: 'btn btn-small', id: 'device-add', i18n: 'device.add' });
    var formTitle = h('h2', { i18n: 'classroom.addTitle' });
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'classroom-submit', i18n: 'classroom.create' });
    var cancelEdit = h('button', { type: 'button', class: 'btn btn-big', id: 'classroom-cancel', i18n: 'common.cancelEdit', hidden: true });
    var form = h('form', { class: 'panel form', id: 'classroom-form', novalidate: true },
      formTitle,
      h('div', { class: 'form-row' }, field('classroom.name', nameIn, 'grow'), field('classroom.kind', kindSel)),
      field('classroom.devices', devicesSet, 'wide'), addDevice,
      formErrorBox(),
      h('div', { class: 'form-actions' }, submit, cancelEdit));
    append(view, form);

    var rowSeq = 0;
    function deviceRow(d) {
      var n = ++rowSeq;
      var id = h('input', { class: 'input', id: 'device-id-' + n, type: 'text', value: d.id, maxlength: '64', data: { f: 'id' }, i18nAttr: { 'aria-label': 'device.id', placeholder: 'device.idPlaceholder' } });
      var kind = h('select', { class: 'input', id: 'device-kind-' + n, data: { f: 'kind' }, i18nAttr: { 'aria-label': 'device.kind' }, value: d.kind || 'camera' }, options(DEVICE_KINDS, 'device.kind.'));
      var pos = h('select', { class: 'input', id: 'device-position-' + n, data: { f: 'position' }, i18nAttr: { 'aria-label': 'device.position' }, value: d.position }, options(CAMERA_POSITIONS, 'device.position.', 'common.choose'));
      var ptz = h('select', { class: 'input', id: 'device-ptz-' + n, data: { f: 'ptz' }, i18nAttr: { 'aria-label': 'device.ptz' }, value: d.ptz }, options(PTZ_PROTOCOLS, 'device.ptz.', 'device.ptz.none'));
      var source = h('input', { class: 'input', id: 'device-source-' + n, type: 'text', value: d.source, maxlength: '500', spellcheck: 'false', data: { f: 'source' }, i18nAttr: { 'aria-label': 'device.source', placeholder: 'device.sourcePlaceholder' } });
      var remove = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.remove' });
      var errLine = h('div', { class: 'row-error', id: 'device-row-' + n + '-error', 'aria-live': 'polite', hidden: true });
      var row = h('div', { class: 'device-row', data: { n: n } }, id, kind, pos, ptz, source, remove, errLine);
      function syncKind() { var cam = kind.value === 'camera'; pos.disabled = !cam; ptz.disabled = !cam; if (!cam) { pos.value = ''; ptz.value = ''; } }
      kind.addEventListener('change', syncKind);
      syncKind();
      remove.addEventListener('click', function () { row.parentNode.removeChild(row); });
      return row;
    }

    function readDevices() {
      var rows = deviceRows.querySelectorAll('.device-row');
      var out = [];
      for (var i = 0; i < rows.length; i++) {
        var get = function (f) { return rows[i].querySelector('[data-f="' + f + '"]'); };
        out.push({ row: rows[i], inputs: { id: get('id'), kind: get('kind'), position: get('position'), source: get('source') },
          value: { id: get('id').value.trim(), kind: get('kind').value, position: get('position').value, ptz: get('ptz').value, source: get('source').value.trim() } });
      }
      return out;
    }

    function resetForm(c) {
      editing = c || null;
      clearFormErrors(form);
      nameIn.value = c ? c.name || '' : '';
      kindSel.value = c && c.kind ? c.kind : 'receiving';
      empty(deviceRows);
      arr(c && c.devices).forEach(function (d) { append(deviceRows, deviceRow(decodeDevice(d))); });
      setKey(formTitle, c ? 'classroom.editTitle' : 'classroom.addTitle', c ? { name: c.name } : null);
      setKey(submit, c ? 'common.save' : 'classroom.create');
      cancelEdit.hidden = !c;
    }

    addDevice.addEventListener('click', function () {
      var row = deviceRow({ id: '', kind: 'camera', position: '', ptz: '', source: '' });
      append(deviceRows, row);
      row.querySelector('input').focus();
    });
    cancelEdit.addEventListener('click', function () { resetForm(null); });

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var name = nameIn.value.trim();
      if (!name) setFieldError(nameIn, 'err.required');
      var devices = readDevices();
      var seen = {};
      devices.forEach(function (d) {
        var v = d.value;
        var errs = [];
        if (!v.id) { d.inputs.id.setAttribute('aria-invalid', 'true'); errs.push('device.err.id'); }
        else if (seen[v.id]) { d.inputs.id.setAttribute('aria-invalid', 'true'); errs.push('device.err.duplicate'); }
        seen[v.id] = true;
        if (v.kind === 'camera' && !v.position) { d.inputs.position.setAttribute('aria-invalid', 'true'); errs.push('device.err.position'); }
        if (!v.source) { d.inputs.source.setAttribute('aria-invalid', 'true'); errs.push('device.err.source'); }
        if (errs.length) {
          var line = d.row.querySelector('.row-error');
          fill(line, errs.map(function (k) { return h('span', { i18n: k }); }));
          line.hidden = false;
        }
      });
      if (focusFirstInvalid(form)) return;
      var body = { name: name, kind: kindSel.value, devices: devices.map(function (d) { return encodeDevice(d.value); }) };
      var wasEditing = editing;
      pending(form, submit, function () {
        var req = wasEditing
          ? api('PATCH', '/api/classrooms/' + enc(wasEditing.id), body)
          : api('POST', '/api/schools/' + enc(schoolId) + '/classrooms', body);
        return req.then(function () {
          toastOk(wasEditing ? 'toast.saved' : 'classroom.created', { name: name });
          resetForm(null);
          load();
        }, function (err) {
          formFailed(form, 'classroom.saveFailed', err, function (f) {
            return f === 'name' ? nameIn : f === 'kind' ? kindSel : /^devices/.test(f) ? devicesSet : null;
          });
        });
      });
    });

    function render(list) {
      empty(tbody);
      if (!list.length) {
        append(tbody, h('tr', null, h('td', { colspan: '4', class: 'empty-cell', i18n: 'classroom.none' })));
        return;
      }
      list.forEach(function (c) {
        var actions = h('td', { class: 'actions' });
        function restore() {
          var edit = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.edit', data: { action: 'edit' } });
          var del = h('button', { type: 'button', class: 'btn btn-small btn-danger', i18n: 'common.delete', data: { action: 'delete' } });
          fill(actions, edit, del);
          edit.addEventListener('click', function () { resetForm(c); nameIn.focus(); form.scrollIntoView({ block: 'start' }); });
          del.addEventListener('click', function () {
            confirmInline(actions, 'classroom.confirmDelete', { name: c.name }, 'common.delete', function () {
              return api('DELETE', '/api/classrooms/' + enc(c.id)).then(function () {
                toastOk('toast.deleted', { name: c.name });
                if (editing && editing.id === c.id) resetForm(null);
                load();
              }, function (err) { notifyError('classroom.deleteFailed', err); });
            }, restore);
          });
        }
        restore();
        var devs = arr(c.devices).map(decodeDevice);
        append(tbody, h('tr', { data: { classroom: c.id } },
          h('td', { class: 'strong', text: c.name }),
          h('td', null, h('span', { class: 'badge badge-kind-' + c.kind, i18n: 'classroom.kind.' + c.kind })),
          h('td', { class: 'chips' }, devs.length ? devs.map(function (d) {
            return h('span', { class: 'chip', title: d.source },
              h('span', { i18n: 'device.kind.' + d.kind }),
              d.kind === 'camera' && d.position ? h('span', { i18n: 'device.position.' + d.position }) : null,
              h('span', { class: 'chip-id', text: d.id }));
          }) : h('span', { class: 'muted', i18n: 'device.none' })),
          actions));
      });
    }

    function load() {
      delete cache['classrooms:' + schoolId];
      getClassrooms(schoolId).then(function (list) {
        errBox.hidden = true;
        render(list);
      }, function (err) { notifyError('load.classrooms', err, errBox); });
    }

    resetForm(null);
    load();
  };

  /* ---- 作息时间 (bell schedule) ---- */

  /**
   * Client checks, mirroring what the server enforces: HH:MM, start < end, and each period starts
   * no earlier than the previous one ends (ascending, no overlap). Returns [{i, field, key, vars}].
   */
  function validateBells(periods) {
    var errs = [];
    periods.forEach(function (p, i) {
      var s = toMinutes(p.start);
      var e = toMinutes(p.end);
      if (s == null) errs.push({ i: i, field: 'start', key: 'bells.err.format' });
      if (e == null) errs.push({ i: i, field: 'end', key: 'bells.err.format' });
      if (s != null && e != null && s >= e) errs.push({ i: i, field: 'end', key: 'bells.err.order' });
      if (i > 0 && s != null) {
        var ps = toMinutes(periods[i - 1].start);
        var pe = toMinutes(periods[i - 1].end);
        if (ps != null && s <= ps) errs.push({ i: i, field: 'start', key: 'bells.err.ascending', vars: { n: i, start: periods[i - 1].start } });
        else if (pe != null && s < pe) errs.push({ i: i, field: 'start', key: 'bells.err.overlap', vars: { n: i, end: periods[i - 1].end } });
      }
    });
    return errs;
  }

  VIEWS.bells = function (view, schoolId) {
    var fromDistrict = !!schoolId;
    schoolId = schoolId || state.me.school_id;
    append(view, viewHead('tab.bells', schoolId, fromDistrict));
    if (!schoolId) { noSchool(view); return; }
    var errBox = noticeBox();
    var periods = []; // [{start, end}] in display order; period number = index + 1
    var tbody = h('tbody', { id: 'bells-rows' });
    var addBtn = h('button', { type: 'button', class: 'btn', id: 'bells-add', i18n: 'bells.add' });
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'bells-submit', i18n: 'common.save' });
    var reload = h('button', { type: 'button', class: 'btn btn-big', id: 'bells-reload', i18n: 'bells.reload' });
    var form = h('form', { class: 'panel form', id: 'bells-form', novalidate: true },
      h('p', { class: 'hint', i18n: 'bells.hint' }),
      h('table', { class: 'table bells-table', id: 'bells-table' },
        h('thead', null, h('tr', null,
          h('th', { i18n: 'bells.period' }), h('th', { i18n: 'bells.start' }), h('th', { i18n: 'bells.end' }),
          h('th', { i18n: 'bells.length' }), h('th', { i18n: 'common.actions' }))),
        tbody),
      addBtn, formErrorBox(),
      h('div', { class: 'form-actions' }, submit, reload));
    append(view, errBox, form);

    function lengthText(p) {
      var s = toMinutes(p.start);
      var e = toMinutes(p.end);
      return s != null && e != null && e > s ? { k: 'bells.minutes', vars: { n: e - s } } : '—';
    }

    function render() {
      empty(tbody);
      if (!periods.length) append(tbody, h('tr', null, h('td', { colspan: '5', class: 'empty-cell', i18n: 'bells.none' })));
      periods.forEach(function (p, i) {
        var len = h('td', { class: 'muted' });
        function showLen() { fill(len, h('span', { i18n: 'common.text', vars: { text: lengthText(p) } })); }
        var start = h('input', { class: 'input time-input', id: 'bell-start-' + i, type: 'text', inputmode: 'numeric', maxlength: '5', placeholder: 'HH:MM', value: p.start, data: { i: i, f: 'start' }, i18nAttr: { 'aria-label': 'bells.startOf' }, vars: { n: i + 1 } });
        var end = h('input', { class: 'input time-input', id: 'bell-end-' + i, type: 'text', inputmode: 'numeric', maxlength: '5', placeholder: 'HH:MM', value: p.end, data: { i: i, f: 'end' }, i18nAttr: { 'aria-label': 'bells.endOf' }, vars: { n: i + 1 } });
        [start, end].forEach(function (inp) {
          inp.addEventListener('input', function () { p[inp.getAttribute('data-f')] = inp.value; showLen(); });
          inp.addEventListener('blur', function () {
            inp.value = normTime(inp.value);
            p[inp.getAttribute('data-f')] = inp.value;
            showLen();
            if (inp.getAttribute('aria-invalid')) validate(false);
          });
        });
        var remove = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.remove', i18nAttr: { 'aria-label': 'bells.removeN' }, vars: { n: i + 1 } });
        remove.addEventListener('click', function () { periods.splice(i, 1); render(); });
        showLen();
        append(tbody,
          h('tr', { data: { period: i + 1 } },
            h('td', { class: 'strong', i18n: 'occ.period', vars: { n: i + 1 } }),
            h('td', null, start, h('div', { class: 'field-error', id: start.id + '-error' })),
            h('td', null, end, h('div', { class: 'field-error', id: end.id + '-error' })),
            len, h('td', null, remove)));
        start.setAttribute('aria-describedby', start.id + '-error');
        end.setAttribute('aria-describedby', end.id + '-error');
      });
    }

    /** Shows the client errors; returns whether the table is valid. */
    function validate(focus) {
      clearFormErrors(form);
      periods.forEach(function (p) { p.start = normTime(p.start); p.end = normTime(p.end); });
      var errs = validateBells(periods);
      errs.forEach(function (e) {
        var inp = $('bell-' + e.field + '-' + e.i);
        if (inp) { inp.value = periods[e.i][e.field]; if (!inp.getAttribute('aria-invalid')) setFieldError(inp, e.key, e.vars); }
      });
      if (errs.length) showFormError(form, h('span', { i18n: 'bells.err.summary', vars: { n: errs.length } }));
      if (focus) focusFirstInvalid(form);
      return !errs.length;
    }

    addBtn.addEventListener('click', function () {
      var last = periods[periods.length - 1];
      var e = last ? toMinutes(last.end) : null;
      var s = e != null ? e + 10 : 8 * 60;
      periods.push({ start: fromMinutes(s), end: fromMinutes(s + 45) });
      render();
      var inp = $('bell-start-' + (periods.length - 1));
      if (inp) inp.focus();
    });

    reload.addEventListener('click', load);

    /** The server's `field` for a period: periods[2].start, periods.2.end, periods[2] (0-based index). */
    function serverField(f) {
      var m = /periods\D*(\d+)\D*(start|end)?/.exec(f || '');
      if (!m) return null;
      return $('bell-' + (m[2] || 'start') + '-' + m[1]);
    }

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!validate(true)) return;
      if (!periods.length) { showFormError(form, h('span', { i18n: 'bells.err.empty' })); return; }
      var body = { periods: periods.map(function (p, i) { return { period: i + 1, start: p.start, end: p.end }; }) };
      pending(form, submit, function () {
        return api('PUT', '/api/schools/' + enc(schoolId) + '/bells', body).then(function (res) {
          toastOk('bells.saved');
          setFrom(res && res.periods ? res : body);
        }, function (err) { formFailed(form, 'bells.saveFailed', err, serverField); });
      });
    });

    function setFrom(res) {
      periods = arr(res && res.periods).slice().sort(function (a, b) { return a.period - b.period; })
        .map(function (p) { return { start: p.start || '', end: p.end || '' }; });
      render();
    }

    function load() {
      clearFormErrors(form);
      api('GET', '/api/schools/' + enc(schoolId) + '/bells').then(function (res) {
        errBox.hidden = true;
        setFrom(res);
      }, function (err) { notifyError('bells.loadFailed', err, errBox); });
    }

    render();
    load();
  };

  /* ---- 账号 (accounts) ---- */

  VIEWS.accounts = function (view) {
    var me = state.me;
    var district = me.role === 'district_admin';
    var roles = district ? ['school_admin', 'teacher', 'classroom', 'reviewer', 'district_admin'] : ['teacher', 'classroom', 'reviewer'];
    var schoolBound = { school_admin: true, teacher: true, classroom: true };
    append(view, viewHead('tab.accounts', district ? null : me.school_id, false));
    var errBox = noticeBox();
    var search = h('input', { class: 'input', id: 'users-search', type: 'search', i18nAttr: { placeholder: 'users.search', 'aria-label': 'users.search' } });
    var tbody = h('tbody');
    var table = h('table', { class: 'table', id: 'users-table' },
      h('thead', null, h('tr', null,
        h('th', { i18n: 'users.username' }), h('th', { i18n: 'users.displayName' }), h('th', { i18n: 'users.role' }),
        district ? h('th', { i18n: 'users.school' }) : null, h('th', { i18n: 'users.classroom' }),
        h('th', { i18n: 'users.status' }), h('th', { i18n: 'common.actions' }))),
      tbody);
    append(view, errBox, h('div', { class: 'panel' }, h('div', { class: 'toolbar' }, search), table));

    var uname = h('input', { class: 'input', id: 'user-username', type: 'text', maxlength: '64', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' });
    var dname = h('input', { class: 'input', id: 'user-display-name', type: 'text', maxlength: '100', autocomplete: 'off' });
    var pass = h('input', { class: 'input', id: 'user-password', type: 'password', maxlength: '128', autocomplete: 'new-password' });
    var roleSel = h('select', { class: 'input', id: 'user-role', value: roles[0] === 'school_admin' ? 'school_admin' : 'teacher' }, options(roles, 'role.'));
    var schoolSel = district ? h('select', { class: 'input', id: 'user-school' }, h('option', { value: '', i18n: 'common.choose' })) : null;
    var roomSel = h('select', { class: 'input', id: 'user-classroom' }, h('option', { value: '', i18n: 'common.choose' }));
    var roomField = field('users.classroom', roomSel);
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'user-submit', i18n: 'users.create' });
    var form = h('form', { class: 'panel form', id: 'user-form', novalidate: true },
      h('h2', { i18n: 'users.addTitle' }),
      h('div', { class: 'form-grid' },
        field('users.username', uname), field('users.displayName', dname), field('users.password', pass),
        field('users.role', roleSel), schoolSel ? field('users.school', schoolSel) : null, roomField),
      formErrorBox(), h('div', { class: 'form-actions' }, submit));
    append(view, form);

    var users = [];

    function formSchool() { return district ? schoolSel.value : me.school_id; }

    function syncRoomChoices() {
      var need = roleSel.value === 'classroom';
      roomField.hidden = !need;
      var sid = formSchool();
      empty(roomSel);
      append(roomSel, h('option', { value: '', i18n: 'common.choose' }));
      if (!need || !sid) return;
      getClassrooms(sid).then(function (list) {
        list.forEach(function (c) { append(roomSel, h('option', { value: c.id, text: c.name })); });
      }, function (err) { notifyError('load.classrooms', err); });
    }
    roleSel.addEventListener('change', syncRoomChoices);
    if (schoolSel) schoolSel.addEventListener('change', syncRoomChoices);
    search.addEventListener('input', render);

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var body = { username: uname.value.trim(), display_name: dname.value.trim(), password: pass.value, role: roleSel.value };
      if (!body.username) setFieldError(uname, 'err.required');
      if (!body.display_name) setFieldError(dname, 'err.required');
      if (!body.password) setFieldError(pass, 'err.required');
      var sid = formSchool();
      if (sid) body.school_id = sid;
      else if (schoolBound[body.role] && schoolSel) setFieldError(schoolSel, 'users.err.school');
      if (body.role === 'classroom') {
        if (roomSel.value) body.classroom_id = roomSel.value;
        else setFieldError(roomSel, 'users.err.classroom');
      }
      if (focusFirstInvalid(form)) return;
      pending(form, submit, function () {
        return api('POST', '/api/users', body).then(function () {
          toastOk('users.created', { name: body.username });
          uname.value = '';
          dname.value = '';
          pass.value = '';
          load();
        }, function (err) {
          formFailed(form, 'users.createFailed', err, {
            username: uname, display_name: dname, password: pass, role: roleSel,
            school_id: schoolSel, classroom_id: roomSel
          });
        });
      });
    });

    function render() {
      var q = search.value.trim().toLowerCase();
      empty(tbody);
      var shown = users.filter(function (u) {
        return !q || String(u.username).toLowerCase().indexOf(q) >= 0 || String(u.display_name || '').toLowerCase().indexOf(q) >= 0;
      });
      if (!shown.length) {
        append(tbody, h('tr', null, h('td', { colspan: district ? '7' : '6', class: 'empty-cell', i18n: 'users.none' })));
        return;
      }
      shown.forEach(function (u) {
        var actions = h('td', { class: 'actions' });
        function restore() {
          empty(actions);
          if (u.id === me.id) { append(actions, h('span', { class: 'muted', i18n: 'users.self' })); return; }
          var toggle = h('button', { type: 'button', class: 'btn btn-small' + (u.disabled ? '' : ' btn-danger'), i18n: u.disabled ? 'users.enable' : 'users.disable', data: { action: u.disabled ? 'enable' : 'disable' } });
          var reset = h('button', { type: 'button', class: 'btn btn-small', i18n: 'users.resetPassword', data: { action: 'password' } });
          append(actions, toggle, reset);
          toggle.addEventListener('click', function () {
            toggle.disabled = true;
            reset.disabled = true;
            api('PATCH', '/api/users/' + enc(u.id), { disabled: !u.disabled }).then(function (res) {
              u.disabled = res && typeof res.disabled === 'boolean' ? res.disabled : !u.disabled;
              toastOk(u.disabled ? 'users.disabledOk' : 'users.enabledOk', { name: u.username });
              render();
            }, function (err) {
              notifyError('users.updateFailed', err);
              toggle.disabled = false;
              reset.disabled = false;
            });
          });
          reset.addEventListener('click', function () {
            var pw = h('input', { class: 'input input-small', type: 'password', autocomplete: 'new-password', id: 'reset-password-' + u.id, i18nAttr: { 'aria-label': 'users.newPassword', placeholder: 'users.newPassword' } });
            var save = h('button', { type: 'submit', class: 'btn btn-small btn-primary', i18n: 'common.save' });
            var cancel = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.cancel' });
            var mini = h('form', { class: 'inline-form', novalidate: true }, pw, save, cancel, formErrorBox());
            fill(actions, mini);
            pw.focus();
            cancel.addEventListener('click', restore);
            mini.addEventListener('submit', function (e) {
              e.preventDefault();
              if (!pw.value) { pw.setAttribute('aria-invalid', 'true'); pw.focus(); return; }
              pending(mini, save, function () {
                return api('PATCH', '/api/users/' + enc(u.id), { password: pw.value }).then(function () {
                  toastOk('users.passwordSet', { name: u.username });
                  restore();
                }, function (err) { formFailed(mini, 'users.updateFailed', err, { password: pw }); });
              });
            });
          });
        }
        restore();
        append(tbody, h('tr', { class: u.disabled ? 'row-disabled' : '', data: { user: u.id } },
          h('td', { class: 'strong', text: u.username }),
          h('td', { text: u.display_name || '' }),
          h('td', { i18n: 'common.text', vars: { text: roleLabel(u.role) } }),
          district ? h('td', { text: u.school_id ? schoolName(u.school_id) : '—' }) : null,
          h('td', { text: u.classroom_id ? classroomName(u.classroom_id) : '—' }),
          h('td', null, h('span', { class: 'badge ' + (u.disabled ? 'badge-off' : 'badge-on'), i18n: u.disabled ? 'users.disabled' : 'users.active' })),
          actions));
      });
    }

    function load() {
      delete cache.users;
      getUsers().then(function (list) {
        users = list.slice().sort(function (a, b) { return String(a.username).localeCompare(String(b.username)); });
        errBox.hidden = true;
        render();
        // Classroom accounts show their room's name: load the rooms of just those schools.
        var need = {};
        users.forEach(function (u) { if (u.classroom_id && u.school_id && !names.classroom[u.classroom_id]) need[u.school_id] = true; });
        var ids = Object.keys(need);
        if (ids.length) settle(ids.map(getClassrooms)).then(function () { if (view.isConnected) render(); });
      }, function (err) { notifyError('users.loadFailed', err, errBox); });
    }

    // Names for the table: schools (district) or our own classrooms (school admin).
    var lookups = district
      ? getSchools().then(function (list) {
        list.forEach(function (s) { append(schoolSel, h('option', { value: s.id, text: s.name })); });
      })
      : (me.school_id ? getClassrooms(me.school_id) : Promise.resolve([]));
    lookups.catch(function (err) { notifyError(district ? 'load.schools' : 'load.classrooms', err); })
      .then(function () { render(); syncRoomChoices(); });
    load();
  };

  /* ======================================================================================
   * 9. District admin: schools, pairings, terms, subjects, the unified week timetable
   * ==================================================================================== */

  var SCHOOL_KINDS = ['urban', 'rural', 'teaching_point'];
  var SCOPES = ['county', 'prefecture', 'province'];

  /* ---- 学校 ---- */

  VIEWS.schools = function (view) {
    append(view, viewHead('tab.schools', null, false));
    var errBox = noticeBox();
    var tbody = h('tbody');
    append(view, errBox, h('div', { class: 'panel' }, h('table', { class: 'table', id: 'schools-table' },
      h('thead', null, h('tr', null, h('th', { i18n: 'school.name' }), h('th', { i18n: 'school.kind' }), h('th', { i18n: 'common.actions' }))),
      tbody)));

    var nameIn = h('input', { class: 'input', id: 'school-name', type: 'text', maxlength: '100' });
    var kindSel = h('select', { class: 'input', id: 'school-kind', value: 'urban' }, options(SCHOOL_KINDS, 'school.kind.'));
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'school-submit', i18n: 'school.create' });
    var form = h('form', { class: 'panel form', id: 'school-form', novalidate: true },
      h('h2', { i18n: 'school.addTitle' }),
      h('div', { class: 'form-row' }, field('school.name', nameIn, 'grow'), field('school.kind', kindSel)),
      formErrorBox(), h('div', { class: 'form-actions' }, submit));
    append(view, form);

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var body = { name: nameIn.value.trim(), kind: kindSel.value };
      if (!body.name) { setFieldError(nameIn, 'err.required'); nameIn.focus(); return; }
      pending(form, submit, function () {
        return api('POST', '/api/schools', body).then(function () {
          toastOk('school.created', { name: body.name });
          nameIn.value = '';
          load();
        }, function (err) { formFailed(form, 'school.saveFailed', err, { name: nameIn, kind: kindSel }); });
      });
    });

    function render(list) {
      empty(tbody);
      if (!list.length) { append(tbody, h('tr', null, h('td', { colspan: '3', class: 'empty-cell', i18n: 'school.none' }))); return; }
      list.forEach(function (s) {
        var nameCell = h('td', { class: 'strong' });
        var kindCell = h('td');
        var actions = h('td', { class: 'actions' });
        function show() {
          fill(nameCell, h('span', { text: s.name }));
          fill(kindCell, h('span', { class: 'badge', i18n: 'school.kind.' + s.kind }));
          var edit = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.edit', data: { action: 'edit' } });
          fill(actions, edit,
            h('a', { class: 'btn btn-small', href: '#/schools/' + enc(s.id) + '/classrooms', i18n: 'tab.classrooms' }),
            h('a', { class: 'btn btn-small', href: '#/schools/' + enc(s.id) + '/bells', i18n: 'tab.bells' }));
          edit.addEventListener('click', editRow);
        }
        function editRow() {
          var n = h('input', { class: 'input input-small', id: 'school-edit-name-' + s.id, type: 'text', value: s.name, i18nAttr: { 'aria-label': 'school.name' } });
          var k = h('select', { class: 'input input-small', value: s.kind, i18nAttr: { 'aria-label': 'school.kind' } }, options(SCHOOL_KINDS, 'school.kind.'));
          var save = h('button', { type: 'button', class: 'btn btn-small btn-primary', i18n: 'common.save' });
          var cancel = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.cancel' });
          fill(nameCell, n);
          fill(kindCell, k);
          fill(actions, save, cancel);
          n.focus();
          cancel.addEventListener('click', show);
          save.addEventListener('click', function () {
            var body = { name: n.value.trim(), kind: k.value };
            if (!body.name) { n.setAttribute('aria-invalid', 'true'); n.focus(); return; }
            save.disabled = true;
            api('PATCH', '/api/schools/' + enc(s.id), body).then(function (res) {
              s.name = res && res.name || body.name;
              s.kind = res && res.kind || body.kind;
              toastOk('toast.saved', { name: s.name });
              show();
            }, function (err) { save.disabled = false; notifyError('school.saveFailed', err); });
          });
        }
        show();
        append(tbody, h('tr', { data: { school: s.id } }, nameCell, kindCell, actions));
      });
    }

    function load() {
      delete cache.schools;
      getSchools().then(function (list) { errBox.hidden = true; render(list); }, function (err) { notifyError('load.schools', err, errBox); });
    }
    load();
  };

  /** A fieldset of checkboxes: items [{value, label}] → element with .values() and .set(values). */
  function checkGroup(id, legendKey, items, onChange) {
    var set = h('fieldset', { class: 'fieldset checks', id: id }, h('legend', { i18n: legendKey }));
    var box = h('div', { class: 'check-list' });
    append(set, box);
    function render(list) {
      var keep = set.values ? set.values() : [];
      empty(box);
      if (!list.length) append(box, h('span', { class: 'muted', i18n: 'common.noneAvailable' }));
      list.forEach(function (it, i) {
        if (it.group) { append(box, h('div', { class: 'check-group', text: it.group })); return; }
        var cb = h('input', { type: 'checkbox', id: id + '-' + i, value: it.value, checked: keep.indexOf(String(it.value)) >= 0, disabled: !!it.disabled });
        if (onChange) cb.addEventListener('change', onChange);
        append(box, h('label', { class: 'check' + (it.disabled ? ' check-disabled' : ''), for: cb.id }, cb, h('span', { text: it.label })));
      });
    }
    set.values = function () {
      var out = [];
      var cbs = box.querySelectorAll('input[type=checkbox]');
      for (var i = 0; i < cbs.length; i++) if (cbs[i].checked && !cbs[i].disabled) out.push(cbs[i].value);
      return out;
    };
    set.setItems = render;
    set.clear = function () { var cbs = box.querySelectorAll('input[type=checkbox]'); for (var i = 0; i < cbs.length; i++) cbs[i].checked = false; };
    render(items);
    return set;
  }

  /* ---- 结对 (pairings) ---- */

  VIEWS.pairings = function (view) {
    append(view, viewHead('tab.pairings', null, false));
    var errBox = noticeBox();
    var tbody = h('tbody');
    append(view, errBox, h('div', { class: 'panel' }, h('table', { class: 'table', id: 'pairings-table' },
      h('thead', null, h('tr', null,
        h('th', { i18n: 'pairing.lead' }), h('th', { i18n: 'pairing.receivers' }), h('th', { i18n: 'pairing.scope' }),
        h('th', { i18n: 'pairing.round' }), h('th', { i18n: 'pairing.subjects' }))),
      tbody)));

    var schools = [];
    var subjects = [];
    var leadSel = h('select', { class: 'input', id: 'pairing-lead' }, h('option', { value: '', i18n: 'common.choose' }));
    var receivers = checkGroup('pairing-receivers', 'pairing.receivers', []);
    var scopeSel = h('select', { class: 'input', id: 'pairing-scope', value: 'county' }, options(SCOPES, 'pairing.scope.'));
    var startIn = h('input', { class: 'input', id: 'pairing-start', type: 'date' });
    var endIn = h('input', { class: 'input', id: 'pairing-end', type: 'date' });
    var subjectSet = checkGroup('pairing-subjects', 'pairing.subjects', []);
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'pairing-submit', i18n: 'pairing.create' });
    var form = h('form', { class: 'panel form', id: 'pairing-form', novalidate: true },
      h('h2', { i18n: 'pairing.addTitle' }),
      h('div', { class: 'form-grid' }, field('pairing.lead', leadSel), field('pairing.scope', scopeSel),
        field('pairing.roundStart', startIn), field('pairing.roundEnd', endIn)),
      field('pairing.receivers', receivers, 'wide'),
      field('pairing.subjects', subjectSet, 'wide'),
      h('p', { class: 'hint', i18n: 'pairing.hint' }),
      formErrorBox(), h('div', { class: 'form-actions' }, submit));
    append(view, form);

    function syncReceivers() {
      receivers.setItems(schools.map(function (s) {
        return { value: s.id, label: s.name + ' · ' + t('school.kind.' + s.kind), disabled: String(s.id) === leadSel.value };
      }));
    }
    leadSel.addEventListener('change', syncReceivers);
    startIn.addEventListener('change', function () {
      // A round runs three years: suggest the end when it is still empty.
      if (validDate(startIn.value) && !endIn.value) {
        var d = parseDate(startIn.value);
        d.setUTCFullYear(d.getUTCFullYear() + 3);
        d.setUTCDate(d.getUTCDate() - 1);
        endIn.value = fmtDate(d);
      }
    });

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var body = {
        lead_school_id: leadSel.value, receiving_school_ids: receivers.values(), scope: scopeSel.value,
        round_start: startIn.value, round_end: endIn.value, subject_ids: subjectSet.values()
      };
      if (!body.lead_school_id) setFieldError(leadSel, 'err.required');
      if (!body.receiving_school_ids.length) setFieldError(receivers, 'pairing.err.receivers');
      if (!validDate(body.round_start)) setFieldError(startIn, 'err.date');
      if (!validDate(body.round_end)) setFieldError(endIn, 'err.date');
      else if (validDate(body.round_start) && body.round_end <= body.round_start) setFieldError(endIn, 'err.dateOrder');
      if (focusFirstInvalid(form)) return;
      pending(form, submit, function () {
        return api('POST', '/api/pairings', body).then(function () {
          toastOk('pairing.created');
          receivers.clear();
          subjectSet.clear();
          load();
        }, function (err) {
          formFailed(form, 'pairing.saveFailed', err, {
            lead_school_id: leadSel, receiving_school_ids: receivers, scope: scopeSel,
            round_start: startIn, round_end: endIn, subject_ids: subjectSet
          });
        });
      });
    });

    function render(list) {
      empty(tbody);
      if (!list.length) { append(tbody, h('tr', null, h('td', { colspan: '5', class: 'empty-cell', i18n: 'pairing.none' }))); return; }
      list.forEach(function (p) {
        append(tbody, h('tr', { data: { pairing: p.id } },
          h('td', { class: 'strong', text: schoolName(p.lead_school_id) }),
          h('td', { text: pairingReceivers(p).map(schoolName).join('、') || '—' }),
          h('td', { i18n: 'pairing.scope.' + p.scope }),
          h('td', { text: (p.round_start || '') + ' – ' + (p.round_end || '') }),
          h('td', { text: arr(p.subject_ids).map(function (id) { return refName(id, 'subject'); }).join('、') || '—' })));
      });
    }

    function load() {
      delete cache.pairings;
      settle([getSchools(), getSubjects(), getPairings()]).then(function (rs) {
        if (rs[0].ok) {
          schools = rs[0].value;
          var keep = leadSel.value;
          empty(leadSel);
          append(leadSel, h('option', { value: '', i18n: 'common.choose' }));
          schools.forEach(function (s) { append(leadSel, h('option', { value: s.id, text: s.name })); });
          leadSel.value = keep;
          syncReceivers();
        } else notifyError('load.schools', rs[0].reason, errBox);
        if (rs[1].ok) {
          subjects = rs[1].value;
          subjectSet.setItems(subjects.map(function (s) { return { value: s.id, label: s.name }; }));
        } else notifyError('load.subjects', rs[1].reason, errBox);
        if (rs[2].ok) render(rs[2].value);
        else notifyError('pairing.loadFailed', rs[2].reason, errBox);
        if (rs[0].ok && rs[1].ok && rs[2].ok) errBox.hidden = true;
      });
    }
    load();
  };

  /* ---- 学期 (terms with holidays and make-up days) ---- */

  VIEWS.terms = function (view) {
    append(view, viewHead('tab.terms', null, false));
    var errBox = noticeBox();
    var tbody = h('tbody');
    append(view, errBox, h('div', { class: 'panel' }, h('table', { class: 'table', id: 'terms-table' },
      h('thead', null, h('tr', null, h('th', { i18n: 'term.name' }), h('th', { i18n: 'term.dates' }), h('th', { i18n: 'term.days' }))),
      tbody)));

    var nameIn = h('input', { class: 'input', id: 'term-name', type: 'text', maxlength: '100', i18nAttr: { placeholder: 'term.namePlaceholder' } });
    var startIn = h('input', { class: 'input', id: 'term-start', type: 'date' });
    var endIn = h('input', { class: 'input', id: 'term-end', type: 'date' });
    var dayRows = h('div', { class: 'day-rows', id: 'term-day-rows' });
    var daysSet = h('fieldset', { class: 'fieldset', id: 'term-days' }, h('legend', { i18n: 'term.days' }),
      h('p', { class: 'hint', i18n: 'term.daysHint' }), dayRows);
    var addDay = h('button', { type: 'button', class: 'btn btn-small', id: 'term-day-add', i18n: 'term.addDay' });
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'term-submit', i18n: 'term.create' });
    var form = h('form', { class: 'panel form', id: 'term-form', novalidate: true },
      h('h2', { i18n: 'term.addTitle' }),
      h('div', { class: 'form-grid' }, field('term.name', nameIn), field('term.start', startIn), field('term.end', endIn)),
      field('term.days', daysSet, 'wide'), addDay,
      formErrorBox(), h('div', { class: 'form-actions' }, submit));
    append(view, form);

    var seq = 0;
    function dayRow() {
      var n = ++seq;
      var date = h('input', { class: 'input', type: 'date', id: 'term-day-date-' + n, data: { f: 'date' }, i18nAttr: { 'aria-label': 'term.day.date' } });
      var kind = h('select', { class: 'input', id: 'term-day-kind-' + n, data: { f: 'kind' }, i18nAttr: { 'aria-label': 'term.day.kind' } }, options(['holiday', 'makeup'], 'term.day.kind.'));
      var follows = h('select', { class: 'input', id: 'term-day-follows-' + n, data: { f: 'follows' }, i18nAttr: { 'aria-label': 'term.day.follows' } },
        h('option', { value: '', i18n: 'term.day.followsChoose' }),
        [1, 2, 3, 4, 5, 6, 7].map(function (w) { return h('option', { value: String(w), i18n: 'term.day.followsWd', vars: { wd: { k: 'wd.' + w } } }); }));
      var remove = h('button', { type: 'button', class: 'btn btn-small', i18n: 'common.remove' });
      var errLine = h('div', { class: 'row-error', id: 'term-day-' + n + '-error', 'aria-live': 'polite', hidden: true });
      var row = h('div', { class: 'day-row' }, date, kind, follows, remove, errLine);
      function sync() { follows.disabled = kind.value !== 'makeup'; if (follows.disabled) follows.value = ''; }
      kind.addEventListener('change', sync);
      sync();
      remove.addEventListener('click', function () { row.parentNode.removeChild(row); });
      return row;
    }
    addDay.addEventListener('click', function () { var r = dayRow(); append(dayRows, r); r.querySelector('input').focus(); });

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var body = { name: nameIn.value.trim(), start_date: startIn.value, end_date: endIn.value, days: [] };
      if (!body.name) setFieldError(nameIn, 'err.required');
      if (!validDate(body.start_date)) setFieldError(startIn, 'err.date');
      if (!validDate(body.end_date)) setFieldError(endIn, 'err.date');
      else if (validDate(body.start_date) && body.end_date < body.start_date) setFieldError(endIn, 'err.dateOrder');
      var rows = dayRows.querySelectorAll('.day-row');
      var seen = {};
      for (var i = 0; i < rows.length; i++) {
        var date = rows[i].querySelector('[data-f=date]');
        var kind = rows[i].querySelector('[data-f=kind]');
        var follows = rows[i].querySelector('[data-f=follows]');
        var errs = [];
        if (!validDate(date.value)) { date.setAttribute('aria-invalid', 'true'); errs.push('err.date'); }
        else if (validDate(body.start_date) && validDate(body.end_date) && (date.value < body.start_date || date.value > body.end_date)) {
          date.setAttribute('aria-invalid', 'true'); errs.push('term.err.outside');
        } else if (seen[date.value]) { date.setAttribute('aria-invalid', 'true'); errs.push('term.err.duplicate'); }
        seen[date.value] = true;
        if (kind.value === 'makeup' && !follows.value) { follows.setAttribute('aria-invalid', 'true'); errs.push('term.err.follows'); }
        if (errs.length) {
          var line = rows[i].querySelector('.row-error');
          fill(line, errs.map(function (k) { return h('span', { i18n: k }); }));
          line.hidden = false;
        }
        var day = { date: date.value, kind: kind.value };
        if (kind.value === 'makeup' && follows.value) day.follows_weekday = +follows.value;
        body.days.push(day);
      }
      if (focusFirstInvalid(form)) return;
      body.days.sort(function (a, b) { return a.date < b.date ? -1 : a.date > b.date ? 1 : 0; });
      pending(form, submit, function () {
        return api('POST', '/api/terms', body).then(function () {
          toastOk('term.created', { name: body.name });
          nameIn.value = '';
          empty(dayRows);
          load();
        }, function (err) {
          formFailed(form, 'term.saveFailed', err, function (f) {
            return f === 'name' ? nameIn : f === 'start_date' ? startIn : f === 'end_date' ? endIn : /^days/.test(f) ? daysSet : null;
          });
        });
      });
    });

    function render(list) {
      empty(tbody);
      if (!list.length) { append(tbody, h('tr', null, h('td', { colspan: '3', class: 'empty-cell', i18n: 'term.none' }))); return; }
      list.forEach(function (term) {
        var days = arr(term.days);
        append(tbody, h('tr', { data: { term: term.id } },
          h('td', { class: 'strong', text: term.name }),
          h('td', { text: term.start_date + ' – ' + term.end_date }),
          h('td', null, days.length ? h('details', null,
            h('summary', { i18n: 'term.daysCount', vars: {
              holidays: days.filter(function (d) { return d.kind === 'holiday'; }).length,
              makeups: days.filter(function (d) { return d.kind === 'makeup'; }).length
            } }),
            h('ul', { class: 'plain-list' }, days.map(function (d) {
              return h('li', null, h('span', { text: d.date + ' ' }),
                d.kind === 'makeup'
                  ? h('span', { i18n: 'term.day.makeupFollows', vars: { wd: { k: 'wd.' + d.follows_weekday } } })
                  : h('span', { i18n: 'term.day.kind.' + d.kind }));
            }))) : h('span', { class: 'muted', text: '—' }))));
      });
    }

    function load() {
      delete cache.terms;
      getTerms().then(function (list) { errBox.hidden = true; render(list); }, function (err) { notifyError('term.loadFailed', err, errBox); });
    }
    load();
  };

  /* ---- 学科 (subjects) ---- */

  VIEWS.subjects = function (view) {
    append(view, viewHead('tab.subjects', null, false));
    var errBox = noticeBox();
    var listEl = h('ul', { class: 'chip-list', id: 'subjects-list' });
    var nameIn = h('input', { class: 'input', id: 'subject-name', type: 'text', maxlength: '50' });
    var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'subject-submit', i18n: 'subject.create' });
    var form = h('form', { class: 'panel form', id: 'subject-form', novalidate: true },
      h('h2', { i18n: 'subject.addTitle' }),
      h('div', { class: 'form-row' }, field('subject.name', nameIn, 'grow'), h('div', { class: 'form-actions inline' }, submit)),
      formErrorBox());
    append(view, errBox, h('div', { class: 'panel' }, listEl), form);

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFormErrors(form);
      var body = { name: nameIn.value.trim() };
      if (!body.name) { setFieldError(nameIn, 'err.required'); nameIn.focus(); return; }
      pending(form, submit, function () {
        return api('POST', '/api/subjects', body).then(function () {
          toastOk('subject.created', { name: body.name });
          nameIn.value = '';
          load();
        }, function (err) { formFailed(form, 'subject.saveFailed', err, { name: nameIn }); });
      });
    });

    function load() {
      delete cache.subjects;
      getSubjects().then(function (list) {
        errBox.hidden = true;
        empty(listEl);
        if (!list.length) append(listEl, h('li', { class: 'muted', i18n: 'subject.none' }));
        list.forEach(function (s) { append(listEl, h('li', { class: 'chip chip-big', data: { subject: s.id }, text: s.name })); });
      }, function (err) { notifyError('load.subjects', err, errBox); });
    }
    load();
  };

  /* ---- 统一课表 (the unified week timetable) ---- */

  /** Survives tab switches: the term, the date whose week is shown, the school filter. */
  var ttState = { termId: '', date: '', schoolId: '' };

  /** "series/date" keys of the occurrences a conflict names; "series/*" when it gives no date. */
  function conflictKeys(c) {
    var out = [];
    [c.a, c.b].forEach(function (x) {
      if (x == null) return;
      var sid;
      var date = c.date;
      if (typeof x === 'object') {
        sid = x.series_id != null ? x.series_id : x.id;
        date = x.date || date;
      } else {
        var s = String(x);
        var slash = s.indexOf('/');
        if (slash > 0) { sid = s.slice(0, slash); date = s.slice(slash + 1); } else sid = s;
      }
      if (sid != null) out.push(sid + '/' + (date || '*'));
    });
    return out;
  }

  VIEWS.timetable = function (view) {
    var lk = { terms: [], schools: [], classrooms: [], teachers: [], subjects: [], pairings: [] };
    var week = { from: '', to: '', occurrences: [], conflicts: [] };
    var seq = 0;

    var termSel = h('select', { class: 'input', id: 'tt-term', i18nAttr: { 'aria-label': 'tt.term' } });
    var dateIn = h('input', { class: 'input', id: 'tt-date', type: 'date', i18nAttr: { 'aria-label': 'tt.date' } });
    var prev = h('button', { type: 'button', class: 'btn', id: 'tt-prev', i18n: 'tt.prev' });
    var thisWeek = h('button', { type: 'button', class: 'btn', id: 'tt-this', i18n: 'tt.thisWeek' });
    var next = h('button', { type: 'button', class: 'btn', id: 'tt-next', i18n: 'tt.next' });
    var schoolSel = h('select', { class: 'input', id: 'tt-school', i18nAttr: { 'aria-label': 'tt.school' } }, h('option', { value: '', i18n: 'tt.allSchools' }));
    var addJump = h('button', { type: 'button', class: 'btn btn-primary', id: 'tt-add', i18n: 'series.addTitle' });
    var rangeLabel = h('div', { class: 'tt-range', id: 'tt-range', 'aria-live': 'polite' });
    var errBox = noticeBox();
    var conflictsPanel = h('section', { class: 'panel conflicts', id: 'conflicts', 'aria-live': 'polite' });
    var grid = h('div', { class: 'week-grid', id: 'week-grid', role: 'table', 'aria-describedby': 'tt-range' });
    var formHost = h('div', { id: 'series-form-host' });
    append(view,
      h('div', { class: 'view-head' }, h('h1', { i18n: 'tab.timetable' })),
      h('div', { class: 'toolbar tt-toolbar' },
        h('label', { class: 'inline-label', for: 'tt-term', i18n: 'tt.term' }), termSel,
        h('label', { class: 'inline-label', for: 'tt-date', i18n: 'tt.date' }), dateIn,
        prev, thisWeek, next,
        h('label', { class: 'inline-label', for: 'tt-school', i18n: 'tt.school' }), schoolSel, addJump),
      rangeLabel, errBox, conflictsPanel, h('div', { class: 'grid-scroll' }, grid), formHost);

    function currentTerm() {
      for (var i = 0; i < lk.terms.length; i++) if (String(lk.terms[i].id) === termSel.value) return lk.terms[i];
      return null;
    }

    function setDate(d) {
      if (!validDate(d)) return;
      ttState.date = d;
      dateIn.value = d;
      loadWeek();
    }

    termSel.addEventListener('change', function () {
      ttState.termId = termSel.value;
      var term = currentTerm();
      if (term) {
        dateIn.min = term.start_date || '';
        dateIn.max = term.end_date || '';
        var today = todayStr();
        setDate(today >= term.start_date && today <= term.end_date ? today : term.start_date);
      }
      if (seriesForm) seriesForm.setTerm(termSel.value);
    });
    dateIn.addEventListener('change', function () { setDate(dateIn.value); });
    prev.addEventListener('click', function () { setDate(addDays(ttState.date || todayStr(), -7)); });
    next.addEventListener('click', function () { setDate(addDays(ttState.date || todayStr(), 7)); });
    thisWeek.addEventListener('click', function () { setDate(todayStr()); });
    schoolSel.addEventListener('change', function () { ttState.schoolId = schoolSel.value; loadWeek(); });
    addJump.addEventListener('click', function () { if (seriesForm) seriesForm.focus(); });

    /* -- the week -- */

    function loadWeek() {
      var base = ttState.date || todayStr();
      var from = mondayOf(base);
      var to = addDays(from, 6);
      var q = '/api/timetable?from=' + from + '&to=' + to + (ttState.schoolId ? '&school_id=' + enc(ttState.schoolId) : '');
      var mine = ++seq;
      fill(rangeLabel, h('span', { i18n: 'tt.range', vars: { from: from, to: to } }), h('span', { class: 'muted loading', i18n: 'common.loading' }));
      return api('GET', q).then(function (res) {
        if (mine !== seq || !view.isConnected) return;
        errBox.hidden = true;
        week = { from: from, to: to, occurrences: arr(res && res.occurrences), conflicts: arr(res && res.conflicts) };
        fill(rangeLabel, h('span', { i18n: 'tt.range', vars: { from: from, to: to } }));
        renderWeek();
      }, function (err) {
        if (mine !== seq) return;
        fill(rangeLabel, h('span', { i18n: 'tt.range', vars: { from: from, to: to } }));
        notifyError('tt.loadFailed', err, errBox);
      });
    }

    function termDay(date) {
      var term = currentTerm();
      var days = arr(term && term.days);
      for (var i = 0; i < days.length; i++) if (days[i].date === date) return days[i];
      return null;
    }

    function renderWeek() {
      var conflictOf = {}; // "series/date" or "series/*" → [conflict index]
      week.conflicts.forEach(function (c, i) {
        conflictKeys(c).forEach(function (k) { (conflictOf[k] = conflictOf[k] || []).push(i); });
      });
      function conflictsFor(o) {
        return (conflictOf[occKey(o)] || []).concat(conflictOf[o.series_id + '/*'] || []);
      }
      renderConflicts(conflictOf);

      var days = [];
      for (var d = 0; d < 7; d++) days.push(addDays(week.from, d));
      var maxPeriod = 6;
      week.occurrences.forEach(function (o) { if (Number(o.period) > maxPeriod) maxPeriod = Number(o.period); });
      var today = todayStr();
      empty(grid);
      var head = h('div', { class: 'wg-row wg-head', role: 'row' }, h('div', { class: 'wg-corner', role: 'columnheader', i18n: 'bells.period' }));
      days.forEach(function (date, i) {
        var td = termDay(date);
        append(head, h('div', { class: 'wg-day' + (date === today ? ' is-today' : '') + (td ? ' is-' + td.kind : ''), role: 'columnheader', data: { date: date } },
          h('div', { class: 'wg-wd', i18n: 'wd.' + (i + 1) }),
          h('div', { class: 'wg-date', text: shortDate(date) }),
          td ? h('div', { class: 'wg-mark', i18n: td.kind === 'makeup' ? 'term.day.makeupFollows' : 'term.day.kind.holiday', vars: td.kind === 'makeup' ? { wd: { k: 'wd.' + td.follows_weekday } } : null }) : null));
      });
      append(grid, head);
      for (var p = 1; p <= maxPeriod; p++) {
        var row = h('div', { class: 'wg-row', role: 'row' }, h('div', { class: 'wg-period', role: 'rowheader', i18n: 'occ.period', vars: { n: p } }));
        days.forEach(function (date, i) {
          var here = week.occurrences.filter(function (o) { return o.date === date && Number(o.period) === p; })
            .sort(function (a, b) { return occStartMs(a) - occStartMs(b); });
          var cell = h('div', { class: 'wg-cell', role: 'cell', data: { date: date, period: p } });
          here.forEach(function (o) { append(cell, card(o, conflictsFor(o))); });
          if (!here.length) {
            var add = h('button', { type: 'button', class: 'wg-add', text: '+', i18nAttr: { 'aria-label': 'tt.addHere', title: 'tt.addHere' }, vars: { wd: { k: 'wd.' + (i + 1) }, n: p } });
            (function (weekday, period) {
              add.addEventListener('click', function () { if (seriesForm) seriesForm.prefill(weekday, period); });
            })(i + 1, p);
            append(cell, add);
          }
          append(row, cell);
        });
        append(grid, row);
      }
    }

    function renderConflicts() {
      empty(conflictsPanel);
      var n = week.conflicts.length;
      conflictsPanel.classList.toggle('has-conflicts', n > 0);
      append(conflictsPanel, h('h2', { i18n: n ? 'tt.conflicts' : 'tt.noConflicts', vars: { n: n } }));
      if (!n) return;
      var ul = h('ul', { class: 'conflict-list' });
      week.conflicts.forEach(function (c, i) {
        var btn = h('button', { type: 'button', class: 'conflict-item', data: { conflictIndex: i } },
          h('span', { class: 'warn-icon', 'aria-hidden': 'true', text: '⚠' }),
          h('span', { bi: { zh: c.explanation_zh || c.explanation_en || '', en: c.explanation_en || c.explanation_zh || '' } }));
        btn.addEventListener('click', function () { showConflict(c); });
        append(ul, h('li', null, btn));
      });
      append(conflictsPanel, ul);
    }

    function showConflict(c) {
      var first = null;
      conflictKeys(c).forEach(function (k) {
        var sel = /\/\*$/.test(k)
          ? '[data-occurrence^="' + cssEscape(k.slice(0, -1)) + '"]'
          : '[data-occurrence="' + cssEscape(k) + '"]';
        var cards = grid.querySelectorAll(sel);
        for (var i = 0; i < cards.length; i++) {
          first = first || cards[i];
          cards[i].classList.remove('flash');
          void cards[i].offsetWidth; // restart the animation
          cards[i].classList.add('flash');
        }
      });
      if (first) { first.scrollIntoView({ block: 'center' }); first.focus(); }
    }

    function cssEscape(s) { return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, '\\$&'); }

    function card(o, conflicts) {
      var key = occKey(o);
      var actions = h('div', { class: 'occ-actions' });
      var el = h('article', {
        class: 'occ-card' + (conflicts.length ? ' is-conflict' : '') + (occMoved(o) ? ' is-moved' : ''),
        tabindex: '-1',
        data: { occurrence: key, conflict: conflicts.length ? conflicts.join(' ') : null, moved: occMoved(o) ? (o.moved_from || '1') : null, series: o.series_id, date: o.date }
      },
      h('div', { class: 'occ-top' },
        h('span', { class: 'occ-subject', text: refName(o.subject, 'subject') }),
        conflicts.length ? h('span', { class: 'conflict-badge', i18nAttr: { title: 'tt.conflictBadge' } }, h('span', { 'aria-hidden': 'true', text: '⚠' }), h('span', { class: 'sr-only', i18n: 'tt.conflictBadge' })) : null,
        occMoved(o) ? h('span', { class: 'badge badge-moved', i18n: 'occ.moved' }) : null),
      h('div', { class: 'occ-time', text: occTimeRange(o) }),
      h('div', { class: 'occ-route' },
        h('span', { class: 'occ-lead', text: classroomName(o.lead_classroom) }),
        h('span', { class: 'arrow', text: ' → ' }),
        h('span', { text: arr(o.receivers).map(classroomName).join('、') || '—' })),
      o.teacher ? h('div', { class: 'occ-teacher', text: refName(o.teacher, 'user') }) : null,
      actions);
      // An exception names a date of the weekly series; a moved lesson already carries the one
      // exception its original date may have, so it gets no buttons (it shows where it came from).
      var exDate = occMoved(o) ? null : o.date;
      function restore() {
        if (!exDate) {
          fill(actions, o.moved_from
            ? h('span', { class: 'muted small', i18n: 'tt.movedFrom', vars: { date: shortDate(String(o.moved_from)) } })
            : h('span', { class: 'muted small', i18n: 'tt.movedNoActions' }));
          return;
        }
        var cancel = h('button', { type: 'button', class: 'btn btn-tiny', data: { action: 'cancel' }, i18n: 'tt.cancel' });
        var move = h('button', { type: 'button', class: 'btn btn-tiny', data: { action: 'move' }, i18n: 'tt.move' });
        fill(actions, cancel, move);
        cancel.addEventListener('click', function () {
          confirmInline(actions, 'tt.cancelConfirm', { date: shortDate(o.date) }, 'tt.cancelYes', function () {
            return api('POST', '/api/series/' + enc(o.series_id) + '/exceptions', { date: exDate, kind: 'cancel' }).then(function () {
              toastOk('tt.cancelled', { date: o.date });
              loadWeek();
            }, function (err) { notifyError('tt.exceptionFailed', err); });
          }, restore);
        });
        move.addEventListener('click', function () { openMove(o, exDate, move); });
      }
      restore();
      return el;
    }

    /* -- 调课 dialog -- */

    var dialog = null;
    function openMove(o, exDate, opener) {
      if (dialog && dialog.parentNode) dialog.parentNode.removeChild(dialog);
      var term = currentTerm();
      var dateI = h('input', { class: 'input', type: 'date', id: 'move-date', value: o.date, min: term ? term.start_date : null, max: term ? term.end_date : null });
      var periodI = h('input', { class: 'input', type: 'number', id: 'move-period', min: '1', max: '12', step: '1', value: String(o.period) });
      var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'move-submit', i18n: 'tt.moveSubmit' });
      var cancel = h('button', { type: 'button', class: 'btn btn-big', id: 'move-cancel', i18n: 'common.cancel' });
      var form = h('form', { class: 'form', id: 'exception-form', method: 'dialog', novalidate: true },
        h('h2', { i18n: 'tt.moveTitle', vars: { subject: refName(o.subject, 'subject'), date: o.date, n: o.period } }),
        h('div', { class: 'form-row' }, field('tt.newDate', dateI, 'grow'), field('tt.newPeriod', periodI)),
        formErrorBox(), h('div', { class: 'form-actions' }, submit, cancel));
      dialog = h('dialog', { class: 'dialog', id: 'exception-dialog', 'aria-labelledby': 'move-title' }, form);
      form.querySelector('h2').id = 'move-title';
      document.body.appendChild(dialog);
      function close() {
        if (dialog.open && dialog.close) dialog.close();
        if (dialog.parentNode) dialog.parentNode.removeChild(dialog);
        if (opener && opener.isConnected) opener.focus();
      }
      cancel.addEventListener('click', close);
      dialog.addEventListener('cancel', function (e) { e.preventDefault(); close(); });
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        clearFormErrors(form);
        var p = +periodI.value;
        if (!validDate(dateI.value)) setFieldError(dateI, 'err.date');
        if (!(p >= 1 && p <= 20 && Math.floor(p) === p)) setFieldError(periodI, 'series.err.period');
        if (!dateI.getAttribute('aria-invalid') && !periodI.getAttribute('aria-invalid') && dateI.value === o.date && p === o.period) {
          setFieldError(periodI, 'tt.err.sameSlot');
        }
        if (focusFirstInvalid(form)) return;
        pending(form, submit, function () {
          return api('POST', '/api/series/' + enc(o.series_id) + '/exceptions', { date: exDate, kind: 'move', new_date: dateI.value, new_period: p }).then(function () {
            toastOk('tt.moved', { date: dateI.value, n: p });
            close();
            loadWeek();
          }, function (err) { formFailed(form, 'tt.exceptionFailed', err, { new_date: dateI, new_period: periodI, date: dateI }); });
        });
      });
      if (dialog.showModal) dialog.showModal(); else dialog.setAttribute('open', '');
      dateI.focus();
    }

    /* -- 新增课程 (POST /api/series with an Idempotency-Key) -- */

    var seriesForm = null;

    function buildSeriesForm() {
      var termS = h('select', { class: 'input', id: 'series-term' }, h('option', { value: '', i18n: 'common.choose' }),
        lk.terms.map(function (x) { return h('option', { value: x.id, text: x.name + '（' + x.start_date + ' – ' + x.end_date + '）' }); }));
      var pairS = h('select', { class: 'input', id: 'series-pairing' }, h('option', { value: '', i18n: 'series.noPairing' }),
        lk.pairings.map(function (p) {
          return h('option', { value: p.id, text: schoolName(p.lead_school_id) + ' → ' + pairingReceivers(p).map(schoolName).join('、') });
        }));
      var wdS = h('select', { class: 'input', id: 'series-weekday' }, [1, 2, 3, 4, 5, 6, 7].map(function (w) { return h('option', { value: String(w), i18n: 'wd.' + w }); }));
      var perS = h('select', { class: 'input', id: 'series-period' }, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(function (n) { return h('option', { value: String(n), i18n: 'occ.period', vars: { n: n } }); }));
      var leadS = h('select', { class: 'input', id: 'series-lead' });
      var recv = checkGroup('series-receivers', 'series.receivers', []);
      var teachS = h('select', { class: 'input', id: 'series-teacher' });
      var subjS = h('select', { class: 'input', id: 'series-subject' });
      var conflictBox = h('div', { class: 'conflict-answer', id: 'series-conflict', role: 'alert', hidden: true });
      var submit = h('button', { type: 'submit', class: 'btn btn-primary btn-big', id: 'series-submit', i18n: 'series.submit' });
      var form = h('form', { class: 'panel form', id: 'add-series-form', novalidate: true },
        h('h2', { id: 'add-series-title', i18n: 'series.addTitle' }),
        h('div', { class: 'form-grid' },
          field('series.term', termS), field('series.pairing', pairS), field('series.weekday', wdS), field('series.period', perS),
          field('series.lead', leadS), field('series.teacher', teachS), field('series.subject', subjS)),
        field('series.receivers', recv, 'wide'),
        conflictBox, formErrorBox(), h('div', { class: 'form-actions' }, submit));

      function pairing() {
        for (var i = 0; i < lk.pairings.length; i++) if (String(lk.pairings[i].id) === pairS.value) return lk.pairings[i];
        return null;
      }

      function inSchools(ids) { var set = {}; ids.forEach(function (x) { set[x] = true; }); return function (c) { return set[c.school_id]; }; }

      /** Options follow the chosen pairing: its lead school's lead rooms, its receiving schools' rooms. */
      function syncChoices() {
        var p = pairing();
        var leadFilter = p ? inSchools([p.lead_school_id]) : function () { return true; };
        var recvFilter = p ? inSchools(pairingReceivers(p)) : function () { return true; };
        var keepLead = leadS.value;
        empty(leadS);
        append(leadS, h('option', { value: '', i18n: 'common.choose' }));
        var leads = lk.classrooms.filter(function (c) { return c.kind === 'lead' && leadFilter(c); });
        groupBySchool(leads).forEach(function (g) {
          append(leadS, h('optgroup', { label: g.name }, g.rooms.map(function (c) { return h('option', { value: c.id, text: c.name }); })));
        });
        leadS.value = keepLead;
        if (leadS.value !== keepLead) leadS.value = '';
        syncReceivers(recvFilter);
        var keepSubj = subjS.value;
        empty(subjS);
        append(subjS, h('option', { value: '', i18n: 'common.choose' }));
        var allowed = p && arr(p.subject_ids).length ? arr(p.subject_ids).map(String) : null;
        lk.subjects.filter(function (s) { return !allowed || allowed.indexOf(String(s.id)) >= 0; })
          .forEach(function (s) { append(subjS, h('option', { value: s.id, text: s.name })); });
        subjS.value = keepSubj;
        if (subjS.value !== keepSubj) subjS.value = '';
      }

      function syncReceivers(filter) {
        if (!filter) {
          var p = pairing();
          filter = p ? inSchools(pairingReceivers(p)) : function () { return true; };
        }
        var items = [];
        groupBySchool(lk.classrooms.filter(function (c) { return (c.kind === 'receiving' || c.kind === 'lead') && filter(c); })).forEach(function (g) {
          items.push({ group: g.name });
          g.rooms.forEach(function (c) {
            items.push({ value: c.id, label: c.name + ' · ' + t('classroom.kind.' + c.kind), disabled: String(c.id) === leadS.value });
          });
        });
        recv.setItems(items);
      }

      empty(teachS);
      append(teachS, h('option', { value: '', i18n: 'common.choose' }));
      lk.teachers.forEach(function (u) {
        append(teachS, h('option', { value: u.id, text: (u.display_name || u.username) + (u.school_id ? '（' + schoolName(u.school_id) + '）' : '') }));
      });
      pairS.addEventListener('change', syncChoices);
      leadS.addEventListener('change', function () { syncReceivers(); });
      syncChoices();
      termS.value = ttState.termId || '';

      /*
       * Idempotency: one key per submission. A double click or a retry of the same body after no
       * answer / a server or network failure reuses the key (the server answers the first result);
       * a changed body, a success or a definitive refusal (4xx other than 401/408/429) starts a new key.
       */
      var attempt = null; // {json, key}
      function keyFor(body) {
        var json = JSON.stringify(body);
        if (!attempt || attempt.json !== json) attempt = { json: json, key: randomKey() };
        form.setAttribute('data-idempotency-key', attempt.key);
        return attempt.key;
      }

      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        if (form.getAttribute('data-pending') === '1') return;
        clearFormErrors(form);
        conflictBox.hidden = true;
        empty(conflictBox);
        var body = {
          term_id: termS.value, weekday: +wdS.value, period: +perS.value,
          lead_classroom_id: leadS.value, receiving_classroom_ids: recv.values(),
          teacher_id: teachS.value, subject_id: subjS.value
        };
        if (pairS.value) body.pairing_id = pairS.value;
        if (!body.term_id) setFieldError(termS, 'err.required');
        if (!body.lead_classroom_id) setFieldError(leadS, 'err.required');
        if (!body.receiving_classroom_ids.length) setFieldError(recv, 'series.err.receivers');
        if (!body.teacher_id) setFieldError(teachS, 'err.required');
        if (!body.subject_id) setFieldError(subjS, 'err.required');
        if (focusFirstInvalid(form)) return;
        var key = keyFor(body);
        pending(form, submit, function () {
          return api('POST', '/api/series', body, { headers: { 'Idempotency-Key': key } }).then(function () {
            attempt = null;
            form.removeAttribute('data-idempotency-key');
            toastOk('series.created');
            recv.clear();
            loadWeek();
          }, function (err) {
            var definitive = err.status >= 400 && err.status < 500 && [401, 408, 429].indexOf(err.status) < 0;
            if (definitive) attempt = null;
            if (err.code === 'conflict' || err.status === 409) {
              fill(conflictBox,
                h('div', { class: 'conflict-title' }, h('span', { 'aria-hidden': 'true', text: '⚠ ' }), h('span', { i18n: 'series.conflictTitle' })),
                h('div', { class: 'conflict-msg', text: err.serverMessage || t('err.code.conflict') }),
                arr(err.body && err.body.conflicts).length ? h('ul', null, arr(err.body.conflicts).map(function (c) {
                  return h('li', { bi: { zh: c.explanation_zh || '', en: c.explanation_en || '' } });
                })) : null);
              conflictBox.hidden = false;
              conflictBox.scrollIntoView({ block: 'center' });
              // The box above carries the server's explanation; the toast only points at it.
              toast('error', h('span', { i18n: 'err.withAction', vars: { action: { k: 'series.failed' }, msg: { k: 'err.code.conflict' } } }));
              return;
            }
            formFailed(form, 'series.failed', err, {
              term_id: termS, pairing_id: pairS, weekday: wdS, period: perS, lead_classroom_id: leadS,
              receiving_classroom_ids: recv, teacher_id: teachS, subject_id: subjS
            });
          });
        });
      });

      return {
        el: form,
        setTerm: function (id) { termS.value = id; },
        prefill: function (weekday, period) {
          wdS.value = String(weekday);
          perS.value = String(period);
          form.scrollIntoView({ block: 'start' });
          leadS.focus();
        },
        focus: function () { form.scrollIntoView({ block: 'start' }); termS.focus(); }
      };
    }

    function groupBySchool(rooms) {
      var order = [];
      var by = {};
      rooms.forEach(function (c) {
        if (!by[c.school_id]) { by[c.school_id] = { name: schoolName(c.school_id), rooms: [] }; order.push(by[c.school_id]); }
        by[c.school_id].rooms.push(c);
      });
      return order;
    }

    /* -- start-up: lookups, then the week -- */

    fill(formHost, h('p', { class: 'muted', i18n: 'common.loading' }));
    settle([getTerms(), getSchools(), getUsers(), getSubjects(), getPairings()]).then(function (rs) {
      var keys = ['term.loadFailed', 'load.schools', 'users.loadFailed', 'load.subjects', 'pairing.loadFailed'];
      rs.forEach(function (r, i) { if (!r.ok) notifyError(keys[i], r.reason, errBox); });
      lk.terms = rs[0].ok ? rs[0].value.slice().sort(function (a, b) { return a.start_date < b.start_date ? 1 : -1; }) : [];
      lk.schools = rs[1].ok ? rs[1].value : [];
      lk.teachers = rs[2].ok ? rs[2].value.filter(function (u) { return u.role === 'teacher' && !u.disabled; }) : [];
      lk.subjects = rs[3].ok ? rs[3].value : [];
      lk.pairings = rs[4].ok ? rs[4].value : [];
      if (!view.isConnected) return null;
      lk.schools.forEach(function (s) { append(schoolSel, h('option', { value: s.id, text: s.name })); });
      schoolSel.value = ttState.schoolId;
      lk.terms.forEach(function (x) { append(termSel, h('option', { value: x.id, text: x.name })); });
      // Default term: the remembered one, else the one containing today, else the latest.
      var today = todayStr();
      var pick = ttState.termId;
      if (!pick) {
        lk.terms.forEach(function (x) { if (!pick && today >= x.start_date && today <= x.end_date) pick = x.id; });
        if (!pick && lk.terms.length) pick = lk.terms[0].id;
      }
      termSel.value = pick || '';
      ttState.termId = termSel.value;
      var term = currentTerm();
      if (term) { dateIn.min = term.start_date || ''; dateIn.max = term.end_date || ''; }
      if (!ttState.date) ttState.date = term && !(today >= term.start_date && today <= term.end_date) ? term.start_date : today;
      dateIn.value = ttState.date;
      loadWeek();
      return getAllClassrooms(lk.schools);
    }).then(function (rooms) {
      if (!rooms || !view.isConnected) return;
      lk.classrooms = rooms;
      seriesForm = buildSeriesForm();
      fill(formHost, seriesForm.el);
      if (week.occurrences.length) renderWeek(); // classroom names may now resolve
    });
  };

  /* ======================================================================================
   * 9b. Recording classrooms (录播教室): live state, previews and manual control; the archive
   * ==================================================================================== */

  var REC_POLL_MS = 2000;
  var REC_STATES = ['idle', 'starting', 'recording', 'finalizing', 'uploading', 'done', 'failed'];

  /** The recording classrooms the caller may see, in school order. */
  function getRecordingRooms() {
    return getSchools().then(getAllClassrooms).then(function (list) {
      return list.filter(function (c) { return c.kind === 'recording'; });
    });
  }

  /** HH:MM in Shanghai of an RFC 3339 instant; '' when it does not parse. */
  function hhmmAt(s) { var ms = Date.parse(s); return isNaN(ms) ? '' : hhmmOf(ms); }

  function fmtGb(bytes) { return (Math.max(0, +bytes || 0) / 1e9).toFixed(1); }

  function fmtBytes(n) {
    n = +n || 0;
    if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
    if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
    if (n >= 1e3) return (n / 1e3).toFixed(0) + ' KB';
    return n + ' B';
  }

  function previewUrl(roomId, sourceId) {
    return '/api/classrooms/' + enc(roomId) + '/preview/' + enc(sourceId);
  }

  /**
   * A preview picture refreshed in place: refresh() asks for a new frame unless the last one is
   * still loading (a slow school network must not pile up requests); no picture → a placeholder.
   */
  function livePreview(roomId, sourceId, big, audioOnly) {
    var img = h('img', { class: 'rec-img', alt: '', hidden: true });
    var none = h('div', { class: 'rec-nopic', i18n: audioOnly ? 'rec.audioOnly' : 'rec.noPicture' });
    var box = h('div', { class: 'rec-preview' + (big ? ' rec-preview-big' : ''), data: { preview: sourceId } }, img, none);
    var loading = false;
    img.addEventListener('load', function () { loading = false; img.hidden = false; none.hidden = true; });
    img.addEventListener('error', function () { loading = false; img.hidden = true; none.hidden = false; });
    box.refresh = function () {
      // A microphone has no picture to ask for.
      if (audioOnly || loading || !box.isConnected) return;
      loading = true;
      img.src = previewUrl(roomId, sourceId) + '?t=' + Date.now();
    };
    return box;
  }

  VIEWS.recording = function (view) {
    var refreshBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'rec-refresh', i18n: 'common.refresh' });
    var errBox = noticeBox();
    var grid = h('div', { class: 'rec-grid', id: 'rec-grid' });
    append(view, h('div', { class: 'view-head' }, h('h1', { i18n: 'rec.title' }), refreshBtn), errBox, grid);
    var cards = []; // one per room: {room, el, update(statusView), previews()}

    function card(room) {
      var stateBadge = h('span', { class: 'badge rec-state' });
      var onlineBadge = h('span', { class: 'badge' });
      var reported = h('span', { class: 'muted small' });
      var lessonBox = h('div', { class: 'rec-lesson' });
      var programme = livePreview(room.id, 'programme', true);
      var sourcesBox = h('div', { class: 'rec-sources' });
      var facts = h('div', { class: 'rec-facts' });
      var cardErr = h('div', { class: 'notice', role: 'alert', hidden: true });
      var startBtn = h('button', { type: 'button', class: 'btn btn-primary btn-big', data: { cmd: 'start' }, i18n: 'rec.start' });
      var stopBtn = h('button', { type: 'button', class: 'btn btn-danger btn-big', data: { cmd: 'stop' }, i18n: 'rec.stop' });
      var extendBtn = h('button', { type: 'button', class: 'btn btn-big', data: { cmd: 'extend' }, i18n: 'rec.extend' });
      var actions = h('div', { class: 'rec-actions' });
      function restoreActions() { fill(actions, startBtn, stopBtn, extendBtn); }
      restoreActions();
      var el = h('article', { class: 'panel rec-card', data: { classroom: room.id } },
        h('div', { class: 'rec-head' }, h('h2', { text: classroomName(room) }), stateBadge, onlineBadge, reported),
        lessonBox,
        h('div', { class: 'rec-body' },
          h('div', { class: 'rec-main' }, h('div', { class: 'rec-label', i18n: 'rec.programme' }), programme),
          h('div', { class: 'rec-side' }, h('div', { class: 'rec-label', i18n: 'rec.sources' }), sourcesBox)),
        facts, cardErr, actions);
      var sourceKey = null;
      var sourcePreviews = [];
      var busy = false;
      var last = null;

      function send(body, okKey) {
        if (busy) return Promise.resolve();
        busy = true;
        syncButtons();
        cardErr.hidden = true;
        return api('POST', '/api/classrooms/' + enc(room.id) + '/recording', body).then(function () {
          toastOk(okKey);
          return load();
        }, function (err) {
          notifyError('rec.commandFailed', err, cardErr);
        }).then(function () { busy = false; syncButtons(); });
      }
      startBtn.addEventListener('click', function () { send({ action: 'start' }, 'rec.started'); });
      extendBtn.addEventListener('click', function () { send({ action: 'extend', minutes: 10 }, 'rec.extended'); });
      stopBtn.addEventListener('click', function () {
        confirmInline(actions, 'rec.confirmStop', { name: room.name }, 'rec.stop', function () {
          return send({ action: 'stop' }, 'rec.stopped');
        }, restoreActions);
      });

      /** Start while nothing records; stop and extend while it does; all while the state is unknown. */
      function syncButtons() {
        var st = last && last.online && last.status ? last.status.state : null;
        var active = st === 'starting' || st === 'recording';
        startBtn.disabled = busy || active || st === 'finalizing';
        stopBtn.disabled = busy || (st !== null && !active);
        extendBtn.disabled = busy || (st !== null && !active);
      }

      function update(v) {
        last = v || {};
        var s = last.status && typeof last.status === 'object' ? last.status : null;
        var st = s && REC_STATES.indexOf(s.state) >= 0 ? s.state : null;
        stateBadge.className = 'badge rec-state rec-state-' + (st || 'unknown');
        setKey(stateBadge, s ? (st ? 'rec.state.' + st : 'rec.state.unknown') : 'rec.neverReported');
        el.setAttribute('data-state', st || '');
        el.setAttribute('data-online', last.online ? 'true' : 'false');
        onlineBadge.className = 'badge ' + (last.online ? 'badge-on' : 'badge-off');
        setKey(onlineBadge, last.online ? 'rec.online' : 'rec.offline');
        fill(reported, last.reported_at ? h('span', { i18n: 'rec.reportedAt', vars: { time: hhmmAt(last.reported_at) } }) : null);
        var lesson = s && s.lesson && typeof s.lesson === 'object' ? s.lesson : null;
        if (lesson) {
          fill(lessonBox, h('span', { class: 'k', i18n: 'rec.lesson' }), ' ',
            h('strong', { text: String(lesson.title || '') }), ' ',
            h('span', { class: 'rec-times', i18n: 'rec.lessonTime', vars: { start: hhmmAt(lesson.start), end: hhmmAt(lesson.end) } }),
            lesson.teacher ? h('span', { class: 'muted', text: ' · ' + lesson.teacher }) : null);
        } else {
          fill(lessonBox, h('span', { class: 'muted', i18n: 'rec.noLesson' }));
        }
        var sources = arr(s && s.sources).filter(function (x) { return x && x.id != null; });
        var key = sources.map(function (x) { return x.id; }).join('|');
        if (key !== sourceKey) {
          sourceKey = key;
          sourcePreviews = [];
          empty(sourcesBox);
          if (!sources.length) append(sourcesBox, h('div', { class: 'muted', i18n: 'rec.noSources' }));
          sources.forEach(function (x) {
            var p = livePreview(room.id, String(x.id), false, x.role === 'microphone');
            sourcePreviews.push(p);
            append(sourcesBox, h('div', { class: 'rec-source', data: { source: String(x.id) } },
              p, h('div', { class: 'rec-source-line' }, h('span', { class: 'rec-source-label' }), h('span', { class: 'badge rec-src-state' }))));
          });
        }
        sources.forEach(function (x, i) {
          var row = sourcesBox.children[i];
          if (!row) return;
          fill(row.querySelector('.rec-source-label'), h('span', { text: String(x.label || x.id) }));
          var badge = row.querySelector('.rec-src-state');
          var known = L.has('rec.src.' + x.state);
          badge.className = 'badge rec-src-state rec-src-' + String(x.state || '').toLowerCase();
          if (known) setKey(badge, 'rec.src.' + x.state); else fill(badge, h('span', { text: String(x.state || '') }));
        });
        fill(facts,
          s && s.free_disk_bytes != null ? h('span', { class: 'rec-fact', i18n: 'rec.disk', vars: { gb: fmtGb(s.free_disk_bytes) } }) : null,
          s && s.pending_uploads != null ? h('span', { class: 'rec-fact', i18n: 'rec.pending', vars: { n: +s.pending_uploads || 0 } }) : null,
          s && s.reason ? h('span', { class: 'rec-fact', i18n: 'rec.reason', vars: { text: String(s.reason) } }) : null,
          s && s.last_error ? h('span', { class: 'rec-fact rec-error', i18n: 'rec.lastError', vars: { text: String(s.last_error) } }) : null);
        syncButtons();
      }

      function load() {
        return api('GET', '/api/classrooms/' + enc(room.id) + '/recorder-status').then(update, function (err) {
          if (!err.handled) { fill(cardErr, errorLine('rec.loadFailed', err)); cardErr.hidden = false; }
        });
      }

      function previews() {
        programme.refresh();
        sourcePreviews.forEach(function (p) { p.refresh(); });
      }

      update(null);
      return { el: el, load: load, previews: previews };
    }

    function tick() {
      cards.forEach(function (c) { c.load(); c.previews(); });
    }

    function init() {
      refreshBtn.disabled = true;
      getRecordingRooms().then(function (rooms) {
        errBox.hidden = true;
        cards = rooms.map(card);
        empty(grid);
        if (!rooms.length) append(grid, h('p', { class: 'empty', i18n: 'rec.none' }));
        cards.forEach(function (c) { append(grid, c.el); });
        tick();
      }, function (err) { notifyError('rec.loadFailed', err, errBox); }).then(function () { refreshBtn.disabled = false; });
    }
    refreshBtn.addEventListener('click', init);
    init();
    state.timers.push(setInterval(tick, REC_POLL_MS));
  };

  /* ---- 课堂实录 (the archive of recorded lessons and recorded live classes) ----
   * Filters per GET /api/lessons (school, classroom, teacher, subject, pairing, kind, text, dates);
   * each row opens the review page /review/<id>. The lesson's school admin and the district admin
   * also publish / unpublish, delete (after a confirmation) and assign reviewers. Reviewers see
   * the lessons assigned to them (the server scopes the list). */

  /** Whether the signed-in account may change a lesson (its school's admin, the district admin). */
  function mayManageLesson(l) {
    var me = state.me || {};
    return me.role === 'district_admin' || (me.role === 'school_admin' && l.school_id != null && l.school_id === me.school_id);
  }

  function lessonWhen(l) {
    var startMs = Date.parse(l.started_at);
    var p = isNaN(startMs) ? null : shanghaiParts(new Date(startMs));
    var date = l.date || (p ? p.year + '-' + p.month + '-' + p.day : '');
    return h('span', null, h('span', { text: date + ' ' + hhmmAt(l.started_at) + '–' + hhmmAt(l.ended_at) + ' ' }),
      l.period != null ? h('span', { class: 'muted', i18n: 'archive.period', vars: { n: l.period } }) : null);
  }

  function pairingLabel(p) {
    if (p.name) return String(p.name);
    return schoolName(p.lead_school_id) + ' → ' + pairingReceivers(p).map(schoolName).join('、');
  }

  VIEWS.archive = function (view) {
    var me = state.me || {};
    var reviewer = me.role === 'reviewer';
    // Reviewers: everything assigned to them, whatever its date; the others: the last 30 days.
    var fromIn = h('input', { class: 'input input-small', id: 'archive-from', type: 'date', value: reviewer ? '' : addDays(todayStr(), -30) });
    var toIn = h('input', { class: 'input input-small', id: 'archive-to', type: 'date', value: reviewer ? '' : todayStr() });
    var schoolSel = h('select', { class: 'input input-small', id: 'archive-school', name: 'school_id' },
      h('option', { value: '', i18n: 'archive.all' }));
    var roomSel = h('select', { class: 'input input-small', id: 'archive-classroom', name: 'classroom_id' },
      h('option', { value: '', i18n: 'archive.all' }));
    var pairSel = h('select', { class: 'input input-small', id: 'archive-pairing', name: 'pairing_id' },
      h('option', { value: '', i18n: 'archive.all' }));
    var kindSel = h('select', { class: 'input input-small', id: 'archive-kind', name: 'kind' },
      h('option', { value: '', i18n: 'archive.all' }),
      h('option', { value: 'room', i18n: 'archive.kind.room' }),
      h('option', { value: 'live', i18n: 'archive.kind.live' }));
    var teacherIn = h('input', { class: 'input input-small', id: 'archive-teacher', type: 'text', name: 'teacher', maxlength: '100' });
    var subjectList = h('datalist', { id: 'archive-subjects' });
    var subjectIn = h('input', { class: 'input input-small', id: 'archive-subject', type: 'text', name: 'subject', maxlength: '100', list: 'archive-subjects' });
    var qIn = h('input', { class: 'input input-small', id: 'archive-q', type: 'search', name: 'q', maxlength: '200', i18nAttr: { placeholder: 'archive.qHint' } });
    var searchBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'archive-search', i18n: 'archive.search' });
    var resetBtn = h('button', { type: 'button', class: 'btn', id: 'archive-reset', i18n: 'archive.reset' });
    function lab(forId, key) { return h('label', { class: 'inline-label', for: forId, i18n: key }); }
    var schoolBox = h('span', { class: 'filter', hidden: me.role !== 'district_admin' }, lab('archive-school', 'archive.f.school'), schoolSel);
    var roomBox = h('span', { class: 'filter', hidden: reviewer }, lab('archive-classroom', 'archive.f.classroom'), roomSel);
    var pairBox = h('span', { class: 'filter', hidden: true }, lab('archive-pairing', 'archive.f.pairing'), pairSel);
    var form = h('form', { class: 'toolbar archive-filters', id: 'archive-form', novalidate: true },
      h('span', { class: 'filter' }, lab('archive-q', 'archive.f.q'), qIn),
      h('span', { class: 'filter' }, lab('archive-kind', 'archive.f.kind'), kindSel),
      schoolBox, roomBox,
      h('span', { class: 'filter' }, lab('archive-teacher', 'archive.f.teacher'), teacherIn),
      h('span', { class: 'filter' }, lab('archive-subject', 'archive.f.subject'), subjectIn, subjectList),
      pairBox,
      h('span', { class: 'filter' }, lab('archive-from', 'archive.from'), fromIn, lab('archive-to', 'archive.to'), toIn),
      searchBtn, resetBtn);
    var errBox = noticeBox();
    var count = h('div', { class: 'muted', id: 'archive-count' });
    var body = h('tbody', { id: 'archive-rows' });
    var cols = ['kind', 'title', 'teacher', 'subject', 'when', 'classroom', 'reviews', 'score', 'actions'];
    var table = h('table', { class: 'table archive-table' },
      h('thead', null, h('tr', null, cols.map(function (c) { return h('th', { i18n: 'archive.col.' + c }); }))), body);
    append(view, h('div', { class: 'view-head' }, h('h1', { i18n: reviewer ? 'archive.titleReviewer' : 'archive.title' })),
      form, errBox, count, h('div', { class: 'panel table-wrap' }, table));

    var allRooms = [];
    function fillRooms() {
      var keep = roomSel.value;
      var sid = schoolSel.value;
      fill(roomSel, h('option', { value: '', i18n: 'archive.all' }),
        allRooms.filter(function (c) { return !sid || c.school_id === sid; }).map(function (c) {
          return h('option', { value: c.id, text: classroomName(c) });
        }));
      roomSel.value = keep;
      if (roomSel.value !== keep) roomSel.value = '';
    }
    schoolSel.addEventListener('change', fillRooms);

    // The filters' choices: each lookup is best effort (a role may not read schools or pairings).
    var lookups = reviewer ? Promise.resolve() : settle([
      getSchools().then(function (schools) {
        schools.forEach(function (s) { append(schoolSel, h('option', { value: s.id, text: String(s.name || s.id) })); });
        return getAllClassrooms(schools);
      }).then(function (rooms) { allRooms = rooms; fillRooms(); }),
      getSubjects().then(function (list) {
        list.forEach(function (s) { append(subjectList, h('option', { value: String(s.name || s.id) })); });
      }),
      getPairings().then(function (list) {
        list.forEach(function (p) { append(pairSel, h('option', { value: p.id, text: pairingLabel(p) })); });
        pairBox.hidden = !list.length;
      })
    ]);

    function scoreCell(l) {
      if (l.final_score == null || isNaN(+l.final_score)) return h('td', { class: 'muted', text: '—', data: { score: '' } });
      return h('td', { class: 'strong', text: (Math.round(+l.final_score * 10) / 10).toString(), data: { score: String(l.final_score) } });
    }

    function actionsCell(l, row) {
      var cell = h('td', { class: 'actions' });
      var open = h('a', { class: 'btn btn-small btn-primary', href: '/review/' + enc(l.id), data: { open: l.id }, i18n: 'archive.open' });
      var canManage = mayManageLesson(l);
      function restore() {
        fill(cell, open, canManage ? [
          h('button', { type: 'button', class: 'btn btn-small', data: { act: l.published === false ? 'publish' : 'unpublish' },
            i18n: l.published === false ? 'archive.publish' : 'archive.unpublish', on: { click: togglePublish } }),
          h('button', { type: 'button', class: 'btn btn-small', data: { act: 'assign' }, i18n: 'archive.assign', on: { click: assign } }),
          h('button', { type: 'button', class: 'btn btn-small btn-danger', data: { act: 'delete' }, i18n: 'common.delete', on: { click: del } })
        ] : null);
      }
      function togglePublish() {
        var pub = l.published === false;
        confirmInline(cell, pub ? 'archive.confirmPublish' : 'archive.confirmUnpublish', { title: l.title }, pub ? 'archive.publish' : 'archive.unpublish', function () {
          return api('POST', '/api/lessons/' + enc(l.id) + (pub ? '/publish' : '/unpublish')).then(function () {
            l.published = pub;
            toastOk(pub ? 'archive.published' : 'archive.unpublished');
            row.classList.toggle('row-disabled', !pub);
            row.setAttribute('data-published', pub ? 'true' : 'false');
          }, function (err) { notifyError(pub ? 'archive.publishFailed' : 'archive.unpublishFailed', err); });
        }, restore);
      }
      function del() {
        confirmInline(cell, 'archive.confirmDelete', { title: l.title }, 'common.delete', function () {
          return api('DELETE', '/api/lessons/' + enc(l.id)).then(function () {
            toastOk('archive.deleted');
            closeAssign(row);
            if (row.parentNode) row.parentNode.removeChild(row);
          }, function (err) { notifyError('archive.deleteFailed', err); });
        }, restore);
      }
      function assign() { openAssign(l, row); }
      restore();
      return cell;
    }

    function closeAssign(row) {
      var next = row.nextSibling;
      if (next && next.classList && next.classList.contains('assign-row')) next.parentNode.removeChild(next);
    }

    /** The reviewer picker under a lesson's row: accounts that may review, the assigned ones ticked. */
    function openAssign(l, row) {
      var next = row.nextSibling;
      if (next && next.classList && next.classList.contains('assign-row')) { closeAssign(row); return; }
      var box = h('div', { class: 'assign-box', id: 'assign-' + l.id });
      var tr = h('tr', { class: 'assign-row', data: { assignFor: l.id } }, h('td', { colspan: String(cols.length) }, box));
      row.parentNode.insertBefore(tr, row.nextSibling);
      fill(box, h('div', { class: 'muted', i18n: 'common.loading' }));
      Promise.all([
        getUsers(),
        api('GET', '/api/lessons/' + enc(l.id) + '/reviewers').then(arr).catch(function () { return []; })
      ]).then(function (r) {
        var users = r[0].filter(function (u) {
          return !u.disabled && (u.role === 'reviewer' || u.role === 'teacher' || u.role === 'school_admin');
        });
        var chosen = {};
        r[1].forEach(function (a) {
          var id = a.reviewer_id != null ? a.reviewer_id : (a.reviewer && a.reviewer.id != null ? a.reviewer.id : a.id);
          if (id != null) chosen[id] = true;
        });
        users.sort(function (a, b) { return (a.role === 'reviewer' ? 0 : 1) - (b.role === 'reviewer' ? 0 : 1); });
        var list = h('div', { class: 'check-list' }, users.map(function (u) {
          var cb = h('input', { type: 'checkbox', name: 'reviewer', value: u.id, checked: !!chosen[u.id], id: 'assign-' + l.id + '-' + u.id });
          return h('label', { class: 'check', for: cb.id }, cb,
            h('span', { text: ' ' + String(u.display_name || u.username) + ' ' }),
            h('span', { class: 'muted small' }, '（', h('span', { i18n: 'role.' + u.role }), '）'));
        }));
        var save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'assign-save', i18n: 'common.save' });
        var cancel = h('button', { type: 'button', class: 'btn', i18n: 'common.cancel', on: { click: function () { closeAssign(row); } } });
        var form = h('form', { class: 'form', novalidate: true },
          h('h3', { i18n: 'archive.assignTitle', vars: { title: String(l.title || '') } }),
          users.length ? list : h('p', { class: 'muted', i18n: 'archive.noReviewers' }),
          formErrorBox(), h('div', { class: 'form-actions' }, save, cancel));
        form.addEventListener('submit', function (ev) {
          ev.preventDefault();
          clearFormErrors(form);
          var ids = [];
          var boxes = list.querySelectorAll('input[type=checkbox]');
          for (var i = 0; i < boxes.length; i++) if (boxes[i].checked) ids.push(boxes[i].value);
          pending(form, save, function () {
            return api('PUT', '/api/lessons/' + enc(l.id) + '/reviewers', { reviewer_ids: ids }).then(function () {
              toastOk('archive.assigned', { n: ids.length });
              closeAssign(row);
            }, function (err) { formFailed(form, 'archive.assignFailed', err, null); });
          });
        });
        fill(box, form);
      }, function (err) { fill(box, errorLine('archive.assignLoadFailed', err)); });
    }

    function render(list) {
      empty(body);
      fill(count, h('span', { i18n: 'archive.count', vars: { n: list.length } }));
      if (!list.length) {
        append(body, h('tr', null, h('td', { class: 'empty-cell', colspan: String(cols.length), i18n: reviewer ? 'archive.noneAssigned' : 'archive.none' })));
        return;
      }
      list.forEach(function (l) {
        var kind = l.kind === 'live' ? 'live' : 'room';
        var row = h('tr', { class: l.published === false ? 'row-disabled' : null, data: { lesson: l.id, kind: kind, published: l.published === false ? 'false' : 'true' } });
        append(row,
          h('td', null, h('span', { class: 'badge kind-' + kind, i18n: 'archive.kind.' + kind })),
          h('td', { class: 'strong' }, h('a', { class: 'lesson-link', href: '/review/' + enc(l.id), text: String(l.title || l.id) }),
            l.published === false ? h('span', { class: 'badge badge-off', i18n: 'archive.unpublishedBadge' }) : null),
          h('td', { text: String(l.teacher || '') }),
          h('td', { text: String(l.subject || '') }),
          h('td', null, lessonWhen(l)),
          h('td', { text: classroomName(l.classroom_id) }),
          h('td', { text: String(l.review_count == null ? 0 : l.review_count), data: { reviews: String(l.review_count || 0) } }),
          scoreCell(l));
        append(row, actionsCell(l, row));
        append(body, row);
      });
    }

    function load() {
      var from = fromIn.value.trim();
      var to = toIn.value.trim();
      if ((from && !validDate(from)) || (to && !validDate(to)) || (from && to && to < from)) {
        fill(errBox, h('span', { i18n: 'archive.badRange' }));
        errBox.hidden = false;
        return;
      }
      errBox.hidden = true;
      searchBtn.disabled = true;
      var params = [['from', from], ['to', to], ['school_id', schoolBox.hidden ? '' : schoolSel.value],
        ['classroom_id', roomSel.value], ['teacher', teacherIn.value.trim()], ['subject', subjectIn.value.trim()],
        ['pairing_id', pairBox.hidden ? '' : pairSel.value], ['kind', kindSel.value], ['q', qIn.value.trim()]];
      var qs = params.filter(function (p) { return p[1]; }).map(function (p) { return p[0] + '=' + enc(p[1]); }).join('&');
      lookups.then(function () {
        return api('GET', '/api/lessons' + (qs ? '?' + qs : ''));
      }).then(function (list) { render(arr(list)); }, function (err) { notifyError('archive.loadFailed', err, errBox); })
        .then(function () { searchBtn.disabled = false; });
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
    resetBtn.addEventListener('click', function () {
      [qIn, teacherIn, subjectIn].forEach(function (i) { i.value = ''; });
      [kindSel, schoolSel, pairSel].forEach(function (s) { s.value = ''; });
      fillRooms();
      roomSel.value = '';
      fromIn.value = reviewer ? '' : addDays(todayStr(), -30);
      toIn.value = reviewer ? '' : todayStr();
      load();
    });
    load();
  };

  /* ======================================================================================
   * 10. Boot
   * ==================================================================================== */

  function boot() {
    var toggle = $('lang-toggle');
    function labelToggle() {
      toggle.textContent = t('lang.toggle');
      toggle.title = t('lang.toggleTitle');
      $('logout').textContent = t('logout');
    }
    labelToggle();
    toggle.addEventListener('click', function () { L.toggle(); });
    L.onChange(function () {
      labelToggle();
      applyI18n(document.body);
      updateTitle();
    });
    $('logout').addEventListener('click', logout);
    window.addEventListener('hashchange', renderRoute);
    updateTitle();
    start();
  }

  /** GET /api/me: signed in → the role's screens; 401 → login; anything else → the error and a retry. */
  function start() {
    var screen = $('screen');
    fill(screen, h('div', { class: 'entering', i18n: 'common.loading' }));
    api('GET', '/api/me', undefined, { allow401: true }).then(function (me) {
      if (!me || !me.role) throw new ApiError(200, { code: 'bad_response' });
      signedIn(me, me.csrf_token);
    }).catch(function (err) {
      if (err.status === 401) { showLogin(null); return; }
      // The server did not answer usefully: say so and offer a retry (a login form would mislead).
      var retry = h('button', { type: 'button', class: 'btn btn-primary btn-big', id: 'boot-retry', i18n: 'common.retry' });
      retry.addEventListener('click', start);
      fill(screen, h('div', { class: 'join-wrap' }, h('div', { class: 'card' },
        h('h1', { i18n: 'boot.failed' }), h('p', { class: 'notice', role: 'alert' }, errorLine('boot.failedShort', err)), retry)));
    });
  }

  /** Test hooks: read-only views of the state, and the pure helpers worth checking directly. */
  window.duetAdmin = {
    state: state,
    go: go,
    validateBells: validateBells,
    conflictKeys: conflictKeys,
    encodeDevice: encodeDevice,
    decodeDevice: decodeDevice,
    mondayOf: mondayOf,
    todayStr: todayStr
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
