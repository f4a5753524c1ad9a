// scenariokit runtime for k6: copied verbatim next to every generated `<scenario>.k6.js`.
//
// The generated script holds the scenario as data (requests, data sets, stage windows); this module
// renders templates, sends requests, judges them and records the metrics below. It imports only k6's own
// modules, so a stock `k6 run` runs it.
//
// Metrics contract (the scenariokit runner parses these points from `k6 run --out json=results.json`):
//
//   sk_latency   Trend (time) milliseconds, request sent -> last byte received (k6 timings.duration)
//
//   Every request adds exactly one sk_latency point, which is its whole record:
//     tags
//       name        the request's name in the scenario
//       stage       the label of the load stage the request finished in (elapsed time since the scenario
//                   started, against the IR's stage windows; zero-length stages never hold a request)
//       stage_kind  that stage's curve function (ramp, hold, spike, steps): `during spike` covers every spike
//       status      the HTTP status as a string, "0" when no response arrived
//       error       "" on success, else connection_refused | connection_reset | timeout | http_<code> |
//                   wrong_answer | other
//     metadata
//       ttfb        milliseconds, request sent -> first byte received (k6 timings.waiting), as a string.
//                   Metadata, not a tag: a tag value per request would add a time series per request.
//   A point's `time` is when the response was judged; the request started `sk_latency` ms earlier.
//   One point per request, with no second point to join, because each point is dear: k6 pushes it through
//   its sample channel and writes a JSON line for it (benchmarks/bench_collection.py, docs/results-format.md).
//
//   Only for the script's own thresholds, and only when SCENARIO.emit asks (the compiler sets it from the
//   SLOs; a script without thresholds sends none), with the same tags and no metadata:
//     sk_ok        Rate         1 when the request met its `expect`, else 0            (emit.ok)
//     sk_successes Counter      1 per request that met its `expect` (throughput)      (emit.successes)
//     sk_ttfb      Trend (time) the request's ttfb again, for ttfb thresholds          (emit.ttfb)
//
//   The built-in `dropped_iterations` counter holds the open model's arrivals that found no free VU.
//   sk_since_start Gauge      once per VU, on its first request: milliseconds since exec.scenario.startTime;
//                             the point's time minus it is the origin of the stage windows (k6's own
//                             `vus` points start a second late, and k6 writes a unix-ms value with only
//                             11 significant digits, so the start itself is not sent)
//
// k6 reads whole responses, so it cannot time streamed tokens: ttft, itl and tpot are never recorded here.
//
// Templates (`{dataset}`, `{dataset.field}`, `${env:NAME}`, `{{` and `}}` for literal braces) are rendered
// per request when they use a data set (one data record is picked per request and used by all its
// references), else once per VU. Random picks use a
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

function lowerKeys(headers) {
  const out = {};
  for (const key of Object.keys(headers)) out[key.toLowerCase()] = key;
  return out;
}

// A stage for a test with no stages (never the case for a compiled scenario).
const NO_STAGE = { label: '', kind: '' };

// What `render*` reads a request's data record through when it uses no data set.
const NO_RECORD = { field: () => '' };

// scenario: {name, baseUrl, headers, seed, thinkTime: {kind, ...params}, stages: [{label, kind, duration}],
//            emit: {ok, successes, ttfb}}
// requests: [{name, weight, method, path, headers, json, body, chat, stream, expectStatus, expectContains,
//             timeout}]; data: {name: {defaultField, pick, records}}. See the generated script.
//
// A request sent thousands of times a second makes every step of `send` count: anything that does not
// depend on the data record or the moment is prepared once here (per VU: each VU runs its own copy).
export class Runner {
  constructor(scenario, requests, data) {
    this.baseUrl = String(scenario.baseUrl).replace(/\/+$/, '');
    this.seed = String(scenario.seed);
    this.thinkSpec = scenario.thinkTime;
    this.windows = stageWindows(scenario.stages);
    this.emit = Object.assign({ ok: true, successes: true, ttfb: true }, scenario.emit);
    this.data = data;
    this.rng = null;
    this.total = 0;
    this.startMs = null; // exec.scenario.startTime, read once: each `exec.scenario` builds a new object
    this.metadata = null; // exec.vu.metrics.metadata, likewise
    this.stageIndex = 0;
    this.requests = requests.map((req) => this.prepare(scenario, req));
  }

