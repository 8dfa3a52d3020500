#!/usr/bin/env node
// GraphQL-over-HTTP conformance audit (the public `graphql-http` server audit suite).
//
// Usage: node audit.mjs [url]        (default: http://127.0.0.1:8000/graphql)
//
// Runs every audit from graphql-http's `serverAudits` against the URL, one at a
// time, and prints one line per audit:
//   <status> <id> <name>[ -- <reason> (HTTP <code>)]
// where status is ok / warn (a failed SHOULD) / error (a failed MUST) /
// notice (a failed MAY: optional, reported but never fails the run).
// An audit that cannot run at all (e.g. connection refused) counts as error.
// The last line is: graphql-http audit: N ok, N warn, N error
// Exit code: 1 if any error or warn, 0 otherwise.

import { serverAudits } from 'graphql-http';

const DEFAULT_URL = 'http://127.0.0.1:8000/graphql';
const url = process.argv[2] || DEFAULT_URL;

if (typeof fetch !== 'function') {
  console.error('audit.mjs: global fetch is missing; use Node 18 or newer');
  process.exit(2);
}

const audits = serverAudits({ url, fetchFn: fetch });
const counts = { ok: 0, warn: 0, error: 0, notice: 0 };

console.log(`graphql-http audit of ${url} (${audits.length} audits)`);

for (const { id, name, fn } of audits) {
  let result;
  try {
    result = await fn();
  } catch (err) {
    // graphql-http only throws for fatal problems (network failure, bad URL...).
    const cause = err && err.cause ? `: ${err.cause.message || err.cause}` : '';
    result = {
      id,
      name,
      status: 'error',
      reason: `audit could not run: ${err && err.message ? err.message : err}${cause}`,
    };
  }
  const status = result.status in counts ? result.status : 'error';
  counts[status] += 1;
  let line = `${status.padEnd(6)} ${id} ${name}`;
  if (status !== 'ok') {
    line += ` -- ${result.reason}`;
    if (result.response && typeof result.response.status === 'number') {
      line += ` (HTTP ${result.response.status})`;
    }
  }
  console.log(line);
}

if (counts.notice > 0) {
  console.log(`(${counts.notice} optional MAY audits not met: notices, not failures)`);
}
console.log(
  `graphql-http audit: ${counts.ok} ok, ${counts.warn} warn, ${counts.error} error`,
);
process.exit(counts.warn > 0 || counts.error > 0 ? 1 : 0);
