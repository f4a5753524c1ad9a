// scenariokit runtime for k6: copied verbatim next to every generated `<scenario>.k6.js`.
//
// The generated script holds the scenario as data, computed by scenariokit's compiler (requests with
// their templates parsed and headers merged, data sets, the stage table, the failure table); this module
// renders templates, sends requests, judges them and writes their records (for the runner) or the metrics
// the script's thresholds read (for a stock `k6 run`). It imports only k6's own modules, so a stock
// `k6 run` runs it.
//
// Records (what the scenariokit runner reads). With SCENARIOKIT_RECORDS=console, the runner's driver runs
// `k6 run --console-output raw/records-k6.jsonl --log-format raw`, and each VU writes its requests there
// in batches, one line each:
//
//   {"outcomes": [[name, stage, status, ok, error, code, message], ...], "f64": "<base64>"}
//
// `f64` is base64 of little-endian float64s, four per request: t, its start (unix ms, Date.now());
// outcome, an index into `outcomes` (the VU's table of the fields that requests share: name, stage
// label, status (0 = no response), ok, error: null or a kind of the script's failure table
// (connection_refused, timeout, ...) | http_<code> | bad_stream | wrong_answer | other, see
// scenariokit/engines/outcomes.py; and only for a failure without a response, k6's error_code and its
// error message, cleaned by sampleMessage: a row per code, holding the first message, so a success costs
// nothing more and an error storm adds no text); latency (ms,
// k6's timings.duration: sent -> last byte) and ttfb (ms, timings.waiting). The runner turns them into
// the same records as the Locust runtime's (scenariokit/engines/k6/reader.py). Each VU's first write
// starts with `{"test_start": unix s}` (exec.scenario.startTime: the origin of the stage table). `stage`
// is the stage the request started in (elapsed time since the scenario started, looked up in the stage
// table as the compiler does: zero-length stages never hold a request).
//
// Why console.log and not metric points: each k6 metric point costs a sample in k6's pipeline and, with
// `--out json`, a JSON line beside the ones k6 writes per request for its own metrics. Why binary numbers
// in batches and not a line per request: k6's interpreter is slow at building strings and at formatting
// fractions; stores into a Float64Array and one base64 encoding per batch, done by k6 in Go, cost far
// less (docs/performance.md, "Where k6's rate goes" and the settings table). A VU writes its batch (one
// console.log, one write) when it can do so safely:
//
//   - it batches only in a closed model without think time (a VU sending back to back: the fast case),
//     at most FLUSH_EVERY_MS after its oldest unwritten record and FLUSH_AT_MOST records;
//   - never across a moment where k6 may stop the VU: a VU whose request overlapped (within
//     STOP_MARGIN_MS) a stage where the number of VUs falls, or the scenario's end, writes at once.
//     ramping-vus stops VUs only there, and lets their iteration finish (gracefulStop and
//     gracefulRampDown exceed the longest request timeout), so a finished run loses no record. The
//     margin covers the gap between the VU's clock and k6's stop (below 10 ms in
//     tests/test_engines.py::test_k6_records_survive_every_vu_stop; 0 loses records there);
//   - an open model's VU may wait idle for its next arrival, and a VU with think time sleeps: both write
//     every record at once.
// What an interrupted k6 (Ctrl-C, SIGINT from the runner, a kill) loses is the requests in flight and at
// most FLUSH_EVERY_MS of each VU's records.
//
// Without SCENARIOKIT_RECORDS (a stock `k6 run` of the script), nothing is logged, and these metrics feed
// the script's own thresholds, each only when SCENARIO.emit asks (the compiler sets it from the SLOs),
// tagged with name, stage, stage_kind (that stage's curve: `during spike` covers every spike), status and
// error:
//     sk_latency   Trend (time) ms, the request's latency                                 (emit.latency)
//     sk_ok        Rate         1 when the request met its `expect`, else 0               (emit.ok)
//     sk_successes Counter      1 per request that met its `expect` (throughput)         (emit.successes)
//     sk_ttfb      Trend (time) the request's ttfb, for ttfb thresholds                  (emit.ttfb)
//
// The built-in `dropped_iterations` counter holds the open model's arrivals that found no free VU (the
// runner reads it from k6's REST API while k6 runs, and its total from --summary-export).
//
// k6 reads whole responses, so it cannot time streamed tokens: ttft, itl and tpot are never recorded here.
//
// Templates come parsed by the compiler (see `render`): a request that reads a data set is rendered per
// request (one record of each data set it reads, used by all its references), any other once per VU.
// Random picks use a mulberry32 generator seeded from SCENARIOKIT_SEED (or the scenario's seed) and the
// VU number.

