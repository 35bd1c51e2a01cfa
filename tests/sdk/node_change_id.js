// Drives the real countly-sdk-nodejs through a device id change with merge: an anonymous
// device starts a session, sends user details and custom properties, then becomes a
// known user (change_id with merge) who starts a session and sends an event. Exits once
// the SDK's persisted queues are empty.
// Usage: node node_change_id.js <url> <app_key> <old_device_id> <new_device_id> <storage_dir>
const Countly = require("countly-sdk-nodejs");

const [url, appKey, oldId, newId, storage] = process.argv.slice(2);
Countly.init({
    app_key: appKey,
    url,
    device_id: oldId,
    storage_path: storage,
    interval: 100,
    fail_timeout: 1,
    metrics: { _os: "Linux", _os_version: "6.1", _device: "node" },
});
Countly.begin_session(true);
Countly.user_details({
    name: "Ada Lovelace",
    email: "ada@example.com",
    byear: 1815,
    custom: { plan: "free" },
});
Countly.userData.increment("logins");
Countly.userData.push("tags", "early");
Countly.userData.save();

setTimeout(() => {
    Countly.end_session(5);
    Countly.change_id(newId, true);
    Countly.begin_session(true);
    Countly.userData.set("plan", "pro");
    Countly.userData.increment("logins");
    Countly.userData.save();
    Countly.add_event({ key: "signed_in", count: 1 });
    setTimeout(() => Countly.end_session(7), 400);
}, 600);

require("./drain.js")(1800);
