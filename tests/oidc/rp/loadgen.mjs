// Closed-loop HTTP load generator for bench/oidc.py (the same one drives govtrust and the peer).
// Usage: node loadgen.mjs '<json: mode (refresh|cc|introspect), token_url, introspection_url,
//                          client_id, client_secret, concurrency, seconds, refresh_tokens, token>'
// Prints {"ok": N, "errors": E, "seconds": S, "rate": N/S, "first_error": "..."}.
const cfg = JSON.parse(process.argv[2]);
const auth = 'Basic ' + Buffer.from(`${cfg.client_id}:${cfg.client_secret}`).toString('base64');
const headers = { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' };
let ok = 0;
let errors = 0;
let firstError = '';

async function post(url, body) {
  const response = await fetch(url, { method: 'POST', headers, body: new URLSearchParams(body) });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${response.status} ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

async function worker(index, deadline, warmupEnd) {
  let refresh = cfg.refresh_tokens ? cfg.refresh_tokens[index] : null;
  while (Date.now() < deadline) {
    try {
      if (cfg.mode === 'refresh') {
        const result = await post(cfg.token_url, { grant_type: 'refresh_token', refresh_token: refresh });
        refresh = result.refresh_token;
      } else if (cfg.mode === 'cc') {
        await post(cfg.token_url, { grant_type: 'client_credentials' });
      } else {
        const result = await post(cfg.introspection_url, { token: cfg.token });
        if (!result.active) throw new Error('token not active');
      }
      if (Date.now() >= warmupEnd) ok += 1;
    } catch (error) {
      errors += 1;
      firstError ||= String(error);
      if (cfg.mode === 'refresh') return;
    }
  }
}

const warmup = (cfg.warmup || 1) * 1000;
const start = Date.now();
const warmupEnd = start + warmup;
const deadline = warmupEnd + cfg.seconds * 1000;
await Promise.all(Array.from({ length: cfg.concurrency }, (_, i) => worker(i, deadline, warmupEnd)));
const seconds = (Date.now() - warmupEnd) / 1000;
console.log(JSON.stringify({ ok, errors, seconds, rate: ok / seconds, first_error: firstError }));
