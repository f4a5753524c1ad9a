// scenariokit runtime for k6: copied verbatim next to every generated `<scenario>.k6.js`.
//
// The generated script holds the scenario as data (requests, data sets, stage windows); this module
// renders templates, sends requests, judges them and records the metrics below. It imports only k6's own
// modules, so a stock `k6 run` runs it.
//
// Metrics contract (the scenariokit runner parses these points from `k6 run --out json=results.json`):
//
//   sk_ok        Rate         1 when the request met its `expect`, else 0
//   sk_successes Counter      1 per request that met its `expect` (throughput = successful responses/s)
//   sk_latency   Trend (time) milliseconds, request sent -> last byte received (k6 timings.duration)
//   sk_ttfb      Trend (time) milliseconds, request sent -> first byte received (k6 timings.waiting)
//
//   Every request adds exactly one point to sk_ok, sk_latency and sk_ttfb (and one to sk_successes when
//   it succeeded), all with the same tags:
//     name        the request's name in the scenario
//     stage       the label of the load stage the request finished in (elapsed time since the scenario
//                 started, against the IR's stage windows; zero-length stages never hold a request)
//     stage_kind  that stage's curve function (ramp, hold, spike, steps): `during spike` covers every spike
//     status      the HTTP status as a string, "0" when no response arrived
//     error       "" on success, else connection_refused | connection_reset | timeout | http_<code> |
//                 wrong_answer | other
//   and the same point metadata `request_id` ("<vu>:<iteration of that VU>"), unique in the run, which
//   joins the points of one request (metadata is not a tag: it adds no time series). It is set only
//   around these points, after the response: k6's own ~13 http_req_* samples per request would carry it
//   too, and its JSON output is the dearest part of a request (measured in
//   benchmarks/bench_collection.py). Join on it, not on
//   `time`: k6 stamps each point when it is added, so the points of one request differ by microseconds.
//   A point's `time` is when the response was judged; the request started `sk_latency` ms earlier.
//   The built-in `dropped_iterations` counter holds the open model's arrivals that found no free VU.
//   sk_since_start Gauge      once per VU, on its first request: milliseconds since exec.scenario.startTime;
//                             the point's time minus it is the origin of the stage windows (k6's own
//                             `vus` points start a second late, and k6 writes a unix-ms value with only
//                             11 significant digits, so the start itself is not sent)
//
// k6 reads whole responses, so it cannot time streamed tokens: ttft, itl and tpot are never recorded here.
//
// Templates (`{dataset}`, `{dataset.field}`, `${env:NAME}`, `{{` and `}}` for literal braces) are rendered
// per request; one data record is picked per request and used by all its references. Random picks use a
// mulberry32 generator seeded from SCENARIOKIT_SEED (or the scenario's seed) and the VU number.

import http from 'k6/http';
import exec from 'k6/execution';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';

const skOk = new Rate('sk_ok');
const skSuccesses = new Counter('sk_successes');
const skLatency = new Trend('sk_latency', true);
const skTtfb = new Trend('sk_ttfb', true);
const skSinceStart = new Gauge('sk_since_start');
let scenarioStartSent = false;

// --- seedable randomness ------------------------------------------------------------------------------

