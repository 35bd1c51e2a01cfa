// Exits the process once the Node SDK's persisted queues are empty (every request
// delivered and acknowledged), at the earliest `minMs` after the start, and fails it if
// requests are still queued after 20 s. Shared by the Node SDK scenarios.
const CountlyStorage = require("countly-sdk-nodejs/lib/countly-storage.js");

module.exports = function exitWhenDelivered(minMs) {
    const start = Date.now();
    const deadline = start + 20000;
    let emptyChecks = 0;
    const timer = setInterval(() => {
        const queue = CountlyStorage.storeGet("cly_queue", []);
        const events = CountlyStorage.storeGet("cly_event", []);
        emptyChecks = queue.length === 0 && events.length === 0 ? emptyChecks + 1 : 0;
        if (Date.now() > minMs + start && emptyChecks >= 3) {
            clearInterval(timer);
            process.exit(0);
        }
        if (Date.now() > deadline) {
            console.error(`requests still queued after 20 s: ${JSON.stringify(queue)}`);
            process.exit(1);
        }
    }, 100);
};
