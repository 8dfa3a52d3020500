// Loads GraphiQL at the URL given (a subscription with ?autorun=1) in headless Chromium and
// waits, in real time, for the subscription's first answer in the result pane: GraphiQL's
// fetcher runs subscriptions over the page's WebSocket URL.
//
//   node graphiql-subscription.mjs CHROMIUM URL TEXT
//
// Exits 0 when the result pane shows TEXT within 20 s.
import puppeteer from 'puppeteer-core';

const [chromium, url, text] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic'],
});
let status = 1;
try {
  const page = await browser.newPage();
  const sockets = [];
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketCreated', (e) => sockets.push(e.url));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(
    (t) => document.querySelector('.graphiql-response')?.textContent.includes(t),
    { timeout: 20000 },
    text,
  );
  const shown = await page.$eval('.graphiql-response', (el) => el.textContent);
  console.log(`result pane: ${shown.replace(/\s+/g, ' ').slice(0, 200)}`);
  if (!sockets.some((u) => u.endsWith('/graphql'))) {
    console.log('FAIL: the page opened no WebSocket to /graphql');
  } else {
    console.log(`ok: the page's WebSocket: ${sockets.join(', ')}`);
    status = 0;
  }
} catch (e) {
  console.log(`FAIL: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(status);
