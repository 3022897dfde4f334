/*
 * Duet browser client — i18n.js
 *
 * Every visible string of the client goes through `I18N.t(key, vars)`.
 * Simplified Chinese ("zh") is the default; English ("en") is switchable.
 *
 * Language selection, first match wins:
 *   1. `?lang=en` / `?lang=zh` in the page URL (not persisted),
 *   2. the user's last choice from the 中文/English toggle (localStorage "duet.lang"),
 *   3. Simplified Chinese.
 *
 * Public API (window.I18N):
 *   t(key, vars?)      → translated string; "{name}" placeholders are filled from vars.
 *   getLang()          → "zh" | "en"
 *   setLang(lang, persist = true)  → switch and notify listeners
 *   toggle()           → switch to the other language (persisted)
 *   onChange(fn)       → fn(lang) after every switch
 *   roleLabel(role)    → translated role name ("lead" → 主讲课堂 …)
 */
(function (global) {
  'use strict';

  var STORAGE_KEY = 'duet.lang';
  var SUPPORTED = ['zh', 'en'];

  var MESSAGES = {
    zh: {
      'app.name': 'Duet 同步课堂',
      'app.noscript': '请启用 JavaScript。',

      'lang.toggle': 'English',
      'lang.toggleTitle': '切换为英文界面',

      'role.lead': '主讲课堂',
      'role.receiving': '接收课堂',
      'role.observer': '观摩',
      'role.recorder': '录制',
      'role.unknown': '未知角色',

      'status.idle': '未连接',
      'status.connecting': '正在连接…',
      'status.connected': '已连接',
      'status.reconnecting': '重新连接中…',
      'status.reconnectingIn': '重新连接中…（{seconds} 秒后重试）',
      'status.left': '已离开课堂',
      'status.label': '状态',


      'left.title': '你已离开课堂',
      'left.body': '感谢参加本节同步课堂。',
      'left.back': '返回登录页',

      'class.entering': '正在进入课堂…',
      'class.you': '本机：{name}（{role}）',
      'class.leave': '离开课堂',
      'class.unsupported': '此浏览器不支持 WebRTC，无法收看同步课堂。请使用最新版 Chrome、Edge 或 Firefox。',

      'sound.enable': '🔊 点击开启声音',
      'sound.enableTitle': '浏览器阻止了自动播放声音，请点击开启',

      'tile.you': '（本机）',
      'tile.noVideo': '暂无画面',
      'tile.cameraOff': '摄像头已关闭',
      'tile.courseware': '课件',
      'tile.coursewareOf': '课件 · {name}',
      'tile.teacher': '主讲老师',
      'tile.spotlighted': '点名中',
      'tile.handRaised': '已举手',
      'tile.speaking': '正在发言',

      'quality.good': '网络良好',
      'quality.fair': '网络一般',
      'quality.poor': '网络较差',
      'quality.unknown': '暂无网络数据',
      'quality.detail': '{grade}：丢包 {loss}% · 往返 {rtt} 毫秒 · 抖动 {jitter} 毫秒',
      'quality.estimate': '下行估计 {rate}',
      'quality.kbps': '{n} kbps',
      'quality.mbps': '{n} Mbps',
      'quality.layer': '画质：{layer}',
      'quality.layer.high': '高',
      'quality.layer.medium': '中',
      'quality.layer.low': '低',
      'quality.layer.paused': '已暂停',

      'lead.myCamera': '本机画面',
      'lead.myScreen': '正在共享的课件',
      'lead.classrooms': '接收课堂（{count}）',
      'lead.noClassrooms': '等待接收课堂进入…',
      'lead.spotlightHeading': '点名中：{name}',
      'lead.hands': '举手',
      'lead.noHands': '暂无课堂举手',
      'lead.observers': '观摩：{names}',
      'lead.spotlight': '点名',
      'lead.unspotlight': '取消点名',
      'lead.mute': '请静音',
      'lead.lowerHand': '放下手',
      'lead.muteSent': '已请“{name}”静音',

      'ctl.share': '🖥 共享课件',
      'ctl.stopShare': '⏹ 停止共享课件',
      'ctl.sharing': '正在打开共享…',
      'ctl.micOn': '🎤 关闭麦克风',
      'ctl.micOff': '🔇 打开麦克风',
      'ctl.noMic': '🎤 无麦克风',
      'ctl.camOn': '📷 关闭摄像头',
      'ctl.camOff': '📷 打开摄像头',
      'ctl.noCam': '📷 无摄像头',
      'ctl.raise': '✋ 举手',
      'ctl.lower': '👇 放下手',

      'room.waitTeacher': '主讲老师尚未进入课堂，请稍候…',
      'room.observerNote': '观摩模式：只看只听，不发送本机音视频。',
      'room.selfPreview': '本机画面',

      'banner.muteRequested': '主讲老师请你们静音。麦克风已关闭，需要发言时请点击“打开麦克风”。',
      'banner.spotlightSelf': '主讲老师点名了你们的课堂，请发言。',
      'banner.dismiss': '知道了',

      'media.denied': '摄像头/麦克风权限被拒绝。请在浏览器地址栏中允许访问，然后重新进入课堂。',
      'media.notFound': '未找到摄像头或麦克风，请检查设备连接。',
      'media.busy': '摄像头或麦克风正被其他程序占用，请关闭其他程序后重试。',
      'media.insecure': '浏览器不允许在此页面使用摄像头和麦克风（需要 HTTPS 或 localhost）。',
      'media.failed': '无法打开摄像头/麦克风：{msg}',
      'media.partialNoCamera': '未能打开摄像头，本课堂只发送声音。',
      'media.partialNoMic': '未能打开麦克风，本课堂只发送画面。',
      'media.continuing': '你仍可以观看和收听课堂。',

      'screen.cancelled': '未能共享课件：已取消或被拒绝。',
      'screen.unsupported': '此浏览器不支持屏幕共享。',
      'screen.notAllowed': '你的账号不能共享课件。',
      'screen.failed': '共享课件失败：{msg}',
      'screen.ended': '课件共享已结束。',
      'screen.syntheticTitle': '课件 / Courseware',

      'err.server': '{label}：{msg}',
      'err.code.bad_message': '消息格式错误',
      'err.code.too_large': '消息过大',
      'err.code.bad_sdp': '媒体协商失败',
      'err.code.bad_candidate': '网络候选地址无效',
      'err.code.forbidden': '没有权限',
      'err.code.not_found': '对象不存在',
      'err.code.already_joined': '重复进入',
      'err.code.internal': '服务器内部错误',
      'err.code.unknown': '服务器错误',
      'err.publish': '发送本机音视频失败：{msg}',
      'err.subscribe': '接收课堂音视频失败：{msg}',
      'err.answerTimeout': '服务器未及时应答',
      'err.notJoined': '尚未进入课堂。',
      'err.codecMissing': '浏览器不支持 {codec} 视频编码，已改用默认编码。',
      'err.badSignal': '收到无法识别的服务器消息。',
      'err.wsUrl': '课堂服务器地址无效：{url}',

      'close.4400': '通信协议错误，服务器已断开连接。请重新进入课堂。',
      'close.4401': '缺少登录凭证，请重新登录。',
      'close.4403': '登录凭证无效（签名不正确），请重新登录。',
      'close.4406': '登录凭证无效，请重新登录。',
      'close.4409': '同一账号已在其他地方进入课堂，本页面已断开。',
      'close.4410': '登录已过期，请重新登录。',
      'close.reason': '（{reason}）',

      'toast.reconnected': '已重新连接课堂。',
      'toast.handRaised': '已举手，等待主讲老师点名。',

      'hands.none': '—'
    },

    en: {
      'app.name': 'Duet Live Classroom',
      'app.noscript': 'Please enable JavaScript.',

      'lang.toggle': '中文',
      'lang.toggleTitle': 'Switch to Chinese',

      'role.lead': 'Lead classroom',
      'role.receiving': 'Receiving classroom',
      'role.observer': 'Observer',
      'role.recorder': 'Recorder',
      'role.unknown': 'Unknown role',

      'status.idle': 'Not connected',
      'status.connecting': 'Connecting…',
      'status.connected': 'Connected',
      'status.reconnecting': 'Reconnecting…',
      'status.reconnectingIn': 'Reconnecting… (retrying in {seconds} s)',
      'status.left': 'Left the class',
      'status.label': 'Status',


      'left.title': 'You have left the class',
      'left.body': 'Thank you for taking part in this live class.',
      'left.back': 'Back to sign-in',

      'class.entering': 'Entering the class…',
      'class.you': 'This device: {name} ({role})',
      'class.leave': 'Leave class',
      'class.unsupported': 'This browser does not support WebRTC. Please use a recent Chrome, Edge or Firefox.',

      'sound.enable': '🔊 Click to enable sound',
      'sound.enableTitle': 'The browser blocked sound playback; click to enable it',

      'tile.you': ' (this room)',
      'tile.noVideo': 'No video',
      'tile.cameraOff': 'Camera off',
      'tile.courseware': 'Courseware',
      'tile.coursewareOf': 'Courseware · {name}',
      'tile.teacher': 'Lead teacher',
      'tile.spotlighted': 'Called on',
      'tile.handRaised': 'Hand raised',
      'tile.speaking': 'Speaking',

      'quality.good': 'Good connection',
      'quality.fair': 'Fair connection',
      'quality.poor': 'Poor connection',
      'quality.unknown': 'No connection data yet',
      'quality.detail': '{grade}: loss {loss}% · RTT {rtt} ms · jitter {jitter} ms',
      'quality.estimate': 'downlink estimate {rate}',
      'quality.kbps': '{n} kbps',
      'quality.mbps': '{n} Mbps',
      'quality.layer': 'Quality: {layer}',
      'quality.layer.high': 'high',
      'quality.layer.medium': 'medium',
      'quality.layer.low': 'low',
      'quality.layer.paused': 'paused',

      'lead.myCamera': 'My camera',
      'lead.myScreen': 'Courseware being shared',
      'lead.classrooms': 'Receiving classrooms ({count})',
      'lead.noClassrooms': 'Waiting for receiving classrooms to join…',
      'lead.spotlightHeading': 'Called on: {name}',
      'lead.hands': 'Raised hands',
      'lead.noHands': 'No hands raised',
      'lead.observers': 'Observers: {names}',
      'lead.spotlight': 'Call on',
      'lead.unspotlight': 'End call-on',
      'lead.mute': 'Ask to mute',
      'lead.lowerHand': 'Lower hand',
      'lead.muteSent': 'Asked "{name}" to mute',

      'ctl.share': '🖥 Share courseware',
      'ctl.stopShare': '⏹ Stop sharing',
      'ctl.sharing': 'Starting share…',
      'ctl.micOn': '🎤 Mute microphone',
      'ctl.micOff': '🔇 Unmute microphone',
      'ctl.noMic': '🎤 No microphone',
      'ctl.camOn': '📷 Turn camera off',
      'ctl.camOff': '📷 Turn camera on',
      'ctl.noCam': '📷 No camera',
      'ctl.raise': '✋ Raise hand',
      'ctl.lower': '👇 Lower hand',

      'room.waitTeacher': 'The lead teacher has not joined yet. Please wait…',
      'room.observerNote': 'Observer mode: watching and listening only; nothing is sent from this device.',
      'room.selfPreview': 'This room',

      'banner.muteRequested': 'The lead teacher asked you to mute. Your microphone is off; click "Unmute microphone" when you need to speak.',
      'banner.spotlightSelf': 'The lead teacher has called on your classroom. Please speak.',
      'banner.dismiss': 'OK',

      'media.denied': 'Camera/microphone permission was denied. Allow access in the browser address bar, then join the class again.',
      'media.notFound': 'No camera or microphone was found. Check that the devices are connected.',
      'media.busy': 'The camera or microphone is in use by another program. Close it and try again.',
      'media.insecure': 'The browser does not allow camera and microphone on this page (HTTPS or localhost is required).',
      'media.failed': 'Could not open the camera/microphone: {msg}',
      'media.partialNoCamera': 'The camera could not be opened; this classroom sends sound only.',
      'media.partialNoMic': 'The microphone could not be opened; this classroom sends video only.',
      'media.continuing': 'You can still watch and listen to the class.',

      'screen.cancelled': 'Courseware not shared: cancelled or denied.',
      'screen.unsupported': 'This browser cannot share the screen.',
      'screen.notAllowed': 'Your account may not share courseware.',
      'screen.failed': 'Sharing courseware failed: {msg}',
      'screen.ended': 'Courseware sharing has ended.',
      'screen.syntheticTitle': '课件 / Courseware',

      'err.server': '{label}: {msg}',
      'err.code.bad_message': 'Malformed message',
      'err.code.too_large': 'Message too large',
      'err.code.bad_sdp': 'Media negotiation failed',
      'err.code.bad_candidate': 'Invalid network candidate',
      'err.code.forbidden': 'Not allowed',
      'err.code.not_found': 'Not found',
      'err.code.already_joined': 'Already joined',
      'err.code.internal': 'Server error',
      'err.code.unknown': 'Server error',
      'err.publish': 'Sending this room\'s audio/video failed: {msg}',
      'err.subscribe': 'Receiving the class audio/video failed: {msg}',
      'err.answerTimeout': 'the server did not answer in time',
      'err.notJoined': 'Not in the class yet.',
      'err.codecMissing': 'This browser cannot encode {codec} video; using the default codec.',
      'err.badSignal': 'Received a server message this page does not understand.',
      'err.wsUrl': 'Invalid class server address: {url}',

      'close.4400': 'Protocol error; the server closed the connection. Please join the class again.',
      'close.4401': 'No sign-in token. Please sign in again.',
      'close.4403': 'The sign-in token is invalid (bad signature). Please sign in again.',
      'close.4406': 'The sign-in token is invalid. Please sign in again.',
      'close.4409': 'This account joined the class somewhere else; this page has been disconnected.',
      'close.4410': 'Your sign-in has expired. Please sign in again.',
      'close.reason': ' ({reason})',

      'toast.reconnected': 'Reconnected to the class.',
      'toast.handRaised': 'Hand raised; waiting for the lead teacher.',

      'hands.none': '—'
    }
  };

  function detect() {
    var fromUrl = null;
    try {
      fromUrl = new URLSearchParams(global.location.search).get('lang');
    } catch (e) { /* no URL API: fall through */ }
    if (fromUrl) {
      fromUrl = fromUrl.toLowerCase().slice(0, 2);
      if (SUPPORTED.indexOf(fromUrl) >= 0) return fromUrl;
    }
    try {
      var saved = global.localStorage.getItem(STORAGE_KEY);
      if (SUPPORTED.indexOf(saved) >= 0) return saved;
    } catch (e) { /* storage disabled */ }
    return 'zh';
  }

  var current = detect();
  var listeners = [];

  function t(key, vars) {
    var table = MESSAGES[current] || MESSAGES.zh;
    var s = Object.prototype.hasOwnProperty.call(table, key) ? table[key]
      : (Object.prototype.hasOwnProperty.call(MESSAGES.zh, key) ? MESSAGES.zh[key] : key);
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, name) {
        return Object.prototype.hasOwnProperty.call(vars, name) && vars[name] != null ? String(vars[name]) : m;
      });
    }
    return s;
  }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(MESSAGES[current] || MESSAGES.zh, key);
  }

  function applyDocumentLang() {
    if (global.document && global.document.documentElement) {
      global.document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
    }
  }

  function setLang(lang, persist) {
    if (SUPPORTED.indexOf(lang) < 0) return false;
    if (persist !== false) {
      try { global.localStorage.setItem(STORAGE_KEY, lang); } catch (e) { /* ignore */ }
    }
    if (lang === current) return true;
    current = lang;
    applyDocumentLang();
    listeners.slice().forEach(function (fn) {
      try { fn(current); } catch (e) { if (global.console) global.console.error(e); }
    });
    return true;
  }

  function roleLabel(role) {
    var key = 'role.' + role;
    return has(key) ? t(key) : t('role.unknown');
  }

  applyDocumentLang();

  global.I18N = {
    t: t,
    has: has,
    getLang: function () { return current; },
    setLang: setLang,
    toggle: function () { return setLang(current === 'zh' ? 'en' : 'zh', true); },
    onChange: function (fn) { listeners.push(fn); },
    roleLabel: roleLabel,
    supported: SUPPORTED.slice()
  };
})(window);
