// End-to-end tests of a live `troupe serve` driven by the official OpenAI Node SDK (npm `openai`,
// pinned in tests/e2e/package-lock.json, fetched by scripts/fetch_test_data.sh). Run by ctest as
// `node --test` with TROUPE_BINARY set to the built program; each server started here is killed when
// its suite ends.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

let OpenAI;
let Ajv;
try {
  ({ default: OpenAI } = await import('openai'));
  ({ default: Ajv } = await import('ajv'));
} catch (err) {
  throw new Error(
    `the OpenAI Node SDK or ajv is missing (${err.message}): run scripts/fetch_test_data.sh, which runs npm ci in tests/e2e`);
}

const binary = process.env.TROUPE_BINARY;
if (!binary) throw new Error('TROUPE_BINARY must name the troupe program (ctest sets it)');
// TROUPE_LAUNCHER, when set, starts the server through a launcher (the mpirun variant of this test:
// "mpirun -np 2 --oversubscribe"), and TROUPE_SERVE_ARGS adds flags to every server ("--tensor-parallel-size 2").
const launcher = (process.env.TROUPE_LAUNCHER ?? '').split(' ').filter((w) => w);
const serveArgs = (process.env.TROUPE_SERVE_ARGS ?? '').split(' ').filter((w) => w);

const MODEL = 'troupe-default';
const MAX_MODEL_LEN = 64;

// Starts `troupe serve` on free ports and resolves once it prints the HTTP port.
// Returns { url, metrics(), stop() }.
function startServer(extraArgs = []) {
  const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--client-port', '0', ...serveArgs, ...extraArgs];
  const child = launcher.length > 0
    ? spawn(launcher[0], [...launcher.slice(1), binary, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  // A test run that ends any other way (an exception, ^C) must not leave the server behind.
  process.once('exit', () => child.kill('SIGKILL'));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`troupe serve printed no port within 60 s; stderr:\n${stderr}`));
    }, 60_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /^troupe: HTTP API listening on 127\.0\.0\.1:(\d+)/.exec(line);
      if (!m) return;
      clearTimeout(timer);
      const url = `http://127.0.0.1:${m[1]}`;
      resolve({
        url,
        stop,
        metrics: async () => (await fetch(`${url}/metrics`)).text(),
      });
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`troupe serve exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
}

function client(server, apiKey = 'sk-unused') {
  // No retries: an error must reach the test as the server sent it.
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
}

// Expects `promise` to reject with an instance of `ErrorClass`; returns the error.
async function rejectsWith(promise, ErrorClass) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err?.constructor?.name}: ${err?.message}`);
    return err;
  }
  assert.fail(`expected ${ErrorClass.name}, but the request succeeded`);
}

