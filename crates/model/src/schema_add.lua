-- Adds fields to a collection's schema, all or none: KEYS[1] the schema hash, ARGV[1] the
-- most fields a collection may have, then name/type pairs. A field that exists keeps its
-- type (the first writer wins). Over the limit nothing is added and the reply is an
-- error whose code is FIELDLIMIT. Returns the whole schema (HGETALL).
local max = tonumber(ARGV[1])
local new = 0
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    new = new + 1
  end
end
if new > 0 and redis.call('HLEN', KEYS[1]) + new > max then
  return redis.error_reply('FIELDLIMIT a collection has at most ' .. max .. ' fields')
end
for i = 2, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HGETALL', KEYS[1])