  prepare(scenario, req) {
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
    const params = {
      // the body is read only when it is judged
      responseType: req.chat || req.expectContains !== null ? 'text' : 'none',
      timeout: `${Math.round(req.timeout * 1000)}ms`,
      responseCallback:
        statuses.length > 0 ? http.expectedStatuses(...statuses) : http.expectedStatuses({ min: 200, max: 299 }),
    };
    // k6 tags its own ~13 http_req_* samples of a request with its URL (with stock k6's default system
    // tags): a URL rendered from a data set is tagged with the request's name instead, so that it is one time
    // series, not one per record. No other tag: the records come from sk_latency, and k6 writes every tag on
    // every one of those samples (a name and a stage tag cost 15% of k6's rate against a fast endpoint).
    if (usedDatasets(compiled.path, new Set()).size > 0) params.tags = { name: req.name };
    const prepared = {
      spec: req,
      cumulative: this.total,
      compiled,
      datasets: Array.from(used).filter((name) => this.data[name] !== undefined),
      fixed: null,
      params,
      tags: new Map(), // see recordTags
    };
    if (prepared.datasets.length === 0) {
      // no data record: everything but the moment is the same every time (`${env:...}` included)
      prepared.fixed = this.render(prepared, NO_RECORD);
      params.headers = prepared.fixed.headers;
    }
    return prepared;
  }

  random() {
    if (this.rng === null) this.rng = mulberry32(hashString(`${this.seed}:${__VU}`));
    return this.rng();
  }

  // One request, drawn by weight.
  pick() {
    if (this.requests.length === 1) return this.requests[0];
    const x = this.random() * this.total;
    for (const req of this.requests) if (x < req.cumulative) return req;
    return this.requests[this.requests.length - 1];
  }

  // The index of the stage window the scenario is in now: the first one not yet over, or after the last
  // one (graceful stop) the last one. Time only moves forward, so the walk resumes where the last request
  // left it.
  currentStage() {
    if (this.startMs === null) this.startMs = exec.scenario.startTime;
    const elapsedS = (Date.now() - this.startMs) / 1000;
    const last = this.windows.length - 1;
    let i = this.stageIndex;
    while (i < last && elapsedS >= this.windows[i].end) i++;
    this.stageIndex = i;
    return i;
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

  // The request's URL, headers, body and expected answer text with one data record.
  render(req, ctx) {
    const compiled = req.compiled;
    const headers = {};
    for (const [key, value] of compiled.headers) headers[key] = renderString(value, ctx);
    let body = null;
    if (compiled.json !== null) body = JSON.stringify(renderValue(compiled.json, ctx));
    else if (compiled.body !== null) body = renderString(compiled.body, ctx);
    const url = this.baseUrl + renderString(compiled.path, ctx);
    const contains = compiled.contains === null ? null : normalizeText(renderString(compiled.contains, ctx));
    return { url, headers, body, contains };
  }

  iterate() {
    return this.send(this.pick());
  }

  send(req) {
    const spec = req.spec;
    const stageIndex = this.currentStage();
    if (!scenarioStartSent) {
      skSinceStart.add(Date.now() - this.startMs);
      scenarioStartSent = true;
    }
    let sent = req.fixed;
    let params = req.params;
    if (sent === null) {
      sent = this.render(req, this.recordFor(req));
      params = Object.assign({}, params, { headers: sent.headers });
    }
    const res = http.request(spec.method, sent.url, sent.body, params);

    let error = '';
    // k6 also sets error_code (1400..1599) for HTTP errors: a response is judged by its status
    if (!res.status) error = classifyError(res);
    else if (!statusOk(res.status, spec.expectStatus)) error = `http_${res.status}`;
    else if (sent.contains !== null) {
      const answer = spec.chat ? chatAnswer(res.body, spec.stream) : String(res.body || '');
      if (normalizeText(answer).indexOf(sent.contains) === -1) error = 'wrong_answer';
    }
    this.record(req, stageIndex, res, error);
    return error === '';
  }

  // The tags of a request's points for one outcome in one stage: a run has few, each built once.
  recordTags(req, stageIndex, status, error) {
    const key = error === '' ? stageIndex * 1000 + status : `${stageIndex} ${status} ${error}`;
    let tags = req.tags.get(key);
    if (tags === undefined) {
      const stage = this.windows[stageIndex] || NO_STAGE;
      tags = { name: req.spec.name, stage: stage.label, stage_kind: stage.kind, status: String(status), error };
      req.tags.set(key, tags);
    }
    return tags;
  }

  // The request's points (see the metrics contract above).
  record(req, stageIndex, res, error) {
    const ok = error === '';
    const tags = this.recordTags(req, stageIndex, res.status || 0, error);
    if (this.metadata === null) this.metadata = exec.vu.metrics.metadata;
    // set only around this point: k6's own http_req_* samples would carry it too
    this.metadata.ttfb = res.timings.waiting;
    skLatency.add(res.timings.duration, tags);
    delete this.metadata.ttfb;
    // the rest exist only for the script's thresholds, and only where one reads them
    if (this.emit.ok) skOk.add(ok, tags);
    if (this.emit.successes && ok) skSuccesses.add(1, tags);
    if (this.emit.ttfb) skTtfb.add(res.timings.waiting, tags);
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