import http from 'k6/http';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';

const skOk = new Rate('sk_ok');
const skSuccesses = new Counter('sk_successes');
const skLatency = new Trend('sk_latency', true);
const skTtfb = new Trend('sk_ttfb', true);

export const RECORDS_TO_CONSOLE = __ENV.SCENARIOKIT_RECORDS === 'console';
// `run --processes N`: this instance's index of the N (engines/k6/instances.py), for `split: workers`
const INSTANCE = Number(__ENV.SCENARIOKIT_INSTANCE || 0);
const INSTANCES = Math.max(1, Number(__ENV.SCENARIOKIT_INSTANCES || 1));
export const FLUSH_EVERY_MS = 100;
export const FLUSH_AT_MOST = 256;
const BATCH_NUMBERS = FLUSH_AT_MOST * 4; // four numbers a record
export const STOP_MARGIN_MS = 250;

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

// The compiler parsed every template (compile/ir.py): the script writes one as template(parts), each part
// literal text, {data, field} or {env}; any other string is sent as it is. A JSON body is a tree whose
// strings may be templates. `row` holds the one record of each data set the request reads.
class Template {
  constructor(parts) {
    this.parts = parts;
  }
}

export function template(parts) {
  return new Template(parts);
}

export function render(parts, row) {
  let out = '';
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (typeof part === 'string') out += part;
    else if (part.env === undefined) out += row[part.data][part.field];
    else {
      const value = __ENV[part.env];
      if (value !== undefined) out += value;
    }
  }
  return out;
}

// `obj[key] = value` with `__proto__` as the key would set the object's prototype instead
function setOwn(obj, key, value) {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

function renderText(value, row) {
  return value instanceof Template ? render(value.parts, row) : value;
}

export function renderJson(value, row) {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Template) return render(value.parts, row);
  if (Array.isArray(value)) return value.map((item) => renderJson(item, row));
  const out = Object.create(null); // no prototype: a `__proto__` key is a key like any other
  for (const key of Object.keys(value)) out[key] = renderJson(value[key], row);
  return out;
}

// --- judging ------------------------------------------------------------------------------------------

export function normalizeText(text) {
  return String(text).toLowerCase().replace(/\s+/g, ' ').trim();
}

// The assistant's text: the message content, or for a stream the concatenated deltas of its SSE events
// up to `data: [DONE]`; null when the body is not a chat answer (an event that is not a JSON object, a
// completion without choices[0].message.content), which is a bad_stream.
export function chatAnswer(body, stream) {
  if (typeof body !== 'string') return null;
  if (!stream) {
    try {
      const choices = JSON.parse(body).choices;
      const message = Array.isArray(choices) && choices.length > 0 ? choices[0].message : null;
      if (message === null || typeof message !== 'object' || Array.isArray(message) || !('content' in message)) return null;
      return typeof message.content === 'string' ? message.content : '';
    } catch (e) {
      return null;
    }
  }
  let text = '';
  let bad = false;
  for (const line of body.split('\n')) {
    const event = line.trim();
    if (!event.startsWith('data:')) continue;
    const data = event.slice(5).trim();
    if (data === '[DONE]') break;
    let chunk = null;
    try {
      chunk = JSON.parse(data);
    } catch (e) {
      // not JSON: bad, below
    }
    if (chunk === null || typeof chunk !== 'object' || Array.isArray(chunk)) {
      bad = true;
      continue;
    }
    const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
    for (const choice of choices) {
      const delta = choice !== null && typeof choice === 'object' ? choice.delta : null;
      const piece = delta !== null && typeof delta === 'object' ? delta.content : null;
      if (typeof piece === 'string') text += piece;
    }
  }
  return bad ? null : text;
}

