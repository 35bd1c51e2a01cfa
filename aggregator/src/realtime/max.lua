-- Keeps the larger number in a hash field: KEYS[1] the hash, ARGV[1] the field,
-- ARGV[2] the candidate. Atomic on one key (a realtime report's MAXIMUM).
local c = redis.call('HGET', KEYS[1], ARGV[1])
if not c or tonumber(ARGV[2]) > tonumber(c) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
