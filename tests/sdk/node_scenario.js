// Drives the real countly-sdk-nodejs against a running Tally, then exits once the SDK's
// own persisted queues are empty (every request delivered and acknowledged).
// Usage: node node_scenario.js <url> <app_key> <device_id> <storage_dir>
const Countly = require("countly-sdk-nodejs");
const CountlyStorage = require("countly-sdk-nodejs/lib/countly-storage.js");

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

const deadline = Date.now() + 20000;
let emptyChecks = 0;
const timer = setInterval(() => {
    const queue = CountlyStorage.storeGet("cly_queue", []);
    const events = CountlyStorage.storeGet("cly_event", []);
    emptyChecks = queue.length === 0 && events.length === 0 ? emptyChecks + 1 : 0;
    if (Date.now() > 1500 + start && emptyChecks >= 3) {
        clearInterval(timer);
        process.exit(0);
    }
    if (Date.now() > deadline) {
        console.error(`requests still queued after 20 s: ${JSON.stringify(queue)}`);
        process.exit(1);
    }
}, 100);
const start = Date.now();