// A failure without a response: the first row of the script's failure table ([kind, k6 error codes,
// lower-case message fragments]) that names its error code or a fragment of its message, else 'other'.
export function failureKind(failures, code, message) {
  const text = String(message).toLowerCase();
  for (const [kind, codes, fragments] of failures) {
    if (codes.indexOf(code) !== -1) return kind;
    for (const fragment of fragments) if (text.indexOf(fragment) !== -1) return kind;
  }
  return 'other';
}

// A failure's message as a record keeps it (scenariokit/engines/outcomes.py, sample_message, holds both
// runtimes to it): every secret (the request's header values, the environment values it reads) redacted,
// runs of control characters made one space, at most MESSAGE_CHARS characters. Redacted before the cut,
// so no prefix of a secret survives it.
export const MESSAGE_CHARS = 200;
const REDACTED = '[redacted]';
const SECRET_MIN_CHARS = 4;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

function chars(text) {
  return Array.from(text); // code points, as Python counts them
}

export function sampleMessage(message, secrets) {
  let text = String(message);
  const ordered = Array.from(new Set(secrets)).sort((a, b) => chars(b).length - chars(a).length);
  for (const secret of ordered) if (chars(secret).length >= SECRET_MIN_CHARS) text = text.split(secret).join(REDACTED);
  text = text.replace(CONTROL, ' ').replace(/^ +| +$/g, '');
  const points = chars(text);
  return points.length <= MESSAGE_CHARS ? text : points.slice(0, MESSAGE_CHARS - 1).join('') + '\u2026';
}

// The environment values a template tree reads (what a failure's message must not quote).
export function envValues(value, out) {
  if (value === null || typeof value !== 'object') return out;
  if (value instanceof Template) {
    for (const part of value.parts) if (typeof part !== 'string' && part.env !== undefined) out.push(__ENV[part.env] || '');
  } else if (Array.isArray(value)) for (const item of value) envValues(item, out);
  else for (const key of Object.keys(value)) envValues(value[key], out);
  return out;
}

// --- the runner ---------------------------------------------------------------------------------------

// The stages that last, from the script's stage table (the compiler's: each stage on the scenario's clock,
// [start, end) seconds, the level moving from `from` to `to`; an instant jump's window is empty).
export function stageWindows(stages) {
  return stages.filter((stage) => stage.end > stage.start);
}

// The index of the window the scenario is in `t` s after it started, walking on from window `i`: the first
// one not yet over, or after the last one (graceful stop) the last one. From window 0 this is the
// compiler's rule (compile/ir.py, StageTable).
export function stageAfter(windows, i, t) {
  const last = windows.length - 1;
  while (i < last && t >= windows[i].end) i++;
  return i;
}

// Where k6 may stop a VU, as [start_ms, end_ms] since the scenario started: every stage of a closed model
// whose level falls (a ramp down for its whole length, an instant drop at its moment), and the end.
// ramping-vus stops VUs nowhere else; an open model's VUs are never stopped before the end.
export function vuStopWindows(stages) {
  const windows = [];
  for (const stage of stages) if (stage.to < stage.from) windows.push([stage.start * 1000, stage.end * 1000]);
  windows.push([stages.length > 0 ? stages[stages.length - 1].end * 1000 : 0, Infinity]);
  return windows;
}

// A stage for a test with no stages (never the case for a compiled scenario).
const NO_STAGE = { label: '', kind: '' };

// The data records of a request that reads no data set.
const NO_ROW = {};

// Date.now, read once: a global such as `Date` is looked up by name each time it is used.
const now = Date.now;

