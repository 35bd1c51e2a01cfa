// Drives the dashboard in headless Chromium (Debian's, via playwright-core) and prints what
// it shows as JSON, for tests/dashboard.rs to compare with /o. Saves screenshots to OUT.
// Usage: node dashboard.js <base_url> <app_key> <api_key> <empty_app_key> <empty_api_key> <out_dir>
const { chromium } = require("playwright-core");
const path = require("path");

const [base, appKey, apiKey, emptyKey, emptyRead, out] = process.argv.slice(2);

async function ready(page) {
  await page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: 20000 });
}

async function readings(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent.replace(/,/g, "");
    const rows = (list) =>
      Array.from(document.querySelectorAll(`[data-breakdown="${list}"] tbody tr`)).map((tr) => [tr.dataset.value, Number(tr.dataset.count)]);
    const visible = (id) => getComputedStyle(document.getElementById(id)).display !== "none";
    return {
      state: document.body.dataset.state,
      visible: ["keys", "error", "empty", "content"].filter(visible),
      sessions: Number(text("total-sessions")),
      newUsers: Number(text("total-new")),
      unique: Number(text("total-unique")),
      avg: document.getElementById("avg-duration").textContent,
      change: document.getElementById("change-sessions").textContent,
      event: document.getElementById("event-select").value,
      eventCount: Number(text("event-count")),
      eventSum: Number(text("event-sum")),
      charts: document.querySelectorAll(".uplot canvas").length,
      liveSessions: Number(text("live-sessions")),
      liveEvents: Number(text("live-events")),
      os: rows("os"),
      countries: rows("countries"),
      segments: Array.from(document.querySelectorAll("#segment-table tbody tr")).map((tr) => [tr.dataset.value, Number(tr.dataset.count)]),
    };
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const result = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const url = (extra) => `${base}/dashboard#app_key=${appKey}&api_key=${apiKey}${extra}`;

    await page.goto(url("&period=today"));
    await ready(page);
    await page.waitForSelector("#sessions-chart .uplot canvas");
    result.today = await readings(page);
    await page.screenshot({ path: path.join(out, "dashboard-today.png"), fullPage: true });

    await page.click('#periods button[data-period="7days"]');
    await ready(page);
    result.week = await readings(page);
    await page.screenshot({ path: path.join(out, "dashboard-7days.png"), fullPage: true });

    await page.selectOption("#event-select", "level");
    await ready(page);
    result.weekLevel = await readings(page);
    await page.selectOption("#event-select", "purchase");
    await ready(page);
    await page.selectOption("#segment-select", "plan");
    await ready(page);
    result.weekPlan = await readings(page);

    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: path.join(out, "dashboard-dark.png"), fullPage: true });
    await page.emulateMedia({ colorScheme: "light" });

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    await phone.goto(url("&period=7days"));
    await ready(phone);
    result.phoneScroll = await phone.evaluate(() => document.documentElement.scrollWidth);
    await phone.screenshot({ path: path.join(out, "dashboard-phone.png"), fullPage: true });

    const jsonp = await browser.newPage();
    await jsonp.goto(url("&period=7days&transport=jsonp"));
    await ready(jsonp);
    result.jsonp = await readings(jsonp);

    const wrong = await browser.newPage();
    await wrong.goto(`${base}/dashboard#app_key=${appKey}&api_key=wrong`);
    await ready(wrong);
    result.wrongKey = await wrong.evaluate(() => ({ state: document.body.dataset.state, message: document.getElementById("error").textContent }));

    const empty = await browser.newPage();
    await empty.goto(`${base}/dashboard#app_key=${emptyKey}&api_key=${emptyRead}`);
    await ready(empty);
    result.empty = await empty.evaluate(() => ({ state: document.body.dataset.state, curl: document.getElementById("curl").textContent }));
    await empty.screenshot({ path: path.join(out, "dashboard-empty.png") });
    result.pageErrors = errors;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
