// Approving held requests in a real browser: Chromium driven by
// playwright-core, as a user would. Run by crates/rampart/tests/approval_browser.rs,
// which starts the bunker, makes the requests and checks what the client receives.
//
// Usage: node approve-in-browser.mjs '<json>' with
//   { chromium, loginUrl, screenshot,
//     steps: [{ url, answer, via: "link" | "address-bar", remember? }] }
// Prints one JSON report on stdout.

import { launch } from "./browser.mjs";

const config = JSON.parse(process.argv[2]);
const report = { steps: [] };
const { context, close } = await launch(config.chromium);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);

  // Whoever holds the auth_url (the app) but has no session sees a login
  // page, with nothing to click that could approve.
  await page.goto(config.steps[0].url);
  report.loggedOut = {
    heading: (await page.textContent("h1"))?.trim(),
    approveButtons: await page.locator("button[name=answer]").count(),
    showsRequest: (await page.content()).includes("Hello from the browser test"),
  };

  // The user logs in with the link printed at start.
  await page.goto(config.loginUrl);
  report.afterLogin = new URL(page.url()).pathname;

  for (const step of config.steps) {
    if (step.via === "link") {
      // As when an app opens the auth_url from its own site: a cross-site
      // navigation (from an opaque origin here), which leaves out the
      // SameSite=Strict cookie at first.
      await page.goto("about:blank");
      await page.setContent(`<a id="open" href="${step.url}">open approval</a>`);
      await page.click("#open");
    } else {
      await page.goto(step.url);
    }
    const button = page.locator(`button[name=answer][value=${step.answer}]`);
    await button.waitFor();
    const card = page.locator("article.request");
    const seen = {
      path: new URL(page.url()).pathname,
      reloaded: new URL(page.url()).searchParams.has("retry"),
      app: (await card.locator(".app").textContent())?.trim(),
      ask: (await card.locator(".ask").textContent())?.trim(),
    };
    if (config.screenshot && step === config.steps[0]) {
      await page.screenshot({ path: config.screenshot, fullPage: true });
    }
    if (step.remember) {
      await card.locator("select[name=for]").selectOption(step.remember);
    }
    await button.click();
    await page.locator(".result h1").waitFor().catch(async (e) => {
      const text = (await page.textContent("main").catch(() => ""))?.trim().slice(0, 500);
      throw new Error(`no result after "${step.answer}" at ${page.url()}: ${text}\n${e.message}`);
    });
    seen.result = (await page.textContent(".result h1"))?.trim();
    report.steps.push(seen);
  }
} finally {
  await close();
}

console.log(JSON.stringify(report));
