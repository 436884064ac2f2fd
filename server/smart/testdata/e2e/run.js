// Drives Debian's Chromium through a SMART standalone launch with
// fhirclient: node run.js LAUNCH_URL USER PASSWORD PATIENT. Prints the app's
// result (JSON) on stdout; exits non-zero on any failure.
const { chromium } = require("playwright-core");

async function main() {
  const [launchURL, user, password, patient] = process.argv.slice(2);
  const userDataDir = require("fs").mkdtempSync(require("path").join(require("os").tmpdir(), "cpis-e2e-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const logs = [];
    page.on("console", m => logs.push("console: " + m.text()));
    page.on("pageerror", e => logs.push("page error: " + e));
    page.on("framenavigated", f => logs.push("navigated: " + f.url()));
    page.on("requestfailed", r => logs.push("request failed: " + r.url().split("?")[0] + " " + (r.failure() && r.failure().errorText)));
    process.on("exit", code => { if (code !== 0) console.error("at " + page.url().split("?")[0] + "\n" + logs.join("\n")); });
    await page.goto(launchURL);
    // The server's login page.
    await page.waitForSelector("#username");
    await page.fill("#username", user);
    await page.fill("#password", password);
    await page.click("#login");
    // The consent page, with the standalone patient pick.
    await page.waitForSelector("#approve");
    await page.fill("#patient", patient);
    await page.click("#approve");
    // Back in the app.
    await page.waitForFunction(() => document.title === "done" || document.title === "error");
    const out = await page.textContent("#out");
    if (!out.startsWith("{")) throw new Error("app: " + out);
    process.stdout.write(out + "\n");
  } finally {
    await context.close();
    require("fs").rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch(e => { console.error(String(e && e.stack || e)); process.exit(1); });