// The value of the sample named `series` (name and labels, as /metrics prints them), or undefined.
function metricValue(metrics, series) {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const chatMessages = [{ role: 'user', content: 'Tell me a story about a troupe of actors.' }];

describe('troupe serve with the OpenAI SDK', { timeout: 120_000 }, () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer();
    openai = client(server);
  });
  after(async () => { await server?.stop(); });

  test('models.list names the served model', async () => {
    const models = [];
    for await (const m of openai.models.list()) models.push(m);
    assert.equal(models.length, 1);
    assert.equal(models[0].id, MODEL);
    assert.equal(models[0].object, 'model');
    assert.equal(typeof models[0].created, 'number');
  });

  test('chat.completions.create answers with a message, finish_reason and usage', async () => {
    const r = await openai.chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 12, temperature: 0 });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL);
    assert.equal(r.choices.length, 1);
    const [c] = r.choices;
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 12);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  test('streamed chat deltas concatenate to the greedy text, and include_usage adds a usage chunk', async () => {
    const params = { model: MODEL, messages: chatMessages, max_tokens: 12, temperature: 0 };
    const whole = await openai.chat.completions.create(params);
    const stream = await openai.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let role;
    let finishReason = null;
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.id, chunks[0].id, 'every chunk carries the same id');
      for (const c of chunk.choices) {
        role ??= c.delta.role;
        text += c.delta.content ?? '';
        if (c.finish_reason) finishReason = c.finish_reason;
      }
    }
    assert.equal(role, 'assistant');
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(finishReason, whole.choices[0].finish_reason);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
    assert.deepEqual(
      { prompt: last.usage.prompt_tokens, completion: last.usage.completion_tokens, total: last.usage.total_tokens },
      { prompt: whole.usage.prompt_tokens, completion: whole.usage.completion_tokens, total: whole.usage.total_tokens });
    assert.ok(chunks.slice(0, -1).every((c) => !c.usage), 'only the last chunk carries usage');
  });

  test('a stream without include_usage has no usage chunk', async () => {
    const stream = await openai.chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 4, stream: true });
    for await (const chunk of stream) {
      assert.ok(!chunk.usage, 'no usage without stream_options.include_usage');
      assert.ok(chunk.choices.length > 0);
    }
  });

  test('completions.create with a string prompt', async () => {
    const r = await openai.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.usage.prompt_tokens > 0);
  });

  test('completions.create with a token-id prompt counts exactly those tokens', async () => {
    const r = await openai.completions.create({ model: MODEL, prompt: [10, 20, 30, 40, 50], max_tokens: 4, temperature: 0 });
    assert.equal(r.choices.length, 1);
    assert.equal(r.usage.prompt_tokens, 5);
  });

  test('completions.create with several prompts answers one choice per prompt, each as if sent alone', async () => {
    const prompts = ['Once upon a time', 'The capital of France is', 'def main():'];
    const r = await openai.completions.create({ model: MODEL, prompt: prompts, max_tokens: 6, temperature: 0 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    let promptTokens = 0;
    let completionTokens = 0;
    for (let i = 0; i < prompts.length; ++i) {
      const alone = await openai.completions.create({ model: MODEL, prompt: prompts[i], max_tokens: 6, temperature: 0 });
      assert.equal(r.choices[i].text, alone.choices[0].text, `prompt ${i}`);
      promptTokens += alone.usage.prompt_tokens;
      completionTokens += alone.usage.completion_tokens;
    }
    assert.equal(r.usage.prompt_tokens, promptTokens);
    assert.equal(r.usage.completion_tokens, completionTokens);
  });

  test('streamed completion text equals the non-streamed greedy text', async () => {
    const params = { model: MODEL, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 };
    const whole = await openai.completions.create(params);
    let text = '';
    let finishReason = null;
    let usage;
    for await (const chunk of await openai.completions.create({ ...params, stream: true, stream_options: { include_usage: true } })) {
      for (const c of chunk.choices) {
        text += c.text;
        if (c.finish_reason) finishReason = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finishReason, whole.choices[0].finish_reason);
    assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  });

  test('n: 2 gives two choices in chat and completions', async () => {
    const chat = await openai.chat.completions.create({ model: MODEL, messages: chatMessages, n: 2, max_tokens: 6, temperature: 1, seed: 7 });
    assert.deepEqual(chat.choices.map((c) => c.index), [0, 1]);
    const cmpl = await openai.completions.create({ model: MODEL, prompt: ['a', 'b'], n: 2, max_tokens: 4, temperature: 1, seed: 7 });
    assert.deepEqual(cmpl.choices.map((c) => c.index), [0, 1, 2, 3]);
    // Streaming: each choice's deltas carry its index.
    const seen = new Set();
    for await (const chunk of await openai.chat.completions.create({ model: MODEL, messages: chatMessages, n: 2, max_tokens: 4, stream: true })) {
      for (const c of chunk.choices) seen.add(c.index);
    }
    assert.deepEqual([...seen].sort(), [0, 1]);
  });

  test('the same seed gives the same text', async () => {
    const params = { model: MODEL, prompt: 'Once upon a time', max_tokens: 12, temperature: 1.0, seed: 1234 };
    const a = await openai.completions.create(params);
    const b = await openai.completions.create(params);
    assert.equal(a.choices[0].text, b.choices[0].text);
    const chatParams = { model: MODEL, messages: chatMessages, max_tokens: 12, temperature: 1.0, seed: 99 };
    const c = await openai.chat.completions.create(chatParams);
    const d = await openai.chat.completions.create(chatParams);
    assert.equal(c.choices[0].message.content, d.choices[0].message.content);
  });

  test('max_tokens bounds the output and finishes with length', async () => {
    // ignore_eos (a vLLM extra the SDK passes through) keeps random weights from stopping early.
    const r = await openai.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, ignore_eos: true });
    assert.equal(r.usage.completion_tokens, 5);
    assert.equal(r.choices[0].finish_reason, 'length');
    const c = await openai.chat.completions.create({ model: MODEL, messages: chatMessages, max_completion_tokens: 3, ignore_eos: true });
    assert.equal(c.usage.completion_tokens, 3);
    assert.equal(c.choices[0].finish_reason, 'length');
  });

  test('a stop string ends the text before it', async () => {
    const params = { model: MODEL, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, ignore_eos: true };
    const full = (await openai.completions.create(params)).choices[0].text;
    // Pick a stop string from the middle of the greedy text: whatever precedes its first occurrence
    // is what the server must return.
    const chars = [...full];
    assert.ok(chars.length >= 8, `greedy text too short for the test: ${JSON.stringify(full)}`);
    const stop = chars.slice(Math.floor(chars.length / 2), Math.floor(chars.length / 2) + 2).join('');
    const expected = full.slice(0, full.indexOf(stop));
    const r = await openai.completions.create({ ...params, stop: [stop] });
    assert.equal(r.choices[0].text, expected);
    assert.equal(r.choices[0].finish_reason, 'stop');
    // The same through chat, streamed.
    const chatParams = { model: MODEL, messages: chatMessages, max_tokens: 24, temperature: 0, ignore_eos: true };
    const chatFull = (await openai.chat.completions.create(chatParams)).choices[0].message.content;
    const chatChars = [...chatFull];
    const chatStop = chatChars.slice(Math.floor(chatChars.length / 2), Math.floor(chatChars.length / 2) + 2).join('');
    let streamed = '';
    let finishReason = null;
    for await (const chunk of await openai.chat.completions.create({ ...chatParams, stop: chatStop, stream: true })) {
      for (const c of chunk.choices) {
        streamed += c.delta.content ?? '';
        if (c.finish_reason) finishReason = c.finish_reason;
      }
    }
    assert.equal(streamed, chatFull.slice(0, chatFull.indexOf(chatStop)));
    assert.equal(finishReason, 'stop');
  });

  test('logprobs are returned for chat and completions', async () => {
    const attempts = [
      ['chat', () => openai.chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 4, logprobs: true, top_logprobs: 2 }),
        (r) => {
          const content = r.choices[0].logprobs?.content;
          assert.ok(Array.isArray(content), 'choices[0].logprobs.content is a list');
          assert.equal(content.length, r.usage.completion_tokens);
          for (const t of content) {
            assert.equal(typeof t.logprob, 'number');
            assert.ok(t.logprob <= 0);
            assert.equal(t.top_logprobs.length, 2);
          }
        }],
      ['completions', () => openai.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 4, logprobs: 2 }),
        (r) => {
          const lp = r.choices[0].logprobs;
          assert.ok(lp && Array.isArray(lp.token_logprobs), 'choices[0].logprobs.token_logprobs is a list');
          assert.equal(lp.token_logprobs.length, r.usage.completion_tokens);
          assert.equal(lp.tokens.length, r.usage.completion_tokens);
        }],
    ];
    for (const [, request, check] of attempts) check(await request());
  });

  test('an unknown model is a NotFoundError', async () => {
    const err = await rejectsWith(
      openai.chat.completions.create({ model: 'no-such-model', messages: chatMessages }), OpenAI.NotFoundError);
    assert.equal(err.status, 404);
    assert.match(err.message, /no-such-model/);
    await rejectsWith(openai.completions.create({ model: 'no-such-model', prompt: 'x' }), OpenAI.NotFoundError);
  });

  test('an invalid parameter is a BadRequestError that names it', async () => {
    const err = await rejectsWith(
      openai.chat.completions.create({ model: MODEL, messages: chatMessages, temperature: -1 }), OpenAI.BadRequestError);
    assert.equal(err.status, 400);
    assert.match(err.message, /temperature/);
  });

  test('aborting a stream mid-way ends its request on the server', async () => {
    const aborted = async () => metricValue(await server.metrics(),
      `troupe:request_success_total{finished_reason="abort",model_name="${MODEL}"}`);
    const abortedBefore = await aborted();
    const controller = new AbortController();
    // Long enough (seconds of generation) that it cannot finish before the abort reaches the server.
    const stream = await openai.chat.completions.create(
      { model: MODEL, messages: chatMessages, max_tokens: 4000, ignore_eos: true, stream: true },
      { signal: controller.signal });
    let contentChunks = 0;
    let finished = false;
    try {
      for await (const chunk of stream) {
        for (const c of chunk.choices) {
          if (c.finish_reason) finished = true;
          if (c.delta.content) ++contentChunks;
        }
        if (contentChunks === 2) controller.abort();
      }
    } catch (err) {
      assert.ok(err instanceof OpenAI.APIUserAbortError || err.name === 'AbortError', `${err?.constructor?.name}: ${err?.message}`);
    }
    // Chunks the SDK had already received may still come out after the abort, but the stream ends
    // without the request finishing.
    assert.ok(contentChunks >= 2);
    assert.ok(!finished, 'the stream ended at the abort, before the request finished');
    // The server notices the closed connection and aborts the request; poll until it has.
    const running = `troupe:num_requests_running{model_name="${MODEL}"}`;
    let metrics = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      metrics = await server.metrics();
      if (metricValue(metrics, running) === 0 && (await aborted()) === abortedBefore + 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(metrics.split('\n').includes(`${running} 0.0`),
      `no line '${running} 0.0' in /metrics:\n${metrics.split('\n').filter((l) => l.includes('num_requests')).join('\n')}`);
    assert.equal(await aborted(), abortedBefore + 1, 'the request finished as aborted');
    // And the server still serves.
    const r = await openai.completions.create({ model: MODEL, prompt: 'still there?', max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  });

  // Structured outputs: sampled (temperature 1, seeded) outputs always follow their JSON schema, regex or
  // choice, through the SDK's own request shapes (response_format) and vLLM's extra fields.
  // Bounded strings, numbers and arrays, so every output finishes well inside max_tokens.
  const schemas = [
    {
      type: 'object',
      properties: {
        name: { type: 'string', maxLength: 8 },
        age: { type: 'integer', minimum: 0, maximum: 120 },
        ok: { type: 'boolean' },
      },
      required: ['name', 'age', 'ok'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: {
        kind: { enum: ['cat', 'dog', 'fish'] },
        tags: { type: 'array', items: { type: 'string', maxLength: 4 }, maxItems: 3 },
        score: { type: 'number' },
      },
      required: ['kind', 'tags'],
      additionalProperties: false,
    },
    {
      type: 'array',
      items: { type: 'object', properties: { id: { type: 'integer' }, v: { type: ['string', 'null'], maxLength: 5 } },
               required: ['id', 'v'], additionalProperties: false },
      minItems: 1,
      maxItems: 2,
    },
  ];

  test('100 seeded sampled json_schema outputs all validate against their schema', async () => {
    const ajv = new Ajv({ strict: false });
    const validators = schemas.map((s) => ajv.compile(s));
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => openai.chat.completions.create({
      model: MODEL,
      messages: chatMessages,
      max_tokens: 200,
      temperature: 1,
      seed: i,
      response_format: { type: 'json_schema', json_schema: { name: `s${i % schemas.length}`, strict: true, schema: schemas[i % schemas.length] } },
    })));
    results.forEach((r, i) => {
      const [c] = r.choices;
      assert.equal(c.finish_reason, 'stop', `request ${i}: ${c.message.content}`);
      let value;
      assert.doesNotThrow(() => { value = JSON.parse(c.message.content); }, `request ${i}: ${c.message.content}`);
      const valid = validators[i % schemas.length];
      assert.ok(valid(value), `request ${i}: ${c.message.content}: ${JSON.stringify(valid.errors)}`);
    });
  });

  test('json_object outputs parse as JSON objects', async () => {
    for (let seed = 0; seed < 5; ++seed) {
      const r = await openai.chat.completions.create({
        model: MODEL, messages: chatMessages, max_tokens: 200, temperature: 1, seed, response_format: { type: 'json_object' },
      });
      const [c] = r.choices;
      if (c.finish_reason !== 'stop') continue;  // json_object is unbounded: a long one may run out of tokens
      const value = JSON.parse(c.message.content);
      assert.equal(typeof value, 'object');
      assert.ok(value !== null && !Array.isArray(value), c.message.content);
    }
  });

  test('guided_regex and guided_choice outputs always match, streamed too', async () => {
    const pattern = '[0-9]{3}-[a-z]{2,4}';
    for (let seed = 0; seed < 10; ++seed) {
      const r = await openai.completions.create({ model: MODEL, prompt: 'id:', max_tokens: 20, temperature: 1, seed, guided_regex: pattern });
      assert.match(r.choices[0].text, new RegExp(`^${pattern}$`));
      assert.equal(r.choices[0].finish_reason, 'stop');
      const choices = ['red', 'green', 'blue sky'];
      const stream = await openai.chat.completions.create({
        model: MODEL, messages: chatMessages, max_tokens: 20, temperature: 1, seed, guided_choice: choices, stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      assert.ok(choices.includes(text), text);
    }
  });

  test('a schema that is not JSON is a 400 naming the field', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 5, guided_json: '{"type": ' }),
      (err) => err.status === 400 && err.error?.param === 'guided_json');
  });
  // vLLM serves tool_choice "required" and a named function without --enable-auto-tool-choice or a parser (this
  // server has neither): the output is constrained to the calls' JSON, so every sampled answer's arguments
  // validate against their tool.
  // Bounded parameters, so every constrained output finishes well inside max_tokens.
  const parameters = {
    get_weather: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 8 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
      required: ['city', 'days'],
      additionalProperties: false,
    },
    get_time: {
      type: 'object', properties: { zone: { enum: ['utc', 'cet'] } }, required: ['zone'], additionalProperties: false,
    },
  };
  const tools = Object.entries(parameters).map(([name, schema]) => ({ type: 'function', function: { name, parameters: schema } }));
  const ajv = new Ajv({ strict: false });
  const validators = Object.fromEntries(Object.entries(parameters).map(([name, schema]) => [name, ajv.compile(schema)]));
  // "required" is vLLM's array of calls without maxItems, and JSON allows whitespace between tokens: the
  // sampled array may run long, hence its larger max_tokens.
  const request = (seed, tool_choice) => ({
    model: MODEL, messages: chatMessages, tools, tool_choice, max_tokens: tool_choice === 'required' ? 2000 : 300, temperature: 1, seed,
  });

  function assertValidCall(call, what) {
    assert.match(call.id, /^chatcmpl-tool-[0-9a-f]+$/, what);
    assert.equal(call.type, 'function', what);
    const valid = validators[call.function.name];
    assert.ok(valid, `${what}: unknown tool ${call.function.name}`);
    let args;
    assert.doesNotThrow(() => { args = JSON.parse(call.function.arguments); }, `${what}: ${call.function.arguments}`);
    assert.ok(valid(args), `${what}: ${call.function.arguments}: ${JSON.stringify(valid.errors)}`);
  }

  // The tool calls of a stream: each index's first delta carries its id, type and name; the argument pieces add up.
  async function streamedCalls(stream) {
    const calls = [];
    let finish = null;
    let content = '';
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        content += c.delta.content ?? '';
        for (const d of c.delta.tool_calls ?? []) {
          if (d.index === calls.length) calls.push({ id: d.id, type: d.type, function: { name: d.function.name, arguments: '' } });
          else assert.equal(d.id, undefined, JSON.stringify(d));
          calls[d.index].function.arguments += d.function?.arguments ?? '';
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    return { calls, finish, content };
  }

  test('tool_choice required: every sampled answer is tool_calls whose arguments validate, streamed the same', async () => {
    for (let seed = 0; seed < 8; ++seed) {
      const [c] = (await openai.chat.completions.create(request(seed, 'required'))).choices;
      assert.equal(c.finish_reason, 'tool_calls', `seed ${seed}: ${JSON.stringify(c.message)}`);
      assert.equal(c.message.content, '');
      assert.ok(c.message.tool_calls.length >= 1);
      c.message.tool_calls.forEach((call, i) => assertValidCall(call, `seed ${seed} call ${i}`));
      const s = await streamedCalls(await openai.chat.completions.create({ ...request(seed, 'required'), stream: true }));
      assert.equal(s.finish, 'tool_calls');
      assert.equal(s.content, '');
      assert.deepEqual(s.calls.map((x) => [x.function.name, x.function.arguments]),
        c.message.tool_calls.map((x) => [x.function.name, x.function.arguments]));
      s.calls.forEach((call, i) => assertValidCall(call, `seed ${seed} streamed call ${i}`));
    }
  });

  test('a named function: every sampled answer is one call of it whose arguments validate, streamed the same', async () => {
    const named = { type: 'function', function: { name: 'get_weather' } };
    for (let seed = 0; seed < 8; ++seed) {
      const [c] = (await openai.chat.completions.create(request(seed, named))).choices;
      // vLLM keeps the engine's finish_reason for a named function.
      assert.equal(c.finish_reason, 'stop', `seed ${seed}: ${JSON.stringify(c.message)}`);
      assert.equal(c.message.tool_calls.length, 1);
      assert.equal(c.message.tool_calls[0].function.name, 'get_weather');
      assertValidCall(c.message.tool_calls[0], `seed ${seed}`);
      const s = await streamedCalls(await openai.chat.completions.create({ ...request(seed, named), stream: true }));
      assert.equal(s.finish, 'stop');
      assert.equal(s.calls.length, 1);
      assertValidCall(s.calls[0], `seed ${seed} streamed`);
      assert.equal(s.calls[0].function.arguments, c.message.tool_calls[0].function.arguments);
    }
  });
});

