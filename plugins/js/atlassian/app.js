/**
 * Disable a leaver's Atlassian account (the organization admin APIs), written in JavaScript.
 *
 *   - id: atlassian
 *     uses: atlassian
 *     with:
 *       email: "{{ inputs.email }}"          # or account_id: 5b10ac8d82e05b22cc7d4ef5
 *       org_id: "{{ vars.atlassian_org }}"   # needed to find the account by email
 *       message: Left the company            # optional: shown to the blocked user
 *       # api_url: https://api.atlassian.com (the default)
 *     retry: { attempts: 3 }
 *     allow: [https://api.atlassian.com]
 *     credentials:
 *       - host: https://api.atlassian.com
 *         secret: ATLASSIAN_API_KEY         # an organization admin API key
 *         header: Authorization
 *         format: "Bearer {secret}"
 *
 * By email, the account is found among the organization's managed accounts (GET
 * /admin/v1/orgs/{org_id}/users, page by page); no managed account is `unchanged` with output
 * {found: false}, but an unknown explicit account_id is an error. An inactive or closed account
 * is `unchanged`; an active one is disabled (POST /users/{id}/manage/lifecycle/disable).
 */
import { send } from 'offramp:plugin/http@0.1.1';
import { log } from 'offramp:plugin/log@0.1.1';

const fail = (kind, message, retryAfterMs) => ({ kind, message, retryAfterMs });
const done = (change, output) => ({ change, output: JSON.stringify(output) });

const REFUSALS = {
  forbidden: 'the API key may not manage this account',
  'forbidden.targetUnverified': "the account's email is not on one of the organization's verified domains",
};

function describeError(status, data) {
  if (data?.key) return `Atlassian refused (HTTP ${status}, ${data.key}): ${REFUSALS[data.key] ?? 'not allowed'}`;
  if (Array.isArray(data)) return `Atlassian error (HTTP ${status}): ${data.map((e) => `${e.code}: ${e.message}`).join('; ')}`;
  return `Atlassian answered HTTP ${status}${data?.message ? `: ${data.message}` : ''}`;
}

/** Retry-After (seconds), else X-RateLimit-Reset (an instant) against the response's Date; else 1 s. */
function waitMs(header) {
  const seconds = Number(header('retry-after'));
  if (Number.isFinite(seconds) && seconds > 0) return seconds * 1000;
  const wait = Date.parse(header('x-ratelimit-reset')) - Date.parse(header('date'));
  return Number.isFinite(wait) ? Math.max(wait, 1000) : 1000;
}

/** Sends a request; returns {status, data}, or null for a mutation a dry run recorded. */
function call(method, url, body) {
  const headers = [['accept', 'application/json']];
  if (body !== undefined) headers.push(['content-type', 'application/json']);
  let resp;
  try {
    resp = send({ method, url, headers, body: body && new TextEncoder().encode(JSON.stringify(body)) });
  } catch (e) {
    const err = e.payload ?? {};
    if (err.tag === 'dry-run') return null;
    const kind = err.tag === 'timeout' || err.tag === 'transport' ? 'transient' : 'permanent';
    throw fail(kind, `cannot reach Atlassian (${method} ${url}): ${err.tag}${err.val ? `: ${err.val}` : ''}`);
  }
  let data = null; // 204s and non-JSON errors have no body worth reading
  try { data = JSON.parse(new TextDecoder().decode(resp.body)); } catch {}
  const header = (name) => resp.headers.find(([k]) => k === name)?.[1];
  if (resp.status === 429) throw fail('transient', describeError(429, data), BigInt(Math.ceil(waitMs(header))));
  if (resp.status >= 500) throw fail('transient', describeError(resp.status, data));
  return { status: resp.status, data };
}

/** The account id of the managed account with this email, or null. */
function findByEmail(base, orgId, email) {
  let url = `${base}/admin/v1/orgs/${encodeURIComponent(orgId)}/users`;
  for (let page = 0; page < 500; page++) {
    const { status, data } = call('GET', url);
    if (status !== 200) throw fail('permanent', describeError(status, data));
    const hit = (data?.data ?? []).find((u) => u.email?.toLowerCase() === email.toLowerCase());
    if (hit) return hit.account_id;
    // Follow the opaque cursor, but on our own base URL (the one the step may reach).
    let cursor = null;
    try { // an absolute or relative link; anything else is taken as the cursor itself
      cursor = data?.links?.next ? new URL(data.links.next, base).searchParams.get('cursor') ?? data.links.next : null;
    } catch { cursor = String(data.links.next); }
    if (!cursor) return null;
    url = `${base}/admin/v1/orgs/${encodeURIComponent(orgId)}/users?cursor=${encodeURIComponent(cursor)}`;
  }
  throw fail('permanent', `no end to the organization's user list after 500 pages`);
}