// The hot path: one iteration, run thousands of times a second per core, where k6's interpreter makes
// every step count. A property read is a hash lookup (of objects that 32 VUs' worth of requests keep out
// of the processor's caches), a call of a function of ours costs about as much as a few dozen of those,
// and a read of a Go object's field (res.status, res.timings and its fields) goes through reflection. So
// each request kind gets a function of its own whose fixed values are variables of its closure (a slot
// each), the batch and the stage it shares with the others are variables of this closure, and the common
// case (nothing rendered per request, same stage and outcome as the last request, batch not due) reads
// each value of the response once and calls nothing of ours. Returns the VU's `iterate`.
function hotPath(runner) {
  const toConsole = runner.toConsole;
  const batching = runner.batching;
  const failures = runner.failures;
  // records (see the top of this file): a batch of numbers waiting to be written, and when to write it
  const batch = new Float64Array(BATCH_NUMBERS); // start (unix ms), outcome, latency and ttfb (ms) a record
  let batchLength = 0; // how many numbers the batch holds
  let flushDueMs = -Infinity; // unix ms: at a request ending then or later, batchDue decides
  let stageIndex = 0;
  let stageEndMs = -Infinity; // unix ms when the current stage window ends

  function enterStage(nowMs) {
    stageIndex = runner.currentStage(nowMs);
    stageEndMs = runner.stageEndMs;
  }

  function flush() {
    if (batchLength === 0) return;
    console.log(runner.batchLine(batch, batchLength));
    batchLength = 0;
    flushDueMs = -Infinity; // the next record starts a batch: batchDue says when it is due
  }

  // Called when the batch's first record came, when it is old or full, or when it may be due because
  // k6 may stop the VU (see the top of this file). Writes it, or says when to ask again.
  function batchDue(startedMs, endMs) {
    if (
      batching &&
      batchLength < BATCH_NUMBERS &&
      endMs - batch[0] < FLUSH_EVERY_MS &&
      ((startedMs >= runner.calmFromMs && endMs < runner.calmUntilMs) || runner.calm(startedMs, endMs))
    ) {
      flushDueMs = Math.min(batch[0] + FLUSH_EVERY_MS, runner.calmUntilMs);
    } else {
      flush();
    }
  }

  function sender(req) {
    const spec = req.spec;
    const bare = req.bare; // the URL alone is all k6 needs
    const call = req.call;
    const fixed = req.fixed;
    const url = fixed === null ? null : fixed.url;
    const anyOk = req.anyOk;
    const expected = req.expected;
    const readsAnswer = spec.chat || spec.expectContains !== null; // never a bare request (responseType)
    let lastKey = null; // the outcome of this kind's last request, and its index in the VU's table
    let lastOutcome = -1;

    // `row`: a flow's one record of each data set its steps read (undefined: draw this request's own)
    return function send(row) {
      const startedMs = now();
      if (startedMs >= stageEndMs) enterStage(startedMs);
      let sent = fixed;
      let res;
      if (bare) res = call(url);
      else {
        let params = req.fixedParams;
        if (sent === null) {
          sent = runner.render(req, row === undefined ? runner.row(spec.datasets) : row);
          params = Object.assign({}, req.params, { headers: sent.headers });
        }
        res = Runner.request(req, sent, params);
      }

      let error = '';
      let code = 0; // k6's error_code of a failure without a response
      const status = res.status || 0;
      // k6 also sets error_code (1400..1599) for HTTP errors: a response is judged by its status
      if (status === 0) {
        code = res.error_code || 0;
        error = failureKind(failures, code, res.error || '');
      }
      else if (anyOk ? status < 200 || status > 299 : expected.indexOf(status) === -1) error = `http_${status}`;
      else if (readsAnswer) {
        // a chat request's 2xx answer is its message (null: not one), any other answer the body
        const chatOk = spec.chat && status >= 200 && status <= 299;
        const answer = chatOk ? chatAnswer(res.body, spec.stream) : String(res.body || '');
        if (answer === null && anyOk) error = 'bad_stream';
        else if (sent.contains !== null && normalizeText(answer || '').indexOf(sent.contains) === -1) {
          error = 'wrong_answer';
        }
      }
      const timings = res.timings;
      // one outcome in one stage: what its points' tags or its records' outcome index are cached under
      const key = error === '' ? stageIndex * 1000 + status : `${stageIndex} ${status} ${error} ${code}`;
      if (!toConsole) {
        runner.addPoints(req, key, stageIndex, status, error, timings);
        return error === '';
      }

      // the record: four numbers; what the outcome's other fields are is said once per batch (`outcomes`)
      if (key !== lastKey) {
        // a failure without a response: its code and message make the outcome's row (once per code)
        const reason = status === 0 ? [code || null, sampleMessage(res.error || '', runner.secrets(req, sent))] : null;
        lastOutcome = runner.outcomeIndex(req, key, stageIndex, status, error, reason);
        lastKey = key;
      }
      const latencyMs = timings.duration;
      const n = batchLength;
      batch[n] = startedMs;
      batch[n + 1] = lastOutcome;
      batch[n + 2] = latencyMs;
      batch[n + 3] = timings.waiting;
      batchLength = n + 4;
      // the request's end, near enough (reading the clock again would cost more than the margins spare)
      const endMs = startedMs + latencyMs;
      if (endMs >= flushDueMs || batchLength === BATCH_NUMBERS) batchDue(startedMs, endMs);
      return error === '';
    };
  }

  const senders = runner.requests.map(sender);
  const tasks = runner.tasks.map((task) => (task.steps.length === 1 ? senders[task.steps[0]] : flow(task)));
  if (tasks.length === 1) return tasks[0];
  return function iterate() {
    return tasks[runner.pickIndex()]();
  };

  // A flow: its steps in order in this iteration, each sent when the one before has its answer and
  // judged on its own (a failed step does not stop the next), all reading one record of each data set.
  function flow(task) {
    const steps = task.steps.map((i) => senders[i]);
    const datasets = task.datasets;
    return function sendFlow() {
      const row = datasets.length > 0 ? runner.row(datasets) : NO_ROW;
      let ok = true;
      for (let i = 0; i < steps.length; i++) ok = steps[i](row) && ok;
      return ok;
    };
  }
}