describe(`troupe serve --max-model-len ${MAX_MODEL_LEN} with the OpenAI SDK`, { timeout: 60_000 }, () => {
  let server;
  let short;
  before(async () => {
    server = await startServer(['--max-model-len', String(MAX_MODEL_LEN)]);
    short = client(server);
  });
  after(async () => { await server?.stop(); });

  test('a prompt over the context length is a BadRequestError', async () => {
    const err = await rejectsWith(
      short.completions.create({ model: MODEL, prompt: 'hello '.repeat(200), max_tokens: 4 }), OpenAI.BadRequestError);
    assert.equal(err.status, 400);
    assert.match(err.message, new RegExp(`maximum context length is ${MAX_MODEL_LEN} tokens`));
    const chatErr = await rejectsWith(
      short.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello '.repeat(200) }] }),
      OpenAI.BadRequestError);
    assert.match(chatErr.message, /maximum context length/);
  });

  test('max_tokens over the context length is a BadRequestError naming it', async () => {
    const err = await rejectsWith(
      short.completions.create({ model: MODEL, prompt: 'x', max_tokens: 100 }), OpenAI.BadRequestError);
    assert.equal(err.param, 'max_tokens');
  });
});

describe('troupe serve --api-key with the OpenAI SDK', { timeout: 60_000 }, () => {
  let server;
  before(async () => { server = await startServer(['--api-key', 'sk-troupe-test']); });
  after(async () => { await server?.stop(); });

  test('a wrong key is an AuthenticationError, the right one is served', async () => {
    const err = await rejectsWith(client(server, 'sk-wrong').models.list(), OpenAI.AuthenticationError);
    assert.equal(err.status, 401);
    await rejectsWith(
      client(server, 'sk-wrong').chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 2 }),
      OpenAI.AuthenticationError);
    const r = await client(server, 'sk-troupe-test').chat.completions.create({ model: MODEL, messages: chatMessages, max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  });
});

