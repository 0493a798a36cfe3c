#include "actors/dashboard.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

namespace troupe {

std::string dashboard_json(const metrics_snapshot& s, const std::string& model_name) {
  using json = nlohmann::json;
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  json buckets = json::array();
  uint64_t below = 0;
  for (size_t i = 0; i < s.batch_size.upper_bounds.size(); ++i) {
    const uint64_t cumulative = s.batch_size.counts[i];
    buckets.push_back({{"le", std::isinf(s.batch_size.upper_bounds[i]) ? json("+Inf") : json(s.batch_size.upper_bounds[i])},
                       {"steps", cumulative - below}});
    below = cumulative;
  }
  json rejected = json::object();
  for (size_t i = 0; i < num_reject_reasons; ++i)
    rejected[std::string(to_string(static_cast<reject_reason>(i)))] = s.num_rejected_by_reason[i];
  json finished = json::object();
  for (size_t i = 0; i < num_request_outcomes; ++i)
    finished[std::string(to_string(static_cast<request_outcome>(i)))] = s.num_finished_by_outcome[i];
  return json({{"model", model_name},
               {"window_seconds", s.window_seconds},
               {"tokens_in_per_s", s.tokens_in_per_s},
               {"tokens_out_per_s", s.tokens_out_per_s},
               {"requests_per_s", s.requests_per_s},
               {"ttft_p50_s", opt(s.ttft_p50)},
               {"ttft_p95_s", opt(s.ttft_p95)},
               {"itl_p50_s", opt(s.itl_p50)},
               {"itl_p95_s", opt(s.itl_p95)},
               {"running", s.num_running},
               {"waiting", s.num_waiting},
               {"kv_cache_usage", s.kv_cache_usage},
               {"tensor_parallel_size", s.tensor_parallel_size},
               {"collective_s_per_step", opt(s.collective_s_per_step)},
               {"batch_size", buckets},
               {"preemptions", s.num_preemptions},
               {"rejected", rejected},
               {"finished", finished}})
      .dump();
}

const std::string& dashboard_html() {
  static const std::string page = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>troupe</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
 h1 { font-size: 18px; } .grid { display: grid; grid-template-columns: repeat(4, 14em); gap: 1em; }
 .card { border: 1px solid #ddd; border-radius: 6px; padding: .8em; } .v { font-size: 22px; font-weight: 600; }
 .k { color: #666; } .bar { background: #4a7; height: 12px; display: inline-block; vertical-align: middle; }
 table { border-collapse: collapse; margin-top: 1em; } td { padding: 2px 8px; }
</style></head><body>
<h1>troupe — <span id="model"></span> <span class="k" id="window"></span></h1>
<div class="grid">
 <div class="card"><div class="k">TTFT p50 / p95</div><div class="v" id="ttft"></div></div>
 <div class="card"><div class="k">inter-token p50 / p95</div><div class="v" id="itl"></div></div>
 <div class="card"><div class="k">tokens/s in / out</div><div class="v" id="tps"></div></div>
 <div class="card"><div class="k">requests/s finished</div><div class="v" id="rps"></div></div>
 <div class="card"><div class="k">running / waiting</div><div class="v" id="seqs"></div></div>
 <div class="card"><div class="k">KV cache used</div><div class="v" id="kv"></div></div>
 <div class="card"><div class="k">preemptions</div><div class="v" id="pre"></div></div>
 <div class="card"><div class="k">rejected</div><div class="v" id="rej"></div></div>
 <div class="card"><div class="k">tensor-parallel shards / collectives per step</div><div class="v" id="tp"></div></div>
</div>
<table><tr><td class="k" colspan="3">sequences per step (window)</td></tr><tbody id="batch"></tbody></table>
<table><tr><td class="k" colspan="2">rejections by reason</td></tr><tbody id="reasons"></tbody></table>
<script>
const ms = v => v === null ? '–' : (v * 1000).toFixed(1) + ' ms';
// Under --api-key the figures need the key: open the page as /dashboard#key=KEY (a fragment never leaves the browser).
const key = new URLSearchParams(location.hash.slice(1)).get('key');
async function tick() {
  try {
    const s = await (await fetch('dashboard.json', key ? {headers: {Authorization: 'Bearer ' + key}} : {})).json();
    document.getElementById('model').textContent = s.model;
    document.getElementById('window').textContent = '(last ' + s.window_seconds.toFixed(0) + ' s)';
    document.getElementById('ttft').textContent = ms(s.ttft_p50_s) + ' / ' + ms(s.ttft_p95_s);
    document.getElementById('itl').textContent = ms(s.itl_p50_s) + ' / ' + ms(s.itl_p95_s);
    document.getElementById('tps').textContent = s.tokens_in_per_s.toFixed(0) + ' / ' + s.tokens_out_per_s.toFixed(0);
    document.getElementById('rps').textContent = s.requests_per_s.toFixed(2);
    document.getElementById('seqs').textContent = s.running + ' / ' + s.waiting;
    document.getElementById('kv').textContent = (s.kv_cache_usage * 100).toFixed(1) + ' %';
    document.getElementById('pre').textContent = s.preemptions;
    document.getElementById('tp').textContent = s.tensor_parallel_size + ' / ' + ms(s.collective_s_per_step);
    document.getElementById('rej').textContent = Object.values(s.rejected).reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...s.batch_size.map(b => b.steps));
    document.getElementById('batch').innerHTML = s.batch_size.filter(b => b.steps > 0).map(b =>
      '<tr><td>≤ ' + b.le + '</td><td><span class="bar" style="width:' + (200 * b.steps / max) + 'px"></span></td><td>' + b.steps + '</td></tr>').join('');
    document.getElementById('reasons').innerHTML = Object.entries(s.rejected).map(([k, v]) =>
      '<tr><td>' + k + '</td><td>' + v + '</td></tr>').join('');
  } catch (e) {}
}
tick(); setInterval(tick, 1000);
</script></body></html>
)";
  return page;
}

} // namespace troupe