function hashString(text) {
  // FNV-1a, 32 bit
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- templates ----------------------------------------------------------------------------------------

// The same scanner as scenariokit/expr/template.py. Parts: a string (literal), {data, field} or {env}.
// Scenarios are validated before they are compiled; anything malformed is kept as literal text.
export function parseTemplate(text) {
  const parts = [];
  let literal = '';
  let pos = 0;
  const flush = () => {
    if (literal) parts.push(literal);
    literal = '';
  };
  while (pos < text.length) {
    const ch = text[pos];
    const two = text.substr(pos, 2);
    if (ch !== '{' && ch !== '}' && ch !== '$') {
      literal += ch;
      pos += 1;
    } else if (two === '{{' || two === '}}') {
      literal += ch;
      pos += 2;
    } else if (two === '${' && text.substr(pos, 3) !== '${{') {
      const close = text.indexOf('}', pos);
      const inner = close === -1 ? '' : text.slice(pos + 2, close);
      const m = /^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(inner);
      if (!m) {
        literal += ch;
        pos += 1;
        continue;
      }
      flush();
      parts.push({ env: m[1] });
      pos = close + 1;
    } else if (ch === '{') {
      const close = text.indexOf('}', pos);
      const inner = close === -1 ? '' : text.slice(pos + 1, close);
      const m = /^([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?$/.exec(inner);
      if (!m) {
        literal += ch;
        pos += 1;
        continue;
      }
      flush();
      parts.push({ data: m[1], field: m[2] === undefined ? null : m[2] });
      pos = close + 1;
    } else {
      literal += ch; // a lone `$` or `}`
      pos += 1;
    }
  }
  flush();
  if (parts.length === 0) return '';
  if (parts.length === 1 && typeof parts[0] === 'string') return parts[0];
  return { template: parts };
}

function compileValue(value) {
  if (typeof value === 'string') return parseTemplate(value);
  if (Array.isArray(value)) return { array: value.map(compileValue) };
  if (value !== null && typeof value === 'object') {
    return { object: Object.keys(value).map((key) => [key, compileValue(value[key])]) };
  }
  return { constant: value };
}

function usedDatasets(compiled, out) {
  if (compiled === null || typeof compiled !== 'object') return out;
  if (compiled.template) {
    for (const part of compiled.template) if (typeof part === 'object' && part.data) out.add(part.data);
  } else if (compiled.array) {
    for (const item of compiled.array) usedDatasets(item, out);
  } else if (compiled.object) {
    for (const [, item] of compiled.object) usedDatasets(item, out);
  }
  return out;
}

function renderString(compiled, ctx) {
  if (typeof compiled === 'string') return compiled;
  let out = '';
  for (const part of compiled.template) {
    if (typeof part === 'string') out += part;
    else if (part.env !== undefined) out += __ENV[part.env] === undefined ? '' : String(__ENV[part.env]);
    else out += ctx.field(part.data, part.field);
  }
  return out;
}

function renderValue(compiled, ctx) {
  if (typeof compiled === 'string' || compiled.template) return renderString(compiled, ctx);
  if (compiled.array) return compiled.array.map((item) => renderValue(item, ctx));
  if (compiled.object) {
    const out = {};
    for (const [key, item] of compiled.object) out[key] = renderValue(item, ctx);
    return out;
  }
  return compiled.constant;
}

// --- judging ------------------------------------------------------------------------------------------

export function normalizeText(text) {
  return String(text).toLowerCase().replace(/\s+/g, ' ').trim();
}

// The assistant's text: the message content, or for a stream the concatenated deltas of its SSE events.
export function chatAnswer(body, stream) {
  if (typeof body !== 'string') return '';
  if (!stream) {
    try {
      const choice = (JSON.parse(body).choices || [])[0];
      const content = choice && choice.message ? choice.message.content : '';
      return typeof content === 'string' ? content : '';
    } catch (e) {
      return '';
    }
  }
  let text = '';
  for (const line of body.split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (!data || data === '[DONE]') continue;
    try {
      const choice = (JSON.parse(data).choices || [])[0];
      const piece = choice && choice.delta ? choice.delta.content : null;
      if (typeof piece === 'string') text += piece;
    } catch (e) {
      // not JSON: ignore the event
    }
  }
  return text;
}

// k6 error codes: https://grafana.com/docs/k6/latest/javascript-api/error-codes/
export function classifyError(res) {
  const code = res.error_code || 0;
  const message = String(res.error || '');
  if (code === 1212 || message.indexOf('connection refused') !== -1) return 'connection_refused';
  if (code === 1220 || code === 1201 || message.indexOf('reset by peer') !== -1) return 'connection_reset';
  if (code === 1050 || code === 1211 || message.indexOf('timeout') !== -1) return 'timeout';
  if (res.status) return `http_${res.status}`;
  return 'other';
}

function statusOk(status, expected) {
  if (!status) return false;
  if (expected.length === 0) return status >= 200 && status < 300;
  return expected.indexOf(status) !== -1;
}

// --- the runner ---------------------------------------------------------------------------------------

// Stage windows [start_s, end_s) from the stages' durations; zero-length stages (instant jumps) hold none.
export function stageWindows(stages) {
  const windows = [];
  let elapsed = 0;
  for (const stage of stages) {
    if (stage.duration > 0) windows.push({ label: stage.label, kind: stage.kind, start: elapsed, end: elapsed + stage.duration });
    elapsed += stage.duration;
  }
  return windows;
}

// The stage at `elapsedS` seconds into the scenario; after the last one (graceful stop), the last one.
export function stageAt(windows, elapsedS) {
  for (const w of windows) if (elapsedS < w.end) return w;
  return windows.length ? windows[windows.length - 1] : { label: '', kind: '' };
}

function lowerKeys(headers) {
  const out = {};
  for (const key of Object.keys(headers)) out[key.toLowerCase()] = key;
  return out;
}

// scenario: {name, baseUrl, headers, seed, thinkTime: {kind, ...params}, stages: [{label, kind, duration}]}
// requests: [{name, weight, method, path, headers, json, body, chat, stream, expectStatus, expectContains,
//             timeout}]; data: {name: {defaultField, pick, records}}. See the generated script.
export class Runner {
  constructor(scenario, requests, data) {
    this.baseUrl = String(scenario.baseUrl).replace(/\/+$/, '');
    this.seed = String(scenario.seed);
    this.thinkSpec = scenario.thinkTime;
    this.windows = stageWindows(scenario.stages);
    this.data = data;
    this.rng = null;
    this.total = 0;
    this.requests = requests.map((req) => {
      // target headers first, a request's own header of the same name (any case) replaces it
      const headers = Object.assign({}, req.headers);
      const own = lowerKeys(req.headers);
      for (const key of Object.keys(scenario.headers)) {
        if (own[key.toLowerCase()] === undefined) headers[key] = scenario.headers[key];
      }
      if (req.json !== null && own['content-type'] === undefined && lowerKeys(headers)['content-type'] === undefined) {
        headers['Content-Type'] = 'application/json';
      }
      const compiled = {
        path: parseTemplate(req.path),
        headers: Object.keys(headers).map((key) => [key, parseTemplate(String(headers[key]))]),
        json: req.json === null ? null : compileValue(req.json),
        body: req.body === null ? null : parseTemplate(req.body),
        contains: req.expectContains === null ? null : parseTemplate(req.expectContains),
      };
      const used = new Set();
      for (const part of [compiled.path, compiled.json, compiled.body, compiled.contains]) usedDatasets(part, used);
      for (const [, value] of compiled.headers) usedDatasets(value, used);
      this.total += Math.max(0, req.weight);
      const statuses = req.expectStatus;
      return {
        spec: req,
        cumulative: this.total,
        compiled,
        datasets: Array.from(used).filter((name) => data[name] !== undefined),
        params: {
          // the body is read only when it is judged
          responseType: req.chat || req.expectContains !== null ? 'text' : 'none',
          timeout: `${Math.round(req.timeout * 1000)}ms`,
          responseCallback:
            statuses.length > 0 ? http.expectedStatuses(...statuses) : http.expectedStatuses({ min: 200, max: 299 }),
        },
      };
    });
  }

  random() {
    if (this.rng === null) this.rng = mulberry32(hashString(`${this.seed}:${__VU}`));
    return this.rng();
  }

  // One request, drawn by weight.
  pick() {
    const x = this.random() * this.total;
    for (const req of this.requests) if (x < req.cumulative) return req;
    return this.requests[this.requests.length - 1];
  }

  currentStage() {
    return stageAt(this.windows, (Date.now() - exec.scenario.startTime) / 1000);
  }

  // One record per data set the request uses, shared by all its references.
  recordFor(req) {
    const chosen = {};
    for (const name of req.datasets) {
      const dataset = this.data[name];
      const n = dataset.records.length;
      if (n === 0) continue;
      const index = dataset.pick === 'sequential' ? exec.scenario.iterationInTest % n : Math.floor(this.random() * n);
      chosen[name] = dataset.records[index];
    }
    const data = this.data;
    return {
      field(name, field) {
        const record = chosen[name];
        if (record === undefined) return '';
        const value = record[field === null ? data[name].defaultField : field];
        return value === undefined ? '' : String(value);
      },
    };
  }

  iterate() {
    return this.send(this.pick());
  }

  send(req) {
    const spec = req.spec;
    const ctx = this.recordFor(req);
    const stage = this.currentStage();
    if (!scenarioStartSent) {
      skSinceStart.add(Date.now() - exec.scenario.startTime);
      scenarioStartSent = true;
    }
    const headers = {};
    for (const [key, value] of req.compiled.headers) headers[key] = renderString(value, ctx);
    let body = null;
    if (req.compiled.json !== null) body = JSON.stringify(renderValue(req.compiled.json, ctx));
    else if (req.compiled.body !== null) body = renderString(req.compiled.body, ctx);
    const url = this.baseUrl + renderString(req.compiled.path, ctx);
    const params = Object.assign({}, req.params, { headers, tags: { name: spec.name, stage: stage.label } });
    const res = http.request(spec.method, url, body, params);

    let error = '';
    // k6 also sets error_code (1400..1599) for HTTP errors: a response is judged by its status
    if (!res.status) error = classifyError(res);
    else if (!statusOk(res.status, spec.expectStatus)) error = `http_${res.status}`;
    else if (req.compiled.contains !== null) {
      const answer = spec.chat ? chatAnswer(res.body, spec.stream) : String(res.body || '');
      const expected = normalizeText(renderString(req.compiled.contains, ctx));
      if (normalizeText(answer).indexOf(expected) === -1) error = 'wrong_answer';
    }
    const ok = error === '';
    const tags = { name: spec.name, stage: stage.label, stage_kind: stage.kind, status: String(res.status || 0), error };
    exec.vu.metrics.metadata.request_id = `${__VU}:${exec.vu.iterationInScenario}`;
    skOk.add(ok, tags);
    if (ok) skSuccesses.add(1, tags);
    skLatency.add(res.timings.duration, tags);
    skTtfb.add(res.timings.waiting, tags);
    delete exec.vu.metrics.metadata.request_id;
    return ok;
  }

  // Think time in seconds, drawn from the scenario's distribution (closed model only).
  thinkTime() {
    const t = this.thinkSpec;
    let value = 0;
    if (t.kind === 'constant') value = t.value;
    else if (t.kind === 'uniform') value = t.low + (t.high - t.low) * this.random();
    else if (t.kind === 'exponential') value = -t.mean * Math.log(1 - this.random());
    else if (t.kind === 'normal') {
      const u = 1 - this.random();
      const v = this.random();
      value = t.mean + t.sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
    return Math.max(0, value);
  }
}
