// An approver's scoped dashboard in a real browser: Chromium driven by
// playwright-core logs in with an operator's one-time link, reads what the
// dashboard shows it, tries what it may not do (through the page's own
// fetch, with its session's cookie and CSRF token, as a script in the page
// would), and answers the request it may answer. Run by
// crates/rampart/tests/approval_browser.rs, which checks the report.
//
// Usage: node approver-in-browser.mjs '<json>' with
//   { chromium, loginUrl, mine, other, screenshot }
// (`mine`: the id of a request for the approver's key, `other`: one for a
// key it does not cover). Prints one JSON report on stdout.

import { launch } from "./browser.mjs";

const config = JSON.parse(process.argv[2]);
const report = {};
const { context, close } = await launch(config.chromium);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);

  await page.goto(config.loginUrl);
  report.afterLogin = new URL(page.url()).pathname;
  report.viewer = (await page.textContent("#viewer"))?.trim();
  report.nav = await page.locator("header nav a").allTextContents();
  report.cards = await page
    .locator("article.request")
    .evaluateAll((cards) => cards.map((c) => c.id.replace(/^request-/, "")));
  report.pageMentionsOther = (await page.content()).includes(config.other);
  if (config.screenshot) {
    await page.screenshot({ path: config.screenshot, fullPage: true });
  }

  // What a script in the page (same origin, the session's cookie) gets.
  report.api = await page.evaluate(async ({ mine, other }) => {
    const csrf = (await (await fetch("/api/csrf")).json()).csrf_token;
    const post = (url, body) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify(body),
      });
    const pending = await (await fetch("/api/pending")).json();
    const decideOther = await post(`/api/approvals/${other}`, { answer: "allow_once" });
    const lock = await post("/api/keys/lock", { key: null, locked: true });
    return {
      pending: pending.map((p) => ({ id: p.id, key: p.key })),
      decideOther: decideOther.status,
      approveOtherPage: (await fetch(`/approve/${other}`)).status,
      approveMinePage: (await fetch(`/approve/${mine}`)).status,
      keysPage: (await fetch("/keys")).status,
      auditPage: (await fetch("/audit")).status,
      auditApi: (await fetch("/api/audit")).status,
      lock: lock.status,
    };
  }, { mine: config.mine, other: config.other });

  // The request it may answer: "Allow once" from the list.
  await page.goto(new URL("/", page.url()).href);
  await page.locator(`#request-${config.mine} button[name=answer][value=allow_once]`).click();
  await page.waitForURL((url) => url.pathname === "/");
  report.cardsAfter = await page
    .locator("article.request")
    .evaluateAll((cards) => cards.map((c) => c.id.replace(/^request-/, "")));
} finally {
  await close();
}

console.log(JSON.stringify(report));
