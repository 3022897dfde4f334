/*
 * Duet review page — review-i18n.js (served as /assets/review-i18n.js, loaded before review.js)
 *
 * The same mechanism as admin-i18n.js: every visible string of the review page goes through
 * `REVIEW_I18N.t(key, vars)`; Simplified Chinese ("zh") is the default, English ("en") is
 * switchable, and the choice is shared with the other pages (localStorage "duet.lang";
 * `?lang=en|zh` in the URL wins for one visit).
 *
 * Public API (window.REVIEW_I18N): t(key, vars?), has(key), getLang(), setLang(lang, persist),
 * toggle(), onChange(fn), messages (read-only: the key-coverage check in tests).
 */
(function (global) {
  'use strict';

  var STORAGE_KEY = 'duet.lang';
  var SUPPORTED = ['zh', 'en'];

  var MESSAGES = {
    zh: {
      'app.name': 'Duet 同步课堂',
      'page.title': '听评课',
      'lang.toggle': 'English',
      'lang.toggleTitle': '切换为英文界面',
      'nav.back': '← 课堂实录',
      'nav.print': '打印评课报告',
      'nav.help': '快捷键 ?',
      'common.loading': '正在加载…',
      'common.saving': '正在保存…',
      'common.save': '保存',
      'common.delete': '删除',
      'common.close': '关闭',
      'common.retry': '重试',
      'common.none': '—',
      'err.withAction': '{action}：{msg}',
      'err.http': '服务器返回 {status}',
      'err.code.network': '无法连接服务器，请检查网络',
      'err.code.timeout': '服务器没有及时响应',
      'err.code.not_found': '找不到这节课，或你无权查看',
      'err.code.forbidden': '你没有权限执行此操作',
      'err.code.invalid': '填写的内容不正确',
      'err.code.unauthorized': '登录已过期，请重新登录',
      'err.code.bad_response': '服务器的回答无法识别',
      'err.code.expired': '链接已过期',
      'err.unexpected': '意外错误：{msg}',
      'load.failed': '加载失败',
      'login.needed': '请先登录。',
      'login.go': '去登录',

      'kind.room': '录播',
      'kind.live': '同步课堂',
      'lesson.teacher': '授课教师',
      'lesson.subject': '学科',
      'lesson.when': '时间',
      'lesson.where': '教室',
      'lesson.duration': '时长 {m} 分钟',
      'lesson.unpublished': '未发布',

      'player.title': '课堂视频',
      'player.noMedia': '这节课没有可播放的视频。',
      'player.mediaFailed': '加载视频地址失败',
      'player.noPicture': '此时无画面',
      'player.noPictureHint': '该画面在 {from}–{to} 之间有内容。',
      'player.jumpToSpan': '跳到该画面开始处',
      'player.sources': '画面',
      'player.src.review': '合成画面',
      'player.audioOnly': '（仅声音）',
      'player.speed': '倍速',
      'player.play': '播放',
      'player.pause': '暂停',
      'player.back5': '后退 5 秒',
      'player.fwd5': '前进 5 秒',
      'player.side': '并排',
      'player.sideSource': '并排画面',
      'player.sideOff': '关闭并排',
      'player.refreshing': '视频链接已过期，正在刷新…',
      'player.timeline': '时间轴（点击跳转）',

      'help.title': '键盘快捷键',
      'help.space': '空格：播放 / 暂停',
      'help.arrows': '← / →：后退 / 前进 5 秒',
      'help.jl': 'J / L：后退 / 前进 10 秒',
      'help.brackets': '[ / ]：减速 / 加速',
      'help.c': 'C：在当前时间添加旁评',
      'help.digits': '1–9：切换画面',
      'help.q': '?：显示 / 隐藏本帮助',

      'cat.highlight': '亮点',
      'cat.issue': '问题',
      'cat.suggestion': '建议',
      'cat.question': '提问',
      'cat.other': '其他',

      'comments.title': '旁评',
      'comments.none': '还没有旁评。',
      'comments.count': '共 {n} 条',
      'comments.category': '类别',
      'comments.text': '旁评内容',
      'comments.at': '时间点：{time}',
      'comments.useNow': '用当前时间',
      'comments.submit': '添加旁评',
      'comments.added': '旁评已添加',
      'comments.addFailed': '添加旁评失败',
      'comments.deleteFailed': '删除旁评失败',
      'comments.needText': '请填写旁评内容（最多 2000 字）。',
      'comments.notAssigned': '你没有被指派评这节课，不能添加旁评。',
      'comments.seek': '跳到 {time}',

      'review.title': '评分表',
      'review.mine': '我的评分',
      'review.rubric': '评价量表：{name}',
      'review.item': '评价项目',
      'review.weight': '分值',
      'review.points': '得分',
      'review.total': '总分',
      'review.band': '等级',
      'review.strengths': '优点',
      'review.weaknesses': '不足',
      'review.suggestions': '建议',
      'review.summary': '总体评价',
      'review.save': '保存评分',
      'review.saved': '评分已保存',
      'review.saveFailed': '保存评分失败',
      'review.badScore': '请为每一项填写 0 到 {max} 之间的整数。',
      'review.noRubric': '没有可用的评价量表。',
      'review.all': '全部评分',
      'review.none': '还没有人评分。',
      'review.final': '最终得分（{n} 人平均）',
      'review.finalNone': '最终得分：暂无',
      'review.by': '评课人：{name}',
      'review.updated': '更新于 {time}',
      'review.loadFailed': '加载评分失败',

      'st.title': 'S-T 分析',
      'st.none': '这节课还没有 S-T 分析结果。',
      'st.automatic': '自动分析',
      'st.corrected': '人工校正',
      'st.rt': '教师行为占有率 Rt',
      'st.ch': '师生行为转换率 Ch',
      'st.type': '教学模式',
      'st.type.practice': '练习型',
      'st.type.lecture': '讲授型',
      'st.type.dialogue': '对话型',
      'st.type.mixed': '混合型',
      'st.variant.st': 'S-T（两类编码）',
      'st.variant.std': 'S-T-D（含对话 D）',
      'st.meta': '{variant} · 采样间隔 {s} 秒 · N = {n}',
      'st.shares': '时间占比',
      'st.share.teacher': '教师讲话 {p}%',
      'st.share.pupil': '学生讲话 {p}%',
      'st.share.silence': '静默 {p}%',
      'st.curve': 'S-T 曲线',
      'st.axisS': 'S（学生行为）',
      'st.axisT': 'T（教师行为）',
      'st.rtch': 'Rt–Ch 图',
      'st.pointTitle': '第 {i} 个采样 · {time} · S={s} T={t}',
      'st.strip': '采样编码（点击切换 T / S，校正后保存）',
      'st.cellTitle': '{time}：{code}',
      'st.saveCorrected': '保存校正结果',
      'st.resetStrip': '恢复为自动结果',
      'st.corrSaved': '校正结果已保存',
      'st.corrFailed': '保存校正结果失败',
      'st.interval': '采样间隔（秒）',
      'st.variant': '编码方式',
      'st.recompute': '重新计算',
      'st.recomputed': '已重新计算',
      'st.recomputeFailed': '重新计算失败',
      'st.badInterval': '请输入 1 到 300 之间的秒数。',
      'st.author': '校正人：{name}',
      'st.showCorrected': '曲线同时显示校正结果',

      'clip.title': '晒课片段导出',
      'clip.start': '起点（分:秒）',
      'clip.end': '终点（分:秒）',
      'clip.setStart': '设为起点',
      'clip.setEnd': '设为终点',
      'clip.card': '片头信息',
      'clip.course': '课程',
      'clip.grade': '年级',
      'clip.edition': '教材版本',
      'clip.teacher': '授课教师',
      'clip.school': '学校',
      'clip.submit': '导出片段',
      'clip.badTime': '请按 分:秒 填写（例如 12:30）。',
      'clip.badRange': '终点要晚于起点，片段长度 1 秒到 60 分钟，且在课的时长之内。',
      'clip.needText': '请填写（1–100 字）。',
      'clip.failed': '导出片段失败',
      'clip.state.queued': '排队中…',
      'clip.state.rendering': '正在生成 {p}%',
      'clip.state.done': '已完成',
      'clip.state.failed': '生成失败：{msg}',
      'clip.download': '下载片段',
      'clip.pollFailed': '查询导出进度失败',

      'print.comments': '旁评记录',
      'print.reviews': '评分与总评',
      'print.generated': '打印时间：{time}'
    },
    en: {
      'app.name': 'Duet dual-teacher classroom',
      'page.title': 'Lesson review',
      'lang.toggle': '中文',
      'lang.toggleTitle': 'Switch to Chinese',
      'nav.back': '← Archive',
      'nav.print': 'Print report',
      'nav.help': 'Shortcuts ?',
      'common.loading': 'Loading…',
      'common.saving': 'Saving…',
      'common.save': 'Save',
      'common.delete': 'Delete',
      'common.close': 'Close',
      'common.retry': 'Retry',
      'common.none': '—',
      'err.withAction': '{action}: {msg}',
      'err.http': 'the server answered {status}',
      'err.code.network': 'cannot reach the server; check the network',
      'err.code.timeout': 'the server did not answer in time',
      'err.code.not_found': 'no such lesson, or you may not see it',
      'err.code.forbidden': 'you may not do this',
      'err.code.invalid': 'a value is not valid',
      'err.code.unauthorized': 'the session expired; sign in again',
      'err.code.bad_response': 'the server’s answer could not be read',
      'err.code.expired': 'the link expired',
      'err.unexpected': 'unexpected error: {msg}',
      'load.failed': 'Loading failed',
      'login.needed': 'Please sign in first.',
      'login.go': 'Sign in',

      'kind.room': 'Recorded',
      'kind.live': 'Live class',
      'lesson.teacher': 'Teacher',
      'lesson.subject': 'Subject',
      'lesson.when': 'Time',
      'lesson.where': 'Classroom',
      'lesson.duration': '{m} min',
      'lesson.unpublished': 'unpublished',

      'player.title': 'Lesson video',
      'player.noMedia': 'This lesson has no playable video.',
      'player.mediaFailed': 'Loading the video links failed',
      'player.noPicture': 'No picture at this time',
      'player.noPictureHint': 'This source has pictures from {from} to {to}.',
      'player.jumpToSpan': 'Jump to its start',
      'player.sources': 'Source',
      'player.src.review': 'Composed',
      'player.audioOnly': ' (audio only)',
      'player.speed': 'Speed',
      'player.play': 'Play',
      'player.pause': 'Pause',
      'player.back5': 'Back 5 s',
      'player.fwd5': 'Forward 5 s',
      'player.side': 'Side by side',
      'player.sideSource': 'Second picture',
      'player.sideOff': 'Close side by side',
      'player.refreshing': 'The video link expired; refreshing…',
      'player.timeline': 'Timeline (click to seek)',

      'help.title': 'Keyboard shortcuts',
      'help.space': 'Space: play / pause',
      'help.arrows': '← / →: back / forward 5 s',
      'help.jl': 'J / L: back / forward 10 s',
      'help.brackets': '[ / ]: slower / faster',
      'help.c': 'C: comment at the current time',
      'help.digits': '1–9: switch source',
      'help.q': '?: show / hide this help',

      'cat.highlight': 'Highlight',
      'cat.issue': 'Issue',
      'cat.suggestion': 'Suggestion',
      'cat.question': 'Question',
      'cat.other': 'Other',

      'comments.title': 'Comments',
      'comments.none': 'No comments yet.',
      'comments.count': '{n} comments',
      'comments.category': 'Category',
      'comments.text': 'Comment',
      'comments.at': 'At {time}',
      'comments.useNow': 'Use current time',
      'comments.submit': 'Add comment',
      'comments.added': 'Comment added',
      'comments.addFailed': 'Adding the comment failed',
      'comments.deleteFailed': 'Deleting the comment failed',
      'comments.needText': 'Write the comment (at most 2000 characters).',
      'comments.notAssigned': 'You are not assigned to review this lesson.',
      'comments.seek': 'Go to {time}',

      'review.title': 'Score sheet',
      'review.mine': 'My score sheet',
      'review.rubric': 'Rubric: {name}',
      'review.item': 'Item',
      'review.weight': 'Points',
      'review.points': 'Score',
      'review.total': 'Total',
      'review.band': 'Grade',
      'review.strengths': 'Strengths',
      'review.weaknesses': 'Weaknesses',
      'review.suggestions': 'Suggestions',
      'review.summary': 'Overall evaluation',
      'review.save': 'Save score sheet',
      'review.saved': 'Score sheet saved',
      'review.saveFailed': 'Saving the score sheet failed',
      'review.badScore': 'Give every item a whole number from 0 to {max}.',
      'review.noRubric': 'No rubric available.',
      'review.all': 'All score sheets',
      'review.none': 'Nobody has scored this lesson yet.',
      'review.final': 'Final score (mean of {n})',
      'review.finalNone': 'Final score: none yet',
      'review.by': 'Reviewer: {name}',
      'review.updated': 'updated {time}',
      'review.loadFailed': 'Loading the reviews failed',

      'st.title': 'S-T analysis',
      'st.none': 'No S-T analysis for this lesson yet.',
      'st.automatic': 'Automatic',
      'st.corrected': 'Corrected',
      'st.rt': 'Teacher share Rt',
      'st.ch': 'Conversion rate Ch',
      'st.type': 'Lesson type',
      'st.type.practice': 'Practice',
      'st.type.lecture': 'Lecture',
      'st.type.dialogue': 'Dialogue',
      'st.type.mixed': 'Mixed',
      'st.variant.st': 'S-T (two codes)',
      'st.variant.std': 'S-T-D (with dialogue D)',
      'st.meta': '{variant} · interval {s} s · N = {n}',
      'st.shares': 'Share of time',
      'st.share.teacher': 'Teacher talk {p}%',
      'st.share.pupil': 'Pupil talk {p}%',
      'st.share.silence': 'Silence {p}%',
      'st.curve': 'S-T curve',
      'st.axisS': 'S (pupils)',
      'st.axisT': 'T (teacher)',
      'st.rtch': 'Rt–Ch diagram',
      'st.pointTitle': 'Sample {i} · {time} · S={s} T={t}',
      'st.strip': 'Sample codes (click to toggle T / S, then save the correction)',
      'st.cellTitle': '{time}: {code}',
      'st.saveCorrected': 'Save correction',
      'st.resetStrip': 'Back to the automatic codes',
      'st.corrSaved': 'Correction saved',
      'st.corrFailed': 'Saving the correction failed',
      'st.interval': 'Interval (seconds)',
      'st.variant': 'Coding',
      'st.recompute': 'Recompute',
      'st.recomputed': 'Recomputed',
      'st.recomputeFailed': 'Recomputing failed',
      'st.badInterval': 'Enter 1 to 300 seconds.',
      'st.author': 'Corrected by {name}',
      'st.showCorrected': 'Also draw the corrected curve',

      'clip.title': 'Clip export (lesson sharing)',
      'clip.start': 'Start (mm:ss)',
      'clip.end': 'End (mm:ss)',
      'clip.setStart': 'Set as start',
      'clip.setEnd': 'Set as end',
      'clip.card': 'Title card',
      'clip.course': 'Course',
      'clip.grade': 'Grade',
      'clip.edition': 'Textbook edition',
      'clip.teacher': 'Teacher',
      'clip.school': 'School',
      'clip.submit': 'Export clip',
      'clip.badTime': 'Use mm:ss (for example 12:30).',
      'clip.badRange': 'The end must follow the start; 1 s to 60 min, inside the lesson.',
      'clip.needText': 'Required (1–100 characters).',
      'clip.failed': 'Exporting the clip failed',
      'clip.state.queued': 'Queued…',
      'clip.state.rendering': 'Rendering {p}%',
      'clip.state.done': 'Done',
      'clip.state.failed': 'Failed: {msg}',
      'clip.download': 'Download clip',
      'clip.pollFailed': 'Checking the export failed',

      'print.comments': 'Comments',
      'print.reviews': 'Scores and evaluations',
      'print.generated': 'Printed {time}'
    }
  };

  function detect() {
    var fromUrl = null;
    try { fromUrl = new URLSearchParams(global.location.search).get('lang'); } catch (e) { /* old browser */ }
    if (SUPPORTED.indexOf(fromUrl) >= 0) return fromUrl;
    try {
      var saved = global.localStorage.getItem(STORAGE_KEY);
      if (SUPPORTED.indexOf(saved) >= 0) return saved;
    } catch (e) { /* storage blocked */ }
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

  function has(key) { return Object.prototype.hasOwnProperty.call(MESSAGES[current] || MESSAGES.zh, key); }

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

  applyDocumentLang();

  global.REVIEW_I18N = {
    t: t,
    has: has,
    getLang: function () { return current; },
    setLang: setLang,
    toggle: function () { return setLang(current === 'zh' ? 'en' : 'zh', true); },
    onChange: function (fn) { listeners.push(fn); },
    supported: SUPPORTED.slice(),
    messages: MESSAGES
  };
})(window);