describe('troupe serve --enable-auto-tool-choice --tool-call-parser hermes --reasoning-parser deepseek_r1 with the OpenAI SDK',
  { timeout: 60_000 }, () => {
  let server;
  let openai;
  before(async () => {
    server = await startServer(['--enable-auto-tool-choice', '--tool-call-parser', 'hermes', '--reasoning-parser', 'deepseek_r1']);
    openai = client(server);
  });
  after(async () => { await server?.stop(); });

  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather', description: 'Weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  }];
  const request = { model: MODEL, messages: chatMessages, tools, max_tokens: 8, temperature: 0, ignore_eos: true };

  test('a tools request with tool_choice auto answers with tool_calls, reasoning_content and the text read by the parsers', async () => {
    const r = await openai.chat.completions.create(request);
    const [c] = r.choices;
    assert.ok(Array.isArray(c.message.tool_calls));
    // deepseek_r1 reads text without </think> as reasoning: the tiny model's text is all reasoning.
    assert.equal(typeof c.message.reasoning_content, 'string');
    assert.ok(c.message.reasoning_content.length > 0);
    assert.equal(c.message.content, null);
    assert.equal(c.finish_reason, c.message.tool_calls.length > 0 ? 'tool_calls' : 'length');
  });

  test('streamed, the reasoning_content deltas add up to the same reasoning', async () => {
    const whole = (await openai.chat.completions.create(request)).choices[0];
    const stream = await openai.chat.completions.create({ ...request, stream: true });
    let reasoning = '';
    let finish = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        reasoning += c.delta.reasoning_content ?? '';
        assert.ok(!c.delta.content, `content in a stream of reasoning: ${JSON.stringify(c.delta)}`);
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(reasoning, whole.message.reasoning_content);
    assert.equal(finish, whole.finish_reason);
  });
});
