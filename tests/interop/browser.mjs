// Headless Chromium for the dashboard tests, driven by playwright-core: a
// fresh profile, and the flags that keep it from calling home (this machine
// refuses outside connections) and let it run as root in a container.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

// Launch `executablePath`; returns the context and a `close` that also
// removes the profile.
export async function launch(executablePath) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "rampart-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1000, height: 700 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
