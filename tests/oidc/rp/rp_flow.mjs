// The certified relying party (openid-client) against a running govtrust.
// Usage: node rp_flow.mjs '<json: issuer, client_id, client_secret, redirect_uri,
//                            post_logout_redirect_uri, login_name, password>'
// Prints one JSON object with what the RP saw; exits non-zero on any failure.
import * as client from 'openid-client';

const cfg = JSON.parse(process.argv[2]);
const jar = new Map();

function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const [name, ...rest] = pair.split('=');
    jar.set(name.trim(), rest.join('='));
  }
}

async function browse(url, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const response = await fetch(new URL(url, cfg.issuer), { ...init, headers, redirect: 'manual' });
  remember(response);
  return response;
}

function field(html, name) {
  const match = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!match) throw new Error(`no ${name} field in page`);
  return match[1];
}

async function postForm(url, data) {
  return browse(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(data).toString(),
  });
}

const result = {};
const config = await client.discovery(
  new URL(cfg.issuer),
  cfg.client_id,
  { id_token_signed_response_alg: cfg.id_token_alg || 'ES256' },
  client.ClientSecretBasic(cfg.client_secret),
  { execute: [client.allowInsecureRequests] },
);
result.issuer = config.serverMetadata().issuer;

const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const nonce = client.randomNonce();
const state = client.randomState();
const authUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: cfg.redirect_uri,
  scope: 'openid profile email phone offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  nonce,
  state,
});

// The browser part: authorize → login page → password form → consent → redirect with code.
let response = await browse(authUrl.href);
let location = response.headers.get('location');
let page = await (await browse(location)).text();
response = await postForm(`${location}/password`, {
  csrf: field(page, 'csrf'), login_name: cfg.login_name, password: cfg.password,
});
location = response.headers.get('location');
if (location.startsWith('/oidc/interaction/')) {
  page = await (await browse(location)).text();
  response = await postForm(`${location}/consent`, { csrf: field(page, 'csrf'), decision: 'allow' });
  location = response.headers.get('location');
}
if (!location.startsWith(cfg.redirect_uri)) throw new Error(`unexpected redirect ${location}`);
result.callback_has_code = new URL(location).searchParams.has('code');

const tokens = await client.authorizationCodeGrant(config, new URL(location), {
  pkceCodeVerifier: codeVerifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
result.id_token_claims = claims;

const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
result.userinfo = userinfo;

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
result.refreshed = { rotated: refreshed.refresh_token !== tokens.refresh_token,
                     has_access_token: Boolean(refreshed.access_token),
                     id_token_sub: refreshed.claims()?.sub };

const introspected = await client.tokenIntrospection(config, refreshed.access_token);
result.introspection_active = introspected.active;

await client.tokenRevocation(config, refreshed.refresh_token);
const after = await client.tokenIntrospection(config, refreshed.refresh_token);
result.revoked_refresh_active = after.active;
let reuseError = null;
try {
  await client.refreshTokenGrant(config, tokens.refresh_token);
} catch (error) {
  reuseError = error.error || error.code || String(error);
}
result.reuse_error = reuseError;

const logoutUrl = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: cfg.post_logout_redirect_uri,
  state: 'logout-state',
});
response = await browse(logoutUrl.href);
result.logout_status = response.status;
result.logout_location = response.headers.get('location');

// After logout, prompt=none must answer login_required.
const silent = client.buildAuthorizationUrl(config, {
  redirect_uri: cfg.redirect_uri, scope: 'openid', prompt: 'none', state: 's2',
  code_challenge: codeChallenge, code_challenge_method: 'S256',
});
response = await browse(silent.href);
result.after_logout = new URL(response.headers.get('location')).searchParams.get('error');

console.log(JSON.stringify(result));
