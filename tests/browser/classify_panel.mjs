// Drives the demo page's "Try your own image" panel in headless Chromium (Debian's
// /usr/bin/chromium, through playwright-core): chooses IMAGE in the file picker, waits for
// the verdict (or an error), prints one JSON line with what the panel shows, and saves a
// screenshot of the panel to SCREENSHOT. Run by tests/demo_panel.rs.
//
//   node tests/browser/classify_panel.mjs PAGE_URL IMAGE SCREENSHOT

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, image, screenshot] = process.argv.slice(2);
if (!url || !image || !screenshot) {
  console.error("usage: node classify_panel.mjs PAGE_URL IMAGE SCREENSHOT");
  process.exit(2);
}

// A fresh profile each run; without the background-networking flags Chromium keeps
// trying Google's hosts, which this closed network refuses.
const profile = mkdtempSync(join(tmpdir(), "classify-panel-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  timeout: 60_000,
  viewport: { width: 1100, height: 900 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const console_errors = [];
  page.on("pageerror", e => console_errors.push(String(e)));
  await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  await page.locator("#file").setInputFiles(image);
  await page.waitForSelector("#verdict:not(:empty), #error:not(:empty)", { timeout: 60_000 });
  const shown = await page.evaluate(() => {
    const text = id => document.getElementById(id)?.textContent.trim() ?? "";
    const scores = {};
    for (const row of document.querySelectorAll("#scores tr")) {
      const cells = row.querySelectorAll("td");
      scores[cells[0].textContent] = cells[2].textContent;
    }
    return {
      verdict: text("verdict"),
      would: text("would"),
      reason: text("reason"),
      scores,
      facts: text("facts"),
      timings: text("timings"),
      error: text("error"),
      token: document.getElementById("token").value,
    };
  });
  shown.page_errors = console_errors;
  await page.locator("#try").screenshot({ path: screenshot });
  console.log(JSON.stringify(shown));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
