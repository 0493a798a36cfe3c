// The /dashboard page: HTML, CSS and a small script, all inline (no CDN, nothing fetched but
// dashboard.json), plots drawn as SVG by hand. What it shows and how it marks stale data: dashboard.hpp.

#include "actors/dashboard.hpp"

namespace troupe {

const std::string& dashboard_html() {
  static const std::string page = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>troupe</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 13px system-ui, sans-serif; margin: 1em 1.4em; color: #222; background: #fff; }
 h1 { font-size: 17px; margin: 0 0 .6em; font-weight: 600; }
 #status { display: inline-block; padding: 2px 10px; border-radius: 10px; font-size: 12px; margin-left: .8em;
           vertical-align: middle; background: #eee; color: #555; }
 .live #status { background: #dcf3e3; color: #17642f; }
 .stale #status { background: #c62828; color: #fff; font-weight: 600; }
 #banner { display: none; background: #fdecea; border: 1px solid #c62828; color: #8e1b1b; padding: .6em .9em;
           border-radius: 6px; margin-bottom: .8em; font-weight: 600; }
 .stale #banner { display: block; }
 .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(14em, 1fr)); gap: .6em; margin-bottom: 1em; }
 .card { border: 1px solid #ddd; border-radius: 6px; padding: .45em .7em; }
 .v { font-size: 18px; font-weight: 600; } .k { color: #555; font-size: 12px; } .u { color: #999; font-size: 11px; }
 .stale .card .v { color: #bbb; }
 .plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: .8em; }
 .plot { border: 1px solid #e3e3e3; border-radius: 6px; padding: .4em .6em; }
 .plot h2 { font-size: 13px; margin: 0; font-weight: 600; } .plot h2 span { font-weight: 400; color: #888; font-size: 11px; }
 .legend { font-size: 12px; color: #444; min-height: 1.4em; } .old { color: #c62828; }
 .sw { display: inline-block; width: 12px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
 svg { display: block; } svg text { font: 10px system-ui, sans-serif; fill: #777; }
 .bar { background: #4c78a8; height: 10px; display: inline-block; vertical-align: middle; }
 table { border-collapse: collapse; } td { padding: 1px 6px; font-size: 12px; }
 #ranges { float: right; font-size: 12px; font-weight: 400; color: #666; }
 #workers { display: none; font-size: 12px; margin: -.4em 0 .8em; } #workers.on { display: block; }
 #workers b { font-weight: 600; } #workers .out { color: #c62828; font-weight: 600; }
 #ranges a { margin-left: .6em; color: #1f5fa8; cursor: pointer; text-decoration: none; } #ranges a.on { font-weight: 700; color: #222; }
</style></head>
<body class="waiting">
<div id="banner"></div>
<h1>troupe — <span id="model">…</span><span id="status">connecting…</span>
 <span id="ranges">plots over <a data-r="auto">auto</a><a data-r="1m">1 min</a><a data-r="5m">5 min</a><a data-r="15m">15 min</a><a data-r="1h">1 hour</a></span></h1>
<div class="cards">
 <div class="card"><div class="k">TTFT p50 / p95</div><div class="v" id="ttft">–</div><div class="u">last 10 s</div></div>
 <div class="card"><div class="k">inter-token p50 / p95</div><div class="v" id="itl">–</div><div class="u">last 10 s</div></div>
 <div class="card"><div class="k">tokens/s in / out</div><div class="v" id="tps">–</div><div class="u">rate, last 10 s</div></div>
 <div class="card"><div class="k">requests/s finished</div><div class="v" id="rps">–</div><div class="u">rate, last 10 s</div></div>
 <div class="card"><div class="k">running / waiting</div><div class="v" id="seqs">–</div><div class="u">requests, now</div></div>
 <div class="card"><div class="k">KV cache used</div><div class="v" id="kv">–</div><div class="u">now</div></div>
 <div class="card"><div class="k">preemptions</div><div class="v" id="pre">–</div><div class="u">total since start</div></div>
 <div class="card"><div class="k">rejected</div><div class="v" id="rej">–</div><div class="u">total since start</div></div>
 <div class="card"><div class="k">TP shards / collectives per step</div><div class="v" id="tp">–</div><div class="u">last 10 s</div></div>
</div>
<div id="workers"></div>
<div class="plots" id="plots"></div>
<script>
'use strict';
// Polls dashboard.json every 2 s for the samples it lacks; redraws every second. When polls fail for
// 3 rounds (or hang: each is cut off after 4 s), the page says so and blanks its figures.
const POLL_MS = 2000, STALE_MS = 3 * POLL_MS, HOUR_MS = 3600e3;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const DASHES = ['', '6 3', '2 2', '9 3 2 3'];
// Under --api-key the figures need the key: open the page as /dashboard#key=KEY (a fragment never leaves the browser).
// #range=1m|5m|15m|30m|1h fixes the plots' time range; auto fits the data held, from a minute up to the hour.
const fragment = new URLSearchParams(location.hash.slice(1));
const key = fragment.get('key');
const RANGES = {'1m': 60e3, '5m': 5 * 60e3, '15m': 15 * 60e3, '30m': 30 * 60e3, '1h': 3600e3};
let range = RANGES[fragment.get('range')] ? fragment.get('range') : 'auto';
const S = {sources: new Map(), started: null, lastOk: 0, opened: Date.now(), offset: 0, interval: 5, live: null, error: ''};
const $ = id => document.getElementById(id);
const none = v => v === null || v === undefined || !isFinite(v);
const num = v => none(v) ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
const ms = v => none(v) ? '–' : (v >= 0.1 ? (v * 1000).toFixed(0) : (v * 1000).toFixed(1)) + ' ms';
const pct = v => none(v) ? '–' : (v * 100).toFixed(v < 0.1 ? 1 : 0) + ' %';
const rate = v => none(v) ? '–' : num(v) + '/s';
const two = n => String(n).padStart(2, '0');
const esc = t => String(t).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]);
const hm = t => { const d = new Date(t); return two(d.getHours()) + ':' + two(d.getMinutes()); };
const hms = t => { const d = new Date(t); return hm(t) + ':' + two(d.getSeconds()); };

const PLOTS = [
  {id: 'ttft', title: 'Time to first token', note: 'p50, p95 of each sample interval', fmt: ms,
   cols: [['ttft_p50_s', 'p50'], ['ttft_p95_s', 'p95']]},
  {id: 'itl', title: 'Inter-token latency', note: 'p50, p95 of each sample interval', fmt: ms,
   cols: [['itl_p50_s', 'p50'], ['itl_p95_s', 'p95']]},
  {id: 'tokens', title: 'Tokens per second', note: 'rate over each sample interval', fmt: rate,
   cols: [['tokens_in_per_s', 'in (prompt)'], ['tokens_out_per_s', 'out (generated)']]},
  {id: 'requests', title: 'Requests running and waiting', note: 'count at each sample', fmt: num,
   cols: [['running', 'running'], ['waiting', 'waiting']]},
  {id: 'kv', title: 'KV cache used', note: 'share of blocks at each sample; alert line at 90 %', fmt: pct, ymax: 1, line: 0.9,
   cols: [['kv_cache_usage', 'used']]},
  {id: 'batch', title: 'Batch size', note: 'mean sequences per step in each interval', fmt: num,
   cols: [['batch_size_mean', 'sequences per step']]},
  {id: 'trouble', title: 'Rejections and preemptions', note: 'rate over each sample interval; totals since start in the legend',
   fmt: rate, totals: true, cols: [['rejected_per_s', 'rejected'], ['preemptions_per_s', 'preempted']]},
];

// The plots' time range in ms: the one chosen, or the shortest that holds every sample.
function span(now) {
  if (RANGES[range]) return RANGES[range];
  let oldest = now;
  for (const s of S.sources.values()) if (s.t.length) oldest = Math.min(oldest, s.t[0]);
  for (const r of ['1m', '5m', '15m', '30m']) if (now - oldest <= RANGES[r]) return RANGES[r];
  return HOUR_MS;
}

// Whether a source's newest sample (at t) is late: older than three intervals, beyond the wait for the next poll.
const late = (t, now) => now - t > 3 * S.interval * 1000 + POLL_MS;

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// The time after which this page holds every source's samples (null: it needs them all).
function since() {
  let m = null;
  for (const s of S.sources.values()) {
    if (!s.t.length) return null;
    m = m === null ? s.t[s.t.length - 1] : Math.min(m, s.t[s.t.length - 1]);
  }
  return m;
}

function merge(d) {
  if (S.started !== d.started_ms) { S.sources.clear(); S.started = d.started_ms; }  // a new server: start afresh
  S.interval = d.interval_s;
  for (const h of d.history) {
    let s = S.sources.get(h.name);
    if (!s) { s = {t: [], v: {}}; S.sources.set(h.name, s); }
    s.columns = h.columns;
    s.state = h.state || '';  // a router's worker: 'in rotation' or 'out of rotation: why'

    const last = s.t.length ? s.t[s.t.length - 1] : -Infinity;
    h.t.forEach((t, i) => {
      if (t <= last) return;
      s.t.push(t);
      for (const c of h.columns) (s.v[c] = s.v[c] || []).push(h.values[c][i]);
    });
    const cut = d.now_ms - HOUR_MS - 60e3;
    let k = 0;
    while (k < s.t.length && s.t[k] < cut) ++k;
    if (k) { s.t.splice(0, k); for (const c in s.v) s.v[c].splice(0, k); }
  }
}

async function poll() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 4000);
  try {
    const m = since();
    const r = await fetch('dashboard.json' + (m === null ? '' : '?since=' + m),
                          {cache: 'no-store', signal: abort.signal, headers: key ? {Authorization: 'Bearer ' + key} : {}});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const d = await r.json();
    merge(d);
    S.live = d; S.lastOk = Date.now(); S.offset = d.now_ms - S.lastOk; S.error = '';
  } catch (e) {
    S.error = e.name === 'AbortError' ? 'no answer within 4 s' : (e.message || String(e));
  } finally {
    clearTimeout(timer);
  }
  render();
  setTimeout(poll, POLL_MS);
}

function cards(d) {
  const set = (id, text) => { $(id).textContent = d ? text : '–'; };
  if (!d) { for (const id of ['ttft', 'itl', 'tps', 'rps', 'seqs', 'kv', 'pre', 'rej', 'tp']) set(id, ''); return; }
  $('model').textContent = d.model;
  set('ttft', ms(d.ttft_p50_s) + ' / ' + ms(d.ttft_p95_s));
  set('itl', ms(d.itl_p50_s) + ' / ' + ms(d.itl_p95_s));
  set('tps', num(d.tokens_in_per_s) + ' / ' + num(d.tokens_out_per_s));
  set('rps', num(d.requests_per_s));
  set('seqs', d.running + ' / ' + d.waiting);
  set('kv', pct(d.kv_cache_usage));
  set('pre', String(d.preemptions));
  set('rej', String(Object.values(d.rejected).reduce((a, b) => a + b, 0)));
  set('tp', d.tensor_parallel_size + ' / ' + ms(d.collective_s_per_step));
}

function plot(p, now, stale) {
  let box = $('plot-' + p.id);
  if (!box) {
    box = document.createElement('div');
    box.className = 'plot'; box.id = 'plot-' + p.id;
    box.innerHTML = '<h2>' + p.title + ' <span>' + p.note + '</span></h2><div class="legend"></div><div class="svg"></div>';
    $('plots').appendChild(box);
  }
  const range_ms = span(now);
  const W = 540, H = 150, L = 58, R = 10, T = 6, B = 18, w = W - L - R, h = H - T - B, x0 = now - range_ms;
  const lines = [];
  let top = 0, newest = null, si = 0;
  for (const [name, s] of S.sources) {
    const n = s.t.length;
    if (n) newest = newest === null ? s.t[n - 1] : Math.max(newest, s.t[n - 1]);
    const out = s.state && s.state !== 'in rotation';  // why: in the workers' line
    p.cols.forEach(([c, label], ci) => {
      if (s.columns && !s.columns.includes(c)) return;  // a router's worker keeps a few columns
      const vs = s.v[c] || [], pts = [];
      for (let i = 0; i < n; ++i) if (s.t[i] >= x0) { pts.push([s.t[i], vs[i]]); if (!none(vs[i])) top = Math.max(top, vs[i]); }
      lines.push({label: S.sources.size > 1 ? esc(name) + ' · ' + label : label, color: COLORS[ci % COLORS.length],
                  dash: DASHES[si % DASHES.length], pts, last: n ? vs[n - 1] : null, lastT: n ? s.t[n - 1] : null, out});
    });
    ++si;
  }
  const ymax = p.ymax || niceCeil(top * 1.1);
  const X = t => L + (t - x0) / range_ms * w, Y = v => T + h - Math.min(v, ymax) / ymax * h;
  let svg = '<svg viewBox="0 0 ' + W + ' ' + H + '" width="100%"><defs><pattern id="hatch-' + p.id + '" width="6" height="6" ' +
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fbeaea"/>' +
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#e5a5a5" stroke-width="2"/></pattern></defs>';
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = T + h - f * h;
    svg += '<line x1="' + L + '" x2="' + (L + w) + '" y1="' + y + '" y2="' + y + '" stroke="' + (f ? '#eee' : '#bbb') + '"/>';
    if (f % 0.5 === 0) svg += '<text x="' + (L - 4) + '" y="' + (y + 3) + '" text-anchor="end">' + p.fmt(f * ymax) + '</text>';
  }
  const seconds = range_ms / 1000, step = {60: 10, 300: 60, 900: 180, 1800: 300}[seconds] || 600;
  for (let ago = seconds; ago >= 0; ago -= step) {
    const x = X(now - ago * 1000);
    svg += '<line x1="' + x + '" x2="' + x + '" y1="' + T + '" y2="' + (T + h) + '" stroke="#f2f2f2"/>' +
           '<text x="' + x + '" y="' + (H - 4) + '" text-anchor="' + (ago ? 'middle' : 'end') + '">' +
           (!ago ? 'now ' + hm(now) : step < 60 ? '−' + ago + ' s' : '−' + ago / 60 + ' min') + '</text>';
  }
  if (p.line) svg += '<line x1="' + L + '" x2="' + (L + w) + '" y1="' + Y(p.line) + '" y2="' + Y(p.line) +
                     '" stroke="#c62828" stroke-dasharray="4 3"/>';
  // No data from the newest sample to now: the server is silent, or its samples stopped.
  const quiet = newest === null || late(newest, now);
  if (stale || quiet) {
    const xa = Math.max(L, newest === null ? L : X(newest));
    if (L + w - xa > 2) svg += '<rect x="' + xa + '" y="' + T + '" width="' + (L + w - xa) + '" height="' + h +
                               '" fill="url(#hatch-' + p.id + ')"/><text x="' + (xa + (L + w - xa) / 2) + '" y="' + (T + h / 2) +
                               '" text-anchor="middle" style="fill:#8e1b1b;font-weight:600">no data</text>';
  }
  for (const ln of lines) {
    let d = '', prev = null, lastXY = null;
    for (const [t, v] of ln.pts) {
      if (none(v)) { prev = null; continue; }
      const gap = prev !== null && t - prev > 2.5 * S.interval * 1000;
      d += (prev === null || gap ? 'M' : 'L') + X(t).toFixed(1) + ' ' + Y(v).toFixed(1);
      prev = t; lastXY = [X(t), Y(v)];
    }
    if (d) svg += '<path d="' + d + '" fill="none" stroke="' + ln.color + '" stroke-width="1.7" stroke-dasharray="' + ln.dash + '"/>';
    if (lastXY) svg += '<circle cx="' + lastXY[0].toFixed(1) + '" cy="' + lastXY[1].toFixed(1) + '" r="2" fill="' + ln.color + '"/>';
  }
  box.querySelector('.svg').innerHTML = svg + '</svg>';
  let legend = '';
  for (const ln of lines) {
    const old = ln.lastT !== null && late(ln.lastT, now);
    legend += '<span class="sw" style="background:' + ln.color + '"></span>' + ln.label + ' ' +
              (ln.out && !stale ? '<span class="old">– (out of rotation)</span>' : stale || old ? '<span class="old">–' + (old ? ' (no sample for ' + Math.round((now - ln.lastT) / 1000) + ' s)' : '') + '</span>'
                            : '<b>' + p.fmt(ln.last) + '</b>');
  }
  if (p.totals && S.live) {
    const rejected = Object.values(S.live.rejected).reduce((a, b) => a + b, 0);
    legend += ' &nbsp; <span class="u">totals: ' + (stale ? '–' : rejected + ' rejected, ' + S.live.preemptions + ' preempted') + '</span>';
  }
  box.querySelector('.legend').innerHTML = legend;
}

// Steps by batch size, summed over the hour on the page (every source together).
function batches(now) {
  let box = $('plot-batches');
  if (!box) {
    box = document.createElement('div');
    box.className = 'plot'; box.id = 'plot-batches';
    box.innerHTML = '<h2>Batch-size distribution <span>engine steps by sequences per step, last hour (count)</span></h2><table></table>';
    $('plots').appendChild(box);
  }
  const sums = new Map();
  for (const s of S.sources.values())
    for (const c in s.v) {
      if (!c.startsWith('steps_batch_le_')) continue;
      let total = sums.get(c) || 0;
      s.v[c].forEach((v, i) => { if (s.t[i] >= now - HOUR_MS && !none(v)) total += v; });
      sums.set(c, total);
    }
  const max = Math.max(1, ...sums.values());
  let rows = '', below = '0';
  for (const [c, n] of sums) {
    const le = c.slice('steps_batch_le_'.length);
    if (n > 0) rows += '<tr><td>' + (le === 'inf' ? '> ' + below : '≤ ' + le) + '</td><td><span class="bar" style="width:' +
                       (300 * n / max).toFixed(0) + 'px"></span></td><td>' + n + ' steps</td></tr>';
    below = le;
  }
  const router = [...S.sources.values()].some(s => s.state);
  box.querySelector('table').innerHTML = rows || '<tr><td class="u">' + (router ? 'no steps here: batches are the workers\' (each worker\'s /dashboard)'
                                                                                 : 'no steps in the last hour') + '</td></tr>';
}

// A router's workers: how many are in rotation, and why the others are not.
function workers(stale) {
  const ws = [...S.sources].filter(([, s]) => s.state);
  const box = $('workers');
  box.className = ws.length ? 'on' : '';
  if (!ws.length) return;
  const up = ws.filter(([, s]) => s.state === 'in rotation').length;
  box.innerHTML = '<b>Workers: ' + (stale ? '–' : up + ' of ' + ws.length + ' in rotation') + '</b>' +
      (stale ? '' : ws.map(([name, s]) => ' &nbsp; ' + esc(name) + ' <span class="' + (s.state === 'in rotation' ? 'u' : 'out') + '">' +
                               esc(s.state) + '</span>').join(''));
}

function render() {
  const now = Date.now();
  const silent = now - (S.lastOk || S.opened);
  const stale = silent > STALE_MS;
  document.body.className = stale ? 'stale' : S.lastOk ? 'live' : 'waiting';
  if (stale) {
    $('status').textContent = 'STALE — no data';
    $('banner').textContent = S.lastOk
        ? 'No answer from the server for ' + Math.round(silent / 1000) + ' s (last answer at ' + hms(S.lastOk) + '; ' + S.error +
          '). Figures are blanked; the plots end where the data ends.'
        : 'No answer from the server since this page opened (' + S.error + ').';
  } else if (S.lastOk) {
    $('status').textContent = 'live · ' + hms(S.lastOk);
  }
  cards(stale ? null : S.live);
  for (const a of document.querySelectorAll('#ranges a')) a.className = a.dataset.r === range ? 'on' : '';
  const serverNow = now + S.offset;
  for (const p of PLOTS) plot(p, serverNow, stale);
  batches(serverNow);
  workers(stale);
}

for (const a of document.querySelectorAll('#ranges a')) a.onclick = () => { range = a.dataset.r; render(); };

poll();
setInterval(render, 1000);
</script></body></html>
)HTML";
  return page;
}

} // namespace troupe