// The entries of the mix, from the script's requests: a request, or the steps of a flow (requests with the
// same `flow`, in order; each carries the flow's weight), as indices into `requests`. `cumulative` is the
// sum of the weights up to and including the entry's (see pickIndex).
export function tasksOf(requests) {
  const tasks = [];
  const byFlow = new Map();
  let total = 0;
  requests.forEach((req, i) => {
    const spec = req.spec;
    const known = spec.flow === undefined ? undefined : byFlow.get(spec.flow);
    if (known !== undefined) {
      known.steps.push(i);
      for (const name of spec.datasets) if (known.datasets.indexOf(name) === -1) known.datasets.push(name);
      return;
    }
    total += Math.max(0, spec.weight);
    const task = { steps: [i], datasets: spec.datasets.slice(), cumulative: total };
    if (spec.flow !== undefined) byFlow.set(spec.flow, task);
    tasks.push(task);
  });
  return tasks;
}

// scenario: {name, baseUrl, seed, thinkTime: {kind, ...params}, stages: [{label, kind, start, end, from, to}],
//            failures: [[kind, codes, fragments]], emit: {ok, successes, ttfb}}
// requests: [{name, [flow,] weight, method, path, headers, json, body, datasets, chat, stream, expectStatus,
//             expectContains, timeout}] (a flow's steps carry its name in `flow`: see tasksOf);
// data: {name: {pick, records}}. See the generated script.
//
// A request sent thousands of times a second makes every step of sending it count (see hotPath):
// anything that does not depend on the data record or the moment is prepared once here (per VU: each VU
// runs its own copy).
export class Runner {
  constructor(scenario, requests, data) {
    this.baseUrl = String(scenario.baseUrl).replace(/\/+$/, '');
    this.seed = String(scenario.seed);
    this.thinkSpec = scenario.thinkTime;
    this.windows = stageWindows(scenario.stages);
    this.failures = scenario.failures;
    this.emit = Object.assign({ latency: true, ok: true, successes: true, ttfb: true }, scenario.emit);
    // records (see the top of this file): a batch of numbers waiting to be written, and when to write it
    this.toConsole = RECORDS_TO_CONSOLE;
    this.batching = this.toConsole && scenario.loadModel === 'closed' && this.thinkSpec.kind === 'none';
    this.stopWindows = vuStopWindows(scenario.stages);
    this.stopIndex = -1; // the stop window this VU's requests last came near; see calm
    this.calmFromMs = Infinity; // unix ms: a request started at or after this one, and finished
    this.calmUntilMs = -Infinity; // before this one, cannot be followed by a stop of the VU
    this.outcomeFields = []; // see outcomeIndex
    this.outcomesJson = '[]';
    this.data = data;
    this.rng = null;
    this.startMs = null; // exec.scenario.startTime, read once: each `exec.scenario` builds a new object
    this.startWritten = false;
    this.stageIndex = 0;
    this.stageEndMs = -Infinity; // unix ms when the current stage window ends; see currentStage
    this.requests = requests.map((req) => this.prepare(req));
    this.tasks = tasksOf(this.requests); // the mix's entries: what pickIndex draws
    this.total = this.tasks.length > 0 ? this.tasks[this.tasks.length - 1].cumulative : 0;
    this.setResponseCallbacks(this.requests);
    for (const req of this.requests) {
      req.fixedParams = Runner.sendParams(req);
      // the URL alone is all k6 needs: nothing rendered per request, no params, no body
      req.bare = req.fixed !== null && req.fixedParams === null && req.fixed.body === null;
    }
    this.iterate = hotPath(this); // see hotPath
  }

