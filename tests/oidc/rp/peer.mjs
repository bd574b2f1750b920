// node-oidc-provider configured like govtrust for bench/oidc.py: one confidential client
// (client_secret_basic; authorization_code, refresh_token, client_credentials), ES256 ID tokens,
// refresh-token rotation, introspection and revocation on, its default in-memory adapter.
// Prints one JSON line {"ready": true, "port": N, "refresh_tokens": [...]} once listening.
// Usage: node peer.mjs '<json: port, client_id, client_secret, refresh_tokens>'
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${cfg.port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const jwks = {
  keys: [
    { ...privateKey.export({ format: 'jwk' }), kid: 'es256', alg: 'ES256', use: 'sig' },
    { ...rsa.export({ format: 'jwk' }), kid: 'rs256', alg: 'RS256', use: 'sig' },
  ],
};
const provider = new Provider(issuer, {
  clients: [{
    client_id: cfg.client_id,
    client_secret: cfg.client_secret,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: ['https://rp.example.gov.cn/cb'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks,
  scopes: ['openid', 'offline_access', 'profile'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  rotateRefreshToken: true,
  ttl: { AccessToken: 900, ClientCredentials: 900, IdToken: 3600, RefreshToken: 14 * 86400,
         Grant: 14 * 86400 },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.proxy = false;

const client = await provider.Client.find(cfg.client_id);
const tokens = [];
for (let i = 0; i < (cfg.refresh_tokens || 0); i += 1) {
  const grant = new provider.Grant({ accountId: `acct${i}`, clientId: cfg.client_id });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    client, accountId: `acct${i}`, grantId, scope: 'openid offline_access',
    gty: 'authorization_code', authTime: Math.floor(Date.now() / 1000), sessionUid: `s${i}`,
  });
  tokens.push(await rt.save());
}
const server = provider.listen(cfg.port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, port: cfg.port, refresh_tokens: tokens }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
