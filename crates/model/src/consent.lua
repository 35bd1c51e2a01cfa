-- Records one device's consent changes (Countly's compliance hub): KEYS[1] the app's hash
-- of consents (device -> JSON object of feature -> boolean), KEYS[2] the consents counter
-- hash of the month, KEYS[3] the meta list of features; ARGV[1] the device, ARGV[2] the
-- day of the month, ARGV[3] the JSON object sent. Only features whose value changed are
-- counted: each as `<day>.<feature>.i` (given) or `.o` (taken back), and the request
-- once as `<day>.i` and/or `<day>.o`. Returns the number of changed features.
local before = {}
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then before = cjson.decode(stored) end
local sent = cjson.decode(ARGV[3])
local day = ARGV[2]
local gave, took = 0, 0
for feature, value in pairs(sent) do
  if before[feature] ~= value then
    before[feature] = value
    local kind = value and 'i' or 'o'
    redis.call('HINCRBY', KEYS[2], day .. '.' .. feature .. '.' .. kind, 1)
    redis.call('SADD', KEYS[3], feature)
    if value then gave = gave + 1 else took = took + 1 end
  end
end
if gave > 0 then redis.call('HINCRBY', KEYS[2], day .. '.i', 1) end
if took > 0 then redis.call('HINCRBY', KEYS[2], day .. '.o', 1) end
if gave + took > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(before))
end
return gave + took