  prepare(req) {
    // k6 converts a request's params on every request (docs/performance.md, settings table), so a key is
    // set only where it differs from the script's defaults: the body is read only
    // when it is judged (the script sets discardResponseBodies), the timeout in ms (k6's default is 60 s),
    // and the expected statuses (for k6's own http_req_failed; the records judge by themselves) per request
    // only where the requests differ (else once for all: see setResponseCallbacks)
    const params = {};
    if (req.chat || req.expectContains !== null) params.responseType = 'text';
    if (req.timeout !== 60) params.timeout = Math.round(req.timeout * 1000);
    // k6 tags its own ~13 http_req_* samples of a request with its URL (with stock k6's default system
    // tags): a URL rendered from a data set is tagged with the request's name instead, so that it is one time
    // series, not one per record. No other tag: the records are the runtime's own console batches, and k6
    // writes every tag on every one of those samples (docs/performance.md).
    if (req.path instanceof Template && req.path.parts.some((part) => part.data !== undefined)) {
      params.tags = { name: req.name };
    }
    const prepared = {
      spec: req,
      ...Runner.caller(req),
      expected: req.expectStatus,
      anyOk: req.expectStatus.length === 0, // no `expect.status`: any 2xx
      headerNames: Object.keys(req.headers), // the request's headers are all it sends
      envSecrets: envValues([req.path, req.headers, req.json, req.body, req.expectContains], []),
      fixed: null,
      params,
      tags: new Map(), // see recordTags
      outcomes: new Map(), // see outcomeIndex
    };
    if (req.datasets.length === 0) {
      // no data record: everything but the moment is the same every time (`${env:...}` included)
      prepared.fixed = this.render(prepared, NO_ROW);
      if (Object.keys(prepared.fixed.headers).length > 0) params.headers = prepared.fixed.headers;
    }
    return prepared;
  }