// A bug (an exception that is not a task-error) is reported with its message and first stack
// lines, not as an opaque crash.
export function run(inv) {
  try { return disable(inv); } catch (e) {
    if (['transient', 'permanent', 'needs-human'].includes(e?.kind)) throw e;
    throw fail('permanent', `${e}${e?.stack ? ` at ${e.stack.split('\n').slice(0, 3).join(' ← ')}` : ''}`);
  }
}

function disable(inv) {
  let input;
  try { input = JSON.parse(inv.input); } catch { throw fail('permanent', 'invalid step input: not JSON'); }
  const base = String(input.api_url ?? 'https://api.atlassian.com').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw fail('permanent', `api_url must start with https://, got ${base}`);
  let accountId = input.account_id;
  if (!accountId) {
    if (!input.email || !input.org_id) throw fail('permanent', 'invalid step input: give account_id, or email and org_id');
    accountId = findByEmail(base, input.org_id, String(input.email));
    if (!accountId) {
      log('info', `${input.email} has no account managed by the organization: nothing to do`);
      return done('unchanged', { email: input.email, found: false });
    }
  }
  const path = `${base}/users/${encodeURIComponent(accountId)}/manage`;
  const profile = call('GET', `${path}/profile`);
  if (profile.status === 404) throw fail('permanent', `no Atlassian account ${accountId} (HTTP 404)`);
  if (profile.status !== 200) throw fail('permanent', describeError(profile.status, profile.data));
  const account = profile.data?.account ?? {};
  const summary = { account_id: accountId, email: account.email, found: true };
  if (account.account_status === 'inactive' || account.account_status === 'closed') {
    return done('unchanged', { ...summary, status: account.account_status });
  }
  const answer = call('POST', `${path}/lifecycle/disable`, input.message ? { message: String(input.message) } : undefined);
  if (answer === null) return done('changed', { ...summary, would: 'disable' });
  if (answer.status >= 300) throw fail('permanent', describeError(answer.status, answer.data));
  log('info', `disabled Atlassian account ${accountId}`);
  return done('changed', { ...summary, status: 'inactive', previous: account.account_status });
}

export function describe() {
  const input = (name, required, description) => ({ name, typeName: 'string', required, description });
  return {
    name: 'atlassian', version: '0.1.0', description: "Disables a leaver's Atlassian account (written in JavaScript)",
    inputs: [
      input('email', false, "the leaver's email; needs org_id"),
      input('org_id', false, 'your Atlassian organization id (to find the account by email)'),
      input('account_id', false, 'the Atlassian account id (instead of email)'),
      input('message', false, 'shown to the user on the deactivated account'),
      input('api_url', false, 'API base, default https://api.atlassian.com'),
    ],
  };
}

// What `with:` takes and what the step returns (JSON Schema): `offramp validate` checks
// pipelines against it before they run.
const str = (description) => ({ type: 'string', description });
export function contract() {
  const input = {
    type: 'object',
    additionalProperties: false,
    properties: {
      email: str("the leaver's email; needs org_id"),
      org_id: str('your Atlassian organization id (to find the account by email)'),
      account_id: str('the Atlassian account id (instead of email)'),
      message: str('shown to the user on the deactivated account'),
      api_url: str('API base, default https://api.atlassian.com'),
    },
    anyOf: [{ required: ['account_id'] }, { required: ['email', 'org_id'] }],
  };
  const output = {
    type: 'object',
    properties: {
      found: { type: 'boolean', description: 'false: no account managed by the organization has this email' },
      account_id: str('the Atlassian account id'),
      email: str('the account email'),
      status: str('active, inactive or closed'),
      previous: str('the status before this step disabled it'),
      would: str('dry run: what the step would have done'),
    },
    required: ['found'],
  };
  return [{ name: '', description: "Disables the leaver's Atlassian account", inputSchema: JSON.stringify(input), outputSchema: JSON.stringify(output) }];
}
