// Real clients against a running eagerql server (with its demo data): Apollo Client signs in
// with `login` as the demo administrator, sends the access token as a Bearer header, and uses
// its persisted-query link over POST and over GET, and pages a connection with its
// relayStylePagination cache policy; live queries (subscriptions) run through graphql-ws (and
// Apollo's GraphQLWsLink and urql's subscriptionExchange over it) and through graphql-sse, each receiving its first answer and
// then the change a mutation makes.
// Usage: node check.mjs [URL]   (default http://127.0.0.1:8000/graphql)
// Exits 0 when every check passes.
import { ApolloClient, InMemoryCache, HttpLink, gql } from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';
import { relayStylePagination } from '@apollo/client/utilities/index.js';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions/index.js';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';
import { Client as UrqlClient, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';

const url = process.argv[2] ?? 'http://127.0.0.1:8000/graphql';
let failures = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

// Signs in as the demo administrator (see the README).
async function signIn() {
  const { apollo } = client(false, null);
  const result = await apollo.mutate({
    mutation: gql`mutation SignIn($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { role } } }`,
    variables: { e: 'user1@example.com', p: 'eagerql-demo' },
  });
  assert.equal(result.data.login.user.role, 'ADMIN');
  return result.data.login.accessToken;
}

function client(useGET, token, cache = new InMemoryCache()) {
  const seen = [];
  const recording = async (uri, options) => {
    const response = await fetch(uri, options);
    seen.push({ method: options.method ?? 'GET', uri: String(uri), body: options.body ?? null, status: response.status });
    return response;
  };
  const link = createPersistedQueryLink({
    sha256: (q) => createHash('sha256').update(q).digest('hex'),
    useGETForHashedQueries: useGET,
  }).concat(new HttpLink({
    uri: url,
    fetch: recording,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  }));
  return { apollo: new ApolloClient({ link, cache }), seen };
}

// A document unique to this run, so that the server has not stored it yet.
const tag = `run${Date.now()}`;
const QUERY = gql`
  query Users_${tag} {
    users(first: 3) { id username orders(first: 1) { id status } }
  }
`;

let token = null;
await check('Apollo Client signs in with login', async () => {
  token = await signIn();
  assert.ok(token.split('.').length === 3, 'a JWT');
});

await check('anonymous clients may not list users (UNAUTHENTICATED)', async () => {
  const { apollo } = client(false, null);
  try {
    await apollo.query({ query: gql`query Anon_${tag} { users(first: 1) { id } }`, fetchPolicy: 'network-only' });
    assert.fail('expected an error');
  } catch (e) {
    assert.equal((e.graphQLErrors ?? [])[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(e));
  }
});

for (const useGET of [false, true]) {
  const mode = useGET ? 'GET' : 'POST';
  await check(`Apollo Client persisted queries over ${mode}`, async () => {
    const { apollo, seen } = client(useGET, token);
    const doc = useGET ? gql`query UsersGet_${tag} { users(first: 3) { id username } }` : QUERY;
    const first = await apollo.query({ query: doc, fetchPolicy: 'network-only' });
    assert.equal(first.data.users.length, 3);
    // Hash only, refused with PERSISTED_QUERY_NOT_FOUND; then the document with its hash.
    assert.equal(seen.length, 2, JSON.stringify(seen));
    assert.equal(seen[0].method, mode);
    const firstSent = seen[0].body ?? decodeURIComponent(seen[0].uri);
    assert.ok(!firstSent.includes('"query"') && !firstSent.includes('query='), firstSent);
    assert.ok((seen[1].body ?? '').includes('"query"'), 'the fallback sends the document');
    const again = await apollo.query({ query: doc, fetchPolicy: 'network-only' });
    assert.deepEqual(again.data, first.data);
    assert.equal(seen.length, 3, 'the second time, the hash alone is enough');
    assert.equal(seen[2].method, mode);
    assert.equal(seen[2].status, 200);
  });
}

await check('Apollo Client reads errors with extensions.code', async () => {
  const { apollo } = client(false, token);
  try {
    await apollo.query({ query: gql`query Bad_${tag} { users(first: -1) { id } }`, fetchPolicy: 'network-only' });
    assert.fail('expected an error');
  } catch (e) {
    const errors = e.graphQLErrors ?? [];
    assert.equal(errors[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(e));
  }
});

await check("Apollo Client's relayStylePagination pages a connection three times", async () => {
  const cache = new InMemoryCache({
    typePolicies: { Query: { fields: { productsConnection: relayStylePagination(['orderBy']) } } },
  });
  const { apollo, seen } = client(false, token, cache);
  const PAGE = gql`
    query Products_${tag}($first: Int!, $after: String) {
      productsConnection(first: $first, after: $after, orderBy: [PRICE_DESC]) {
        totalCount
        edges { cursor node { id name price } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
  `;
  const watch = apollo.watchQuery({ query: PAGE, variables: { first: 2 } });
  let subscription;
  const first = await new Promise((resolve, reject) => {
    subscription = watch.subscribe({ next: (r) => { if (!r.loading) resolve(r); }, error: reject });
  });
  assert.equal(first.data.productsConnection.edges.length, 2);
  let pageInfo = first.data.productsConnection.pageInfo;
  for (const expected of [4, 6]) {
    assert.equal(pageInfo.hasNextPage, true, 'more pages follow');
    const more = await watch.fetchMore({ variables: { after: pageInfo.endCursor } });
    pageInfo = more.data.productsConnection.pageInfo;
    const merged = watch.getCurrentResult().data.productsConnection;
    assert.equal(merged.edges.length, expected, 'the cache merges each page after the last');
  }
  const merged = watch.getCurrentResult().data.productsConnection;
  // The same six rows, in the same order, as one page of six from a fresh client.
  const { apollo: fresh } = client(false, token);
  const whole = await fresh.query({ query: PAGE, variables: { first: 6 }, fetchPolicy: 'network-only' });
  assert.deepEqual(
    merged.edges.map((e) => e.node.id),
    whole.data.productsConnection.edges.map((e) => e.node.id),
  );
  assert.equal(new Set(merged.edges.map((e) => e.node.id)).size, 6, 'no row twice');
  assert.equal(merged.totalCount, whole.data.productsConnection.totalCount);
  const prices = merged.edges.map((e) => Number(e.node.price));
  assert.deepEqual(prices, [...prices].sort((a, b) => b - a), 'by price, descending');
  assert.ok(seen.length >= 3, 'three requests');
  subscription.unsubscribe();
});

// ---- Live queries ------------------------------------------------------------------------

const LIVE = 'subscription Stock($id: ID!) { product(id: $id) { id stockQuantity } }';

// Orders one unit of product 1 as the administrator (for customer 2): its stock drops by one.
async function orderOne(token) {
  const { apollo } = client(false, token);
  await apollo.mutate({
    mutation: gql`mutation Order($input: CreateOrderInput!) { createOrder(input: $input) { id } }`,
    variables: { input: { userId: '2', items: [{ productId: '1', quantity: 1 }] } },
  });
}

// Reads results from an async iterator, failing after 20 s.
function within(promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within 20 s`)), 20000)),
  ]);
}

// The first answer of a live query, then the one after a mutation changes it.
async function followStock(token, iterator, name) {
  const first = await within(iterator.next(), `${name} first answer`);
  assert.equal(first.value.errors, undefined, JSON.stringify(first.value));
  const stock = first.value.data.product.stockQuantity;
  await orderOne(token);
  const next = await within(iterator.next(), `${name} answer after the order`);
  assert.equal(next.value.data.product.stockQuantity, stock - 1, JSON.stringify(next.value));
  await iterator.return?.();
}

await check('graphql-ws: a live query sends its answer, then the change a mutation makes', async () => {
  const token = await signIn();
  const ws = createWsClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
  });
  try {
    await followStock(token, ws.iterate({ query: LIVE, variables: { id: '1' } }), 'graphql-ws');
  } finally {
    await ws.dispose();
  }
});

await check("Apollo Client's GraphQLWsLink follows a live query", async () => {
  const token = await signIn();
  const ws = createWsClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
  });
  const apollo = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
  const results = [];
  const waiting = [];
  const sub = apollo.subscribe({ query: gql(LIVE), variables: { id: '1' } }).subscribe({
    next: (r) => { results.push(r); waiting.splice(0).forEach((f) => f()); },
    error: (e) => { results.push({ errors: [e] }); waiting.splice(0).forEach((f) => f()); },
  });
  const nth = async (n) => {
    while (results.length < n) await within(new Promise((r) => waiting.push(r)), 'an Apollo result');
    return results[n - 1];
  };
  try {
    const stock = (await nth(1)).data.product.stockQuantity;
    await orderOne(token);
    assert.equal((await nth(2)).data.product.stockQuantity, stock - 1);
  } finally {
    sub.unsubscribe();
    await ws.dispose();
  }
});

await check("urql's subscriptionExchange follows a live query (the README's set-up)", async () => {
  const token = await signIn();
  const ws = createWsClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
  });
  const urql = new UrqlClient({
    url,
    exchanges: [cacheExchange, fetchExchange, subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query || '' }, sink) }),
      }),
    })],
  });
  const results = [];
  const waiting = [];
  const { unsubscribe } = urql.subscription(LIVE, { id: '1' }).subscribe((r) => {
    results.push(r);
    waiting.splice(0).forEach((f) => f());
  });
  const nth = async (n) => {
    while (results.length < n) await within(new Promise((r) => waiting.push(r)), 'an urql result');
    return results[n - 1];
  };
  try {
    const first = await nth(1);
    assert.equal(first.error, undefined, String(first.error));
    const stock = first.data.product.stockQuantity;
    await orderOne(token);
    assert.equal((await nth(2)).data.product.stockQuantity, stock - 1);
  } finally {
    unsubscribe();
    await ws.dispose();
  }
});

await check('graphql-sse: a live query streams its answer, then the change', async () => {
  const token = await signIn();
  const sse = createSseClient({ url, headers: { Authorization: `Bearer ${token}` } });
  try {
    await followStock(token, sse.iterate({ query: LIVE, variables: { id: '1' } }), 'graphql-sse');
  } finally {
    sse.dispose();
  }
});

console.log(failures === 0 ? 'PASS: real clients' : `FAIL: ${failures} check(s)`);
process.exit(failures === 0 ? 0 : 1);
