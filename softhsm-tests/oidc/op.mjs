// The OpenID provider of Sigil's integration tests: panva's oidc-provider (npm), configured from
// the environment. ESM; runs unchanged with oidc-provider 9.13.3 (Node >= 20.18) and 8.8.1
// (Node 18 and 20); softhsm-tests/run.sh installs the one the machine's Node can run.
// Usage: node op.mjs   (configured by env vars; prints "READY <issuer>" on stdout when listening)
//   OP_PORT        port on 127.0.0.1 (default 9400); issuer = http://127.0.0.1:OP_PORT
//   OP_ISSUER      the issuer (and the origin of every URL it writes), when another address
//                  fronts it (the tests' tampering proxy)
//   OP_USERS       path of users JSON {"alice": {"password":..,"email":..,"groups":[..]}, ..}
//   OP_KEYS        path of a private JWKS {"keys":[...]}; created (one RS256 key) if missing.
//                  First key of a given alg signs; the others are only published (rotation).
//   OP_CLIENT_ID / OP_CLIENT_SECRET / OP_REDIRECT_URI (comma-separated list allowed)
//   OP_AUTH_METHOD client_secret_basic (default) | client_secret_post
//   OP_INTERACTIONS dev (built-in devInteractions: any login, password ignored) |
//                   strict (same HTML form field names, but password checked against OP_USERS)
//   OP_AUTO_CONSENT=1  skip the consent prompt (grant created automatically)
//   OP_PKJWT_JWKS  path of a PUBLIC jwks: adds client 'sigil-pkjwt' using private_key_jwt (RS256)
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT || 9400);
const issuer = process.env.OP_ISSUER || `http://127.0.0.1:${port}`;
const users = JSON.parse(readFileSync(process.env.OP_USERS || './users.json', 'utf8'));
const keysPath = process.env.OP_KEYS || './keys.json';
const mode = process.env.OP_INTERACTIONS || 'dev';

if (!existsSync(keysPath)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `k-${randomUUID()}`, use: 'sig', alg: 'RS256' };
  writeFileSync(keysPath, JSON.stringify({ keys: [jwk] }, null, 2));
}
const jwks = JSON.parse(readFileSync(keysPath, 'utf8'));

const configuration = {
  clients: [{
    client_id: process.env.OP_CLIENT_ID || 'sigil',
    client_secret: process.env.OP_CLIENT_SECRET || 'sigil-secret',
    redirect_uris: (process.env.OP_REDIRECT_URI || 'http://127.0.0.1:8080/auth/oidc/callback').split(','),
    post_logout_redirect_uris: [],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: process.env.OP_AUTH_METHOD || 'client_secret_basic',
  }],
  jwks,
  async findAccount(ctx, id) {
    const u = users[id];
    if (!u) return undefined;                      // unknown sub -> login fails / token invalid
    return {
      accountId: id,
      async claims(use, scope) {
        const { password, ...claims } = u;
        return { sub: id, ...claims };              // masked per granted scope by oidc-provider
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,   // put scope-requested claims (email, groups...) in the ID token too
  pkce: { required: () => true },// reject authorization requests without code_challenge (S256 only)
  features: {
    devInteractions: { enabled: mode === 'dev' },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ['test-cookie-signing-key-not-secret'] },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 3600 },
  renderError(ctx, out, error) {   // plain-text errors: easy to assert on in tests
    ctx.type = 'text'; ctx.body = `OP error: ${out.error}: ${out.error_description || ''}\n`;
  },
};
if (mode === 'strict') configuration.interactions = { url: (ctx, i) => `/interaction/${i.uid}` };
if (process.env.OP_AUTO_CONSENT === '1') {
  // first-party style: auto-create a grant for whatever was requested => no consent prompt
  configuration.loadExistingGrant = async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
    await grant.save();
    return grant;
  };
}

if (process.env.OP_PKJWT_JWKS) {
  // optional second client authenticating with private_key_jwt; OP_PKJWT_JWKS = path of its PUBLIC jwks
  configuration.clients.push({
    client_id: 'sigil-pkjwt',
    redirect_uris: configuration.clients[0].redirect_uris,
    grant_types: ['authorization_code'], response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: JSON.parse(readFileSync(process.env.OP_PKJWT_JWKS, 'utf8')),
  });
}
const provider = new Provider(issuer, configuration);

if (mode === 'strict') {
  // Minimal interactions with the SAME form shape as devInteractions (prompt/login/password),
  // but password-checked. Wrong password -> 200 page containing "invalid login".
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const page = (title, body) => `<!DOCTYPE html><html><head><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1>${body}</body></html>`;
  const readForm = async (req) => { let b = ''; for await (const c of req) b += c; return Object.fromEntries(new URLSearchParams(b)); };
  provider.use(async (ctx, next) => {
    const m = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (!m) return next();
    ctx.set('cache-control', 'no-store');
    const { uid, prompt, params, session } = await provider.interactionDetails(ctx.req, ctx.res);
    const action = `${issuer}/interaction/${uid}`;
    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = prompt.name === 'login'
        ? page('Sign-in', `<form method="post" action="${action}"><input type="hidden" name="prompt" value="login"/><input name="login" value="${esc(params.login_hint || '')}"/><input type="password" name="password"/><button type="submit">Sign-in</button></form>`)
        : page('Authorize', `<form method="post" action="${action}"><input type="hidden" name="prompt" value="consent"/><button type="submit">Continue</button></form>`);
      return;
    }
    if (ctx.method !== 'POST') ctx.throw(405);
    const form = await readForm(ctx.req);
    if (form.prompt === 'login' && prompt.name === 'login') {
      const u = users[form.login];
      if (!u || u.password !== form.password) {
        ctx.type = 'html';
        ctx.body = page('Sign-in', `<p class="error">invalid login</p><form method="post" action="${action}"><input type="hidden" name="prompt" value="login"/><input name="login"/><input type="password" name="password"/><button type="submit">Sign-in</button></form>`);
        return;
      }
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: form.login } }, { mergeWithLastSubmission: false });
    }
    if (form.prompt === 'consent' && prompt.name === 'consent') {
      const { details } = prompt;
      const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
      if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
      return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    }
    ctx.throw(400, 'unexpected prompt');
  });
}

provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
process.on('SIGTERM', () => process.exit(0));