  // k6 counts a response as failed (http_req_failed) unless its status is expected: the scenario's
  // `expect.status`, else 2xx. One callback for all requests where they agree, else one per request.
  setResponseCallbacks(requests) {
    const callback = (statuses) =>
      statuses.length > 0 ? http.expectedStatuses(...statuses) : http.expectedStatuses({ min: 200, max: 299 });
    const kinds = new Set(requests.map((req) => JSON.stringify(req.spec.expectStatus)));
    if (kinds.size <= 1) {
      if (requests.length > 0) http.setResponseCallback(callback(requests[0].spec.expectStatus));
      return;
    }
    for (const req of requests) req.params.responseCallback = callback(req.spec.expectStatus);
  }

  // The k6 function that sends a request, and whether it takes a body argument. k6 converts each argument
  // of its functions from JavaScript by reflection (a method name as much as a URL), so the named
  // functions (http.get(url), http.post(url, body)) are called, with no argument the request lacks.
  // A GET or HEAD with a body goes through http.request(method, url, body, params).
  static caller(req) {
    const named = { GET: http.get, HEAD: http.head, POST: http.post, PUT: http.put, PATCH: http.patch };
    Object.assign(named, { DELETE: http.del, OPTIONS: http.options });
    const bodiless = req.method === 'GET' || req.method === 'HEAD';
    if (bodiless && (req.json !== null || req.body !== null)) return { call: null, takesBody: true };
    return { call: named[req.method] || null, takesBody: !bodiless };
  }

  // The params a request without a data record is sent with: none at all when empty (even an empty
  // object costs k6 a conversion).
  static sendParams(req) {
    return Object.keys(req.params).length > 0 ? req.params : null;
  }

  random() {
    if (this.rng === null) this.rng = mulberry32(hashString(`${this.seed}:${__VU}`));
    return this.rng();
  }

  // The index of one entry of the mix (a request or a flow), drawn by weight.
  pickIndex() {
    const tasks = this.tasks;
    const x = this.random() * this.total;
    for (let i = 0; i < tasks.length; i++) if (x < tasks[i].cumulative) return i;
    return tasks.length - 1;
  }

  // The index of the stage window the scenario is in at `nowMs`: the first one not yet over, or after the
  // last one (graceful stop) the last one. Time only moves forward, so the walk resumes where the last
  // request left it, and the hot path calls this only once the current window is over (stageEndMs).
  currentStage(nowMs) {
    if (this.startMs === null) this.startMs = exec.scenario.startTime;
    const i = stageAfter(this.windows, this.stageIndex, (nowMs - this.startMs) / 1000);
    const last = this.windows.length - 1;
    this.stageIndex = i;
    this.stageEndMs = i < last ? this.startMs + this.windows[i].end * 1000 : Infinity;
    return i;
  }

  // One record of each named data set: for a request, shared by all its references; for a flow, by all
  // its steps.
  row(names) {
    const row = Object.create(null);
    for (const name of names) {
      const data = this.data[name];
      const records = data.records;
      const n = records.length;
      if (data.split === 'workers' && INSTANCES > 1 && INSTANCE < n) {
        // `split: workers`: instance i of N uses records i, i + N, ... (m of them), no other instance's
        const m = Math.ceil((n - INSTANCE) / INSTANCES);
        const k = data.pick === 'sequential' ? exec.scenario.iterationInInstance % m : Math.floor(this.random() * m);
        row[name] = records[INSTANCE + k * INSTANCES];
        continue;
      }
      const index = data.pick === 'sequential' ? exec.scenario.iterationInTest % n : Math.floor(this.random() * n);
      row[name] = records[index];
    }
    return row;
  }

  // The request's URL, headers, body and expected answer text with one data record of each data set.
  render(req, row) {
    const spec = req.spec;
    const headers = {};
    for (const name of req.headerNames) setOwn(headers, name, renderText(spec.headers[name], row));
    let body = null;
    if (spec.json !== null) body = JSON.stringify(renderJson(spec.json, row));
    else if (spec.body !== null) body = renderText(spec.body, row);
    const url = this.baseUrl + renderText(spec.path, row);
    const contains = spec.expectContains === null ? null : normalizeText(renderText(spec.expectContains, row));
    return { url, headers, body, contains };
  }

