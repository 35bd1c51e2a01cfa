// Drives the real countly-sdk-nodejs against a running Tally, then exits once the SDK's
// own persisted queues are empty (every request delivered and acknowledged).
// Usage: node node_scenario.js <url> <app_key> <device_id> <storage_dir>
const Countly = require("countly-sdk-nodejs");

const [url, appKey, deviceId, storage] = process.argv.slice(2);
Countly.init({
    app_key: appKey,
    url,
    device_id: deviceId,
    storage_path: storage,
    interval: 100,
    fail_timeout: 1,
    app_version: "2.1",
    metrics: { _os: "Linux", _os_version: "6.1", _device: "node" },
});
Countly.begin_session(true);
Countly.add_event({ key: "purchase", count: 2, sum: 9.98, segmentation: { plan: "pro" } });
Countly.add_event({ key: "level", count: 1, dur: 4 });

setTimeout(() => Countly.end_session(30), 800);

require("./drain.js")(1500);
