// Chatter dashboard: the live cluster as the node that served this page sees it.
//
// Data: GET v1/members, v1/self and v1/kv (prefixes sys/ and check/) every REFRESH_MS, and the
// Server-Sent Events of v1/events as they come (a member that fails shows up at once). Every
// value from the network is inserted as text (textContent), never as markup.
//
// Hooks for tests: tr[data-member=NAME] with data-status; td[data-field=status];
// #events li[data-type]; #stream[data-state].
'use strict';

(function () {
  const REFRESH_MS = 3000;
  const MAX_EVENTS = 300;
  const PASSING = new Set(['passing', 'pass', 'ok', 'healthy']);
  const SYMBOL = { alive: '●', suspect: '▲', failed: '✕', left: '○' };

  // name -> { view, at }: the member's API view and when (performance.now()) it arrived, to
  // age it without comparing the browser's clock with the daemon's.
  const members = new Map();
  // node -> Map(key -> value text): the node's sys/ and check/ keys.
  const kv = new Map();
  // name or node -> performance.now() of the last event about it: a periodic answer that was
  // requested before that event is older than it, and does not overwrite it.
  const memberEventAt = new Map();
  const kvEventAt = new Map();
  let self = null;
  let selfAt = 0;
  // The daemon's clock minus the browser's (ms), from this node's own member view, so that
  // Unix times the daemon publishes (sys/boot) are read against its clock, not the browser's.
  let clockOffset = 0;
  const daemonNow = () => Date.now() + clockOffset;
  let refreshing = false;
  // Whether the member table was read at least once (until then the counts show "–").
  let loaded = false;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- formatting

  function duration(ms) {
    if (ms == null || !isFinite(ms)) return '–';
    ms = Math.max(0, ms);
    if (ms < 1000) return Math.round(ms) + ' ms';
    let s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    let m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + ' m ' + String(s).padStart(2, '0') + ' s';
    let h = Math.floor(m / 60);
    m %= 60;
    if (h < 48) return h + ' h ' + String(m).padStart(2, '0') + ' m';
    const d = Math.floor(h / 24);
    h %= 24;
    return d + ' d ' + h + ' h';
  }

  function rtt(ms) {
    if (ms == null || !isFinite(ms)) return '–';
    if (ms < 1) return ms.toFixed(2) + ' ms';
    if (ms < 100) return ms.toFixed(1) + ' ms';
    return Math.round(ms) + ' ms';
  }

  function clock(unixMs) {
    const d = new Date(unixMs);
    return isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false });
  }

  function fullTime(unixMs) {
    const d = new Date(unixMs);
    return isNaN(d.getTime()) ? '' : d.toLocaleString([], { hour12: false });
  }

  function truncate(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n - 1) + '…' : text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c == null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  function num(v) {
    if (typeof v === 'number' && isFinite(v)) return v;
    if (typeof v === 'string') {
      const n = parseFloat(v);
      return isFinite(n) ? n : null;
    }
    return null;
  }

  function firstOf(obj, names) {
    for (const n of names) if (obj && obj[n] != null) return obj[n];
    return null;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  // Numbers in a plain-text value: "0.52 0.61 0.70" -> [0.52, 0.61, 0.70].
  function numbers(text) {
    if (typeof text !== 'string') return [];
    const parts = text.trim().split(/\s+/).map(Number);
    return parts.every((x) => isFinite(x)) ? parts : [];
  }

  // [used, total] from "USED TOTAL" (bytes, as chatterd publishes sys/mem and sys/disk) or
  // from {"used": .., "total": ..}; null otherwise.
  function usage(v) {
    if (v && typeof v === 'object') {
      const used = num(firstOf(v, ['used', 'used_bytes']));
      const total = num(firstOf(v, ['total', 'total_bytes']));
      return used != null && total ? [used, total] : null;
    }
    const n = numbers(v);
    return n.length === 2 && n[1] > 0 ? n : null;
  }

  // A percentage from 42, "42.5", {"percent": 42} or a usage.
  function percent(v) {
    const u = usage(v);
    if (u) return (100 * u[0]) / u[1];
    if (v && typeof v === 'object') return num(firstOf(v, ['percent', 'used_percent', 'usage_percent', 'pct']));
    return num(v);
  }

  const level = (p) => (p >= 95 ? 'crit' : p >= 85 ? 'warn' : '');

  // The system status keys shown as chips, in order: [key after sys/, label]. chatterd
  // publishes sys/load ("0.52 0.61 0.70"), sys/cpu ("12.5", percent of all cores), sys/cores,
  // sys/mem and sys/disk ("USED TOTAL" bytes), sys/boot (Unix seconds) and sys/version; other
  // spellings (memory, uptime in seconds, JSON objects) are read too.
  const SYS_CHIPS = [['load', 'load'], ['cpu', 'cpu'], ['mem', 'mem'], ['memory', 'mem'], ['disk', 'disk'], ['boot', 'up'], ['uptime', 'up']];

  // One system status key as [short text, level ('', 'warn' or 'crit')]; `ctx` has the node's
  // `cores` (or null) and the daemon's clock `nowMs`.
  function sysValue(key, raw, ctx) {
    const v = parseJson(raw);
    if (key === 'cpu') {
      const p = percent(v);
      if (p != null) return [p.toFixed(p < 10 ? 1 : 0) + '%' + (ctx.cores ? ' of ' + ctx.cores : ''), level(p)];
    } else if (key === 'mem' || key === 'memory' || key === 'disk') {
      const p = percent(v);
      const u = usage(v);
      if (p != null) return [p.toFixed(p < 10 ? 1 : 0) + '%' + (u ? ' of ' + bytes(u[1]) : ''), level(p)];
    } else if (key === 'load') {
      let loads = numbers(raw);
      if (!loads.length && Array.isArray(v)) loads = v.map(num).filter((x) => x != null);
      if (!loads.length && v && typeof v === 'object') {
        loads = [firstOf(v, ['load1', '1m', 'one']), firstOf(v, ['load5', '5m', 'five']), firstOf(v, ['load15', '15m', 'fifteen'])]
          .map(num)
          .filter((x) => x != null);
      }
      if (loads.length) {
        const busy = ctx.cores ? loads[0] / ctx.cores : 0;
        return [loads.slice(0, 3).map((x) => x.toFixed(2)).join(' '), busy >= 2 ? 'crit' : busy >= 1 ? 'warn' : ''];
      }
    } else if (key === 'boot') {
      const boot = num(v);
      if (boot != null && ctx.nowMs) return [duration(ctx.nowMs - boot * 1000), ''];
    } else if (key === 'uptime') {
      const secs = num(v && typeof v === 'object' ? firstOf(v, ['seconds', 'secs', 'uptime_seconds']) : v);
      if (secs != null) return [duration(secs * 1000), ''];
    }
    if (v && typeof v === 'object') {
      return [truncate(Object.entries(v).map(([k, x]) => k + '=' + (typeof x === 'object' ? JSON.stringify(x) : x)).join(' '), 32), ''];
    }
    return [truncate(raw, 32), ''];
  }

  // ---------------------------------------------------------------- cells

  function statusBadge(status) {
    return el('span', { class: 'badge ' + status },
      el('span', { 'aria-hidden': 'true', text: SYMBOL[status] || '?' }),
      status);
  }

  function systemCell(node) {
    const keys = kv.get(node);
    const chips = [];
    const titles = [];
    if (keys) {
      const ctx = { cores: num(keys.get('sys/cores')), nowMs: daemonNow() };
      const labels = new Set();
      for (const [k, label] of SYS_CHIPS) {
        const raw = keys.get('sys/' + k);
        if (raw == null || labels.has(label)) continue;
        labels.add(label);
        const [text, lvl] = sysValue(k, raw, ctx);
        chips.push(el('span', { class: 'chip ' + lvl, 'data-sys': k },
          el('span', { class: 'k', text: label + ' ' }), text));
      }
      for (const [key, raw] of [...keys].sort()) {
        if (key.startsWith('sys/')) titles.push(key + ' = ' + raw);
      }
    }
    if (!chips.length) return { key: 'none', nodes: [el('span', { class: 'muted', text: '–' })] };
    const wrap = el('div', { class: 'chips', title: titles.join('\n') }, ...chips);
    return { key: chips.map((c) => c.textContent + c.className).join('|') + titles.join('\n'), nodes: [wrap] };
  }

  function checksCell(node) {
    const keys = kv.get(node);
    const failing = [];
    let passing = 0;
    const titles = [];
    if (keys) {
      for (const [key, raw] of keys) {
        if (!key.startsWith('check/')) continue;
        const name = key.slice('check/'.length);
        const v = parseJson(raw);
        const status = String((v && typeof v === 'object' ? v.status : v) ?? 'unknown').toLowerCase();
        const output = v && typeof v === 'object' ? firstOf(v, ['output', 'message', 'error', 'notes']) : null;
        if (PASSING.has(status)) {
          passing++;
          continue;
        }
        failing.push({ name, status, output });
        titles.push(name + ': ' + status + (output ? ' — ' + output : ''));
      }
    }
    const nodes = [];
    if (failing.length) {
      const chips = failing.map((f) => el('span', {
        class: 'chip ' + (f.status === 'warning' || f.status === 'warn' ? 'warn' : 'crit'),
        'data-check': f.name,
        'data-check-status': f.status,
        title: f.output ? truncate(f.output, 300) : null,
      }, f.name + ' ', el('strong', { text: f.status })));
      nodes.push(el('div', { class: 'chips' }, ...chips));
    }
    if (passing) nodes.push(el('span', { class: 'sub', text: passing + ' passing' }));
    if (!nodes.length) nodes.push(el('span', { class: 'muted', text: '–' }));
    return { key: JSON.stringify([failing, passing]), nodes };
  }

  function tagsCell(tags) {
    const entries = Object.entries(tags || {});
    if (!entries.length) return { key: '', nodes: [el('span', { class: 'muted', text: '–' })] };
    const chips = entries.map(([k, v]) => el('span', { class: 'chip' }, el('span', { class: 'k', text: k + '=' }), v));
    return { key: JSON.stringify(entries), nodes: [el('div', { class: 'chips' }, ...chips)] };
  }

  function evidenceText(ev) {
    const parts = [];
    if (ev.accuser) parts.push(['suspected by ', ev.accuser]);
    const n = (ev.confirmations || []).length;
    if (n) parts.push([n + (n === 1 ? ' confirmation' : ' confirmations') + ': ', ev.confirmations.map((c) => c.from).join(', ')]);
    if (ev.unreachable) parts.push(['', 'port unreachable']);
    if (ev.host_silent) parts.push(['', 'host silent']);
    if (ev.declared_by) parts.push(['declared failed by ', ev.declared_by]);
    return parts;
  }

  function evidenceCell(view) {
    const ev = view.evidence;
    if (!ev || (view.status !== 'suspect' && view.status !== 'failed')) {
      return { key: '', nodes: [el('span', { class: 'muted', text: '–' })] };
    }
    const parts = evidenceText(ev);
    const div = el('div', { class: 'evidence', 'data-field': 'evidence' });
    parts.forEach(([label, who], i) => {
      if (i) div.append(' · ');
      div.append(label, el('strong', { text: who }));
    });
    const probes = (ev.probes || []).map((p) => clock(p.at_ms) + ' ' + p.outcome + (p.via ? ' via ' + p.via : ''));
    const title = [
      'suspected at ' + fullTime(ev.suspected_at_ms),
      ev.failed_at_ms ? 'failed at ' + fullTime(ev.failed_at_ms) : null,
      'suspicion timeout ' + duration(ev.timeout_ms),
      probes.length ? 'probes: ' + probes.join('; ') : null,
    ].filter(Boolean).join('\n');
    div.title = title;
    return { key: JSON.stringify(ev), nodes: [div] };
  }

  // ---------------------------------------------------------------- table

  const rows = new Map(); // name -> { tr, cells, keys }

  function makeRow(name) {
    const tr = el('tr', { 'data-member': name });
    const cells = {};
    const add = (field, cls, tag) => {
      const cell = el(tag || 'td', { 'data-field': field, class: cls });
      if (tag === 'th') cell.setAttribute('scope', 'row');
      cells[field] = cell;
      tr.append(cell);
    };
    add('name', 'name', 'th');
    add('status', 'status');
    add('addr', 'addr');
    add('rtt', 'num');
    add('since', 'since');
    add('system', 'system');
    add('checks', 'checks');
    add('tags', 'tags');
    add('evidence', 'evidence-cell');
    const row = { tr, cells, keys: {} };
    rows.set(name, row);
    return row;
  }

  function setCell(row, field, content) {
    if (row.keys[field] === content.key) return;
    row.keys[field] = content.key;
    row.cells[field].replaceChildren(...content.nodes);
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function ageOf(entry, now) {
    return entry.view.age_ms == null ? null : entry.view.age_ms + (now - entry.at);
  }

  function matches(view, filter) {
    if (!filter) return true;
    const hay = [view.name, view.addr, view.status]
      .concat(Object.entries(view.tags || {}).map(([k, v]) => k + '=' + v))
      .join(' ')
      .toLowerCase();
    return filter.split(/\s+/).every((word) => hay.includes(word));
  }

  function render() {
    const now = performance.now();
    const filter = $('filter').value.trim().toLowerCase();
    const tbody = $('members').tBodies[0];
    const counts = { alive: 0, suspect: 0, failed: 0, left: 0 };
    const names = [...members.keys()].sort();
    let shown = 0;
    let prev = null;
    for (const name of names) {
      const entry = members.get(name);
      const v = entry.view;
      counts[v.status] = (counts[v.status] || 0) + 1;
      const row = rows.get(name) || makeRow(name);
      row.tr.hidden = !matches(v, filter);
      if (!row.tr.hidden) shown++;
      if (row.tr.dataset.status !== v.status) row.tr.dataset.status = v.status;
      // A version is shown only where it differs from this node's (a rolling upgrade).
      const version = (kv.get(name) || new Map()).get('sys/version');
      const otherVersion = version && self && self.version && version !== self.version ? 'chatterd ' + version : '';
      setCell(row, 'name', {
        key: [v.name, v.is_local, v.conflict && v.conflict.other_addr, otherVersion].join('|'),
        nodes: [
          v.name,
          v.is_local ? el('span', { class: 'you', title: 'The node this page reads', text: 'this node' }) : null,
          otherVersion ? el('span', { class: 'sub', text: otherVersion }) : null,
          v.conflict ? el('span', { class: 'sub', text: 'name also claimed by ' + v.conflict.other_addr }) : null,
        ].filter(Boolean),
      });
      setCell(row, 'status', { key: v.status, nodes: [statusBadge(v.status)] });
      setText(row.cells.addr, v.addr);
      setText(row.cells.rtt, v.is_local ? '–' : rtt(v.rtt_ms));
      const age = ageOf(entry, now);
      const sinceUpdate = age == null ? null : age + (v.status_since_ms - v.last_update_ms);
      const sinceText = duration(age);
      const updateText = sinceUpdate != null && Math.abs(sinceUpdate - age) > 1500 ? 'updated ' + duration(sinceUpdate) + ' ago' : '';
      setCell(row, 'since', {
        key: sinceText + '|' + updateText,
        nodes: [sinceText, updateText ? el('span', { class: 'sub', text: updateText }) : null].filter(Boolean),
      });
      row.cells.since.title = v.status + ' since ' + fullTime(v.status_since_ms) + '\nlast update ' + fullTime(v.last_update_ms) +
        '\nincarnation ' + v.incarnation + ', generation ' + v.generation;
      setCell(row, 'system', systemCell(name));
      setCell(row, 'checks', checksCell(name));
      setCell(row, 'tags', tagsCell(v.tags));
      setCell(row, 'evidence', evidenceCell(v));
      // Keep the rows in name order, moving only those out of place.
      const expected = prev ? prev.nextSibling : tbody.firstChild;
      if (expected !== row.tr) tbody.insertBefore(row.tr, expected);
      prev = row.tr;
    }
    for (const [name, row] of rows) {
      if (!members.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    $('empty').hidden = shown > 0 || names.length === 0;
    for (const [status, n] of Object.entries(counts)) {
      if (!loaded) break;
      setText($('count-' + status), String(n));
      const card = document.querySelector('.card[data-count="' + status + '"]');
      if (card) card.toggleAttribute('data-nonzero', n > 0);
    }
    if (self) {
      setText($('health-score'), String(self.health_score));
      setText($('uptime'), duration(self.uptime_ms + (now - selfAt)));
    }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  // ---------------------------------------------------------------- data

  async function getJson(path) {
    const res = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!res.ok) {
      let detail = '';
      try {
        detail = (await res.json()).error || '';
      } catch (_) { /* not JSON */ }
      throw new Error(path + ' answered ' + res.status + (detail ? ': ' + detail : ''));
    }
    return res.json();
  }

  function showError(message) {
    const box = $('error');
    if (message) {
      setText(box, message);
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  function applyKvNodes(nodes, prefixes, startedAt) {
    for (const n of nodes || []) {
      if ((kvEventAt.get(n.node) || 0) > startedAt) continue;
      let keys = kv.get(n.node);
      if (!keys) {
        keys = new Map();
        kv.set(n.node, keys);
      }
      for (const k of [...keys.keys()]) if (prefixes.some((p) => k.startsWith(p))) keys.delete(k);
      for (const e of n.entries || []) keys.set(e.key, e.encoding ? '(' + e.encoding + ') ' + e.value : e.value);
    }
  }

  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    const startedAt = performance.now();
    try {
      const [list, me, sys, checks] = await Promise.all([
        getJson('v1/members'),
        getJson('v1/self'),
        getJson('v1/kv?prefix=sys/').catch(() => []),
        getJson('v1/kv?prefix=check/').catch(() => []),
      ]);
      const at = performance.now();
      const seen = new Set();
      for (const view of list.members || []) {
        seen.add(view.name);
        if ((memberEventAt.get(view.name) || 0) > startedAt) continue;
        members.set(view.name, { view, at });
      }
      for (const name of [...members.keys()]) {
        if (!seen.has(name) && (memberEventAt.get(name) || 0) <= startedAt) members.delete(name);
      }
      applyKvNodes(Array.isArray(sys) ? sys : [], ['sys/'], startedAt);
      applyKvNodes(Array.isArray(checks) ? checks : [], ['check/'], startedAt);
      for (const node of [...kv.keys()]) if (!members.has(node)) kv.delete(node);
      self = me;
      selfAt = at;
      if (me.member && me.member.age_ms != null) {
        clockOffset = me.member.status_since_ms + me.member.age_ms - Date.now();
      }
      loaded = true;
      setText($('node-name'), me.member ? me.member.name : '');
      setText($('cluster'), me.cluster || '');
      setText($('version'), me.version ? 'chatterd ' + me.version : '');
      document.title = (me.member ? me.member.name + ' · ' : '') + 'Chatter';
      showError(null);
      document.body.removeAttribute('data-stale');
    } catch (err) {
      showError('Cannot read this node\'s API (' + err.message + '). The daemon may have stopped; retrying every ' + REFRESH_MS / 1000 + ' s.');
      document.body.setAttribute('data-stale', '');
    } finally {
      refreshing = false;
      scheduleRender();
    }
  }

  // ---------------------------------------------------------------- events

  const TONE = {
    'member-joined': 'alive',
    'member-alive': 'alive',
    'member-suspect': 'suspect',
    'member-failed': 'failed',
    'member-left': 'left',
    'member-reaped': 'left',
    'member-conflict': 'failed',
    'events-skipped': 'suspect',
  };

  function describe(e) {
    const m = e.member;
    switch (e.type) {
      case 'connected': return 'event stream connected to ' + e.node;
      case 'member-joined': return m.name + ' joined from ' + m.addr;
      case 'member-alive': return m.name + ' is alive again (incarnation ' + m.incarnation + ')';
      case 'member-suspect': return m.name + ' is suspect' + (m.evidence && m.evidence.accuser ? ', suspected by ' + m.evidence.accuser : '');
      case 'member-failed': {
        const why = m.evidence ? evidenceText(m.evidence).map(([a, b]) => a + b).join(', ') : '';
        return m.name + ' failed' + (why ? ': ' + why : '');
      }
      case 'member-left': return m.name + ' left the cluster';
      case 'member-updated': return m.name + ' updated (incarnation ' + m.incarnation + ', tags ' + JSON.stringify(m.tags || {}) + ')';
      case 'member-reaped': return m.name + ' removed (its tombstone was reaped)';
      case 'member-conflict': return 'name conflict: ' + e.conflict.name + ' also claimed by ' + e.conflict.other_addr;
      case 'key-changed': return e.value == null ? e.node + ' deleted ' + e.key : e.node + ' set ' + e.key + ' = ' + truncate(e.value, 120);
      case 'message': return 'message ' + e.tag + ' from ' + (e.id ? e.id.origin : '?') + ' (' + e.hops + ' hops): ' +
        truncate(typeof e.payload === 'string' ? e.payload : JSON.stringify(e.payload), 160);
      case 'events-skipped': return e.skipped + ' events skipped: this page read the stream too slowly';
      default: return e.type;
    }
  }

  function logEvent(e) {
    if (e.type === 'key-changed' && !$('show-keys').checked) return;
    if (e.type === 'message' && !$('show-messages').checked) return;
    const list = $('events');
    const li = el('li', { 'data-type': e.type, 'data-tone': TONE[e.type] || null },
      el('time', { datetime: new Date(e.timestamp).toISOString(), title: fullTime(e.timestamp), text: clock(e.timestamp) }),
      el('span', { class: 'type', text: e.type }),
      el('span', { class: 'text', text: describe(e) }));
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    $('no-events').hidden = true;
  }

  function onEvent(e) {
    const at = performance.now();
    if (e.member && e.type.startsWith('member-')) {
      memberEventAt.set(e.member.name, at);
      if (e.type === 'member-reaped') {
        members.delete(e.member.name);
        kv.delete(e.member.name);
      } else {
        members.set(e.member.name, { view: e.member, at });
      }
    } else if (e.type === 'key-changed' && (e.key.startsWith('sys/') || e.key.startsWith('check/'))) {
      kvEventAt.set(e.node, at);
      let keys = kv.get(e.node);
      if (!keys) {
        keys = new Map();
        kv.set(e.node, keys);
      }
      if (e.value == null) keys.delete(e.key);
      else keys.set(e.key, e.encoding ? '(' + e.encoding + ') ' + e.value : e.value);
    } else if (e.type === 'connected' || e.type === 'events-skipped') {
      // Anything may have happened while the stream was down or behind.
      refresh();
    }
    logEvent(e);
    scheduleRender();
  }

  function setStream(state, text) {
    const box = $('stream');
    box.dataset.state = state;
    setText($('stream-text'), text);
  }

  function connect() {
    if (typeof EventSource === 'undefined') {
      setStream('closed', 'no live updates (browser without EventSource); refreshing every ' + REFRESH_MS / 1000 + ' s');
      return;
    }
    const source = new EventSource('v1/events');
    source.onopen = () => setStream('open', 'live');
    source.onerror = () => setStream('closed', source.readyState === EventSource.CLOSED ? 'event stream closed' : 'reconnecting…');
    source.onmessage = (msg) => {
      let e;
      try {
        e = JSON.parse(msg.data);
      } catch (_) {
        return;
      }
      if (e && typeof e.type === 'string') onEvent(e);
    };
  }

  function start() {
    $('filter').addEventListener('input', scheduleRender);
    connect();
    refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(scheduleRender, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