  // One iteration (one entry of the mix drawn by weight: a request, or a flow's steps in order; each sent,
  // judged and recorded) is `this.iterate`, made by hotPath in the constructor. In an open model an
  // iteration is one arrival, so a flow is one arrival too.

  // A request that needs more than its URL: a body, params, or a method with no function of its own.
  static request(req, sent, params) {
    const call = req.call;
    if (call === null) return http.request(req.spec.method, sent.url, sent.body, params);
    if (!req.takesBody) return params === null ? call(sent.url) : call(sent.url, params);
    return params === null ? call(sent.url, sent.body) : call(sent.url, sent.body, params);
  }

  // --- records through console.log (SCENARIOKIT_RECORDS=console)

  // What a failure's message must not quote: the request's header values and the environment values its
  // templates read.
  secrets(req, sent) {
    const headers = sent === null ? {} : sent.headers;
    return req.envSecrets.concat(Object.keys(headers).map((name) => String(headers[name])));
  }

  // An outcome's fields (name, stage, status, ok, error, and for a failure without a response [code,
  // message]) get a number in this VU's table, which every batch carries: a run has few outcomes, each
  // made once (the first message of a code stands for the others).
  outcomeIndex(req, key, stageIndex, status, error, reason) {
    let index = req.outcomes.get(key);
    if (index === undefined) {
      const stage = this.windows[stageIndex] || NO_STAGE;
      const fields = [req.spec.name, stage.label, status, error === '', error || null];
      this.outcomeFields.push(reason === null ? fields : fields.concat(reason));
      this.outcomesJson = JSON.stringify(this.outcomeFields);
      index = this.outcomeFields.length - 1;
      req.outcomes.set(key, index);
    }
    return index;
  }

  // Whether k6 cannot stop this VU after a request that ran from startedMs to endMs: the request, widened
  // by STOP_MARGIN_MS each way, overlaps no stop window. Requests come in time order, so the calm span
  // between two stop windows is computed once.
  calm(startedMs, endMs) {
    const windows = this.stopWindows;
    let i = Math.max(0, this.stopIndex);
    while (windows[i][1] + STOP_MARGIN_MS <= startedMs - this.startMs) i++; // the last window never ends
    this.stopIndex = i;
    this.calmFromMs = i === 0 ? -Infinity : this.startMs + windows[i - 1][1] + STOP_MARGIN_MS;
    this.calmUntilMs = this.startMs + windows[i][0] - STOP_MARGIN_MS;
    return startedMs >= this.calmFromMs && endMs < this.calmUntilMs;
  }

  // The line a batch is written as (see the top of this file), the VU's test start before the first.
  batchLine(batch, n) {
    const start = this.startWritten ? '' : `{"test_start":${this.startMs / 1000}}\n`;
    this.startWritten = true;
    const numbers = encoding.b64encode(batch.buffer.slice(0, n * 8));
    return `${start}{"outcomes":${this.outcomesJson},"f64":"${numbers}"}`;
  }

  // --- metric points for the script's own thresholds (a stock `k6 run`)

  // The tags of a request's points for one outcome in one stage: a run has few, each built once.
  recordTags(req, key, stageIndex, status, error) {
    let tags = req.tags.get(key);
    if (tags === undefined) {
      const stage = this.windows[stageIndex] || NO_STAGE;
      tags = { name: req.spec.name, stage: stage.label, stage_kind: stage.kind, status: String(status), error };
      req.tags.set(key, tags);
    }
    return tags;
  }

  addPoints(req, key, stageIndex, status, error, timings) {
    const emit = this.emit;
    if (!(emit.latency || emit.ok || emit.successes || emit.ttfb)) return;
    const ok = error === '';
    const tags = this.recordTags(req, key, stageIndex, status, error);
    if (emit.latency) skLatency.add(timings.duration, tags);
    if (emit.ok) skOk.add(ok, tags);
    if (emit.successes && ok) skSuccesses.add(1, tags);
    if (emit.ttfb) skTtfb.add(timings.waiting, tags);
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
