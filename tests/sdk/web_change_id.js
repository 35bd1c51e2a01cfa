// Drives the real countly-sdk-web in headless Chromium (Debian's, via playwright-core)
// through a device id change with merge: an anonymous visitor starts a session and sends
// user details, then becomes a known user (change_id with merge) who sends custom
// properties and an event. Waits until Tally shows the known user's profile, then prints
// what the page logged as JSON.
// Usage: node web_change_id.js <base_url> <app_key> <read_key> <old_id> <new_id>
const { chromium } = require("playwright-core");
const path = require("path");

const [base, appKey, readKey, oldId, newId] = process.argv.slice(2);
const sdk = path.join(__dirname, "node_modules/countly-sdk-web/lib/countly.js");

async function profile(user) {
  const r = await fetch(`${base}/user/get`, {
    method: "POST",
    headers: { "content-type": "application/json", read_key: readKey },
    body: JSON.stringify({ user }),
  });
  return { status: r.status, body: await r.json() };
}

const errors = [];
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // The SDK ignores visitors whose user agent says "HeadlessChrome" as bots.
    const page = await browser.newPage({
      userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    // What the SDK sent and what it was answered, for a failure's message.
    const sent = [];
    page.on("response", async (r) => {
      if (r.url().includes("/i")) sent.push(`${r.request().method()} ${r.url()} ${r.request().postData() || ""} -> ${r.status()} ${await r.text().catch(() => "")}`);
    });
    // A page of Tally's own origin: the SDK's requests are same-origin.
    await page.goto(`${base}/ping`);
    await page.addScriptTag({ path: sdk });
    await page.evaluate(
      ({ base, appKey, oldId, newId }) => {
        Countly.init({ app_key: appKey, url: base, device_id: oldId, interval: 100, fail_timeout: 1 });
        Countly.begin_session();
        Countly.user_details({ name: "Grace Hopper", email: "grace@example.com", byear: 1906, custom: { plan: "free" } });
        Countly.userData.increment("visits");
        Countly.userData.save();
        setTimeout(() => {
          Countly.change_id(newId, true);
          Countly.userData.set("plan", "pro");
          Countly.userData.push("badges", "pioneer");
          Countly.userData.save();
          Countly.add_event({ key: "signed_in", count: 1 });
        }, 700);
      },
      { base, appKey, oldId, newId },
    );
    const deadline = Date.now() + 20000;
    let last;
    for (;;) {
      last = await profile(newId);
      const p = last.body && last.body.properties;
      if (last.status === 200 && p && p.name && p.plan === "pro" && p.badges) break;
      if (Date.now() > deadline) throw new Error(`the known user's profile never arrived: ${JSON.stringify(last)}; sent: ${sent.join("\n")}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const old = await profile(oldId);
    console.log(JSON.stringify({ user: last.body, old_status: old.status, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e), JSON.stringify(errors));
  process.exit(1);
});
