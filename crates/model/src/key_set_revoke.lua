-- Revokes one key set of an app: KEYS[1] the app's registry record, KEYS[2..4] the index
-- entries of the set's keys; ARGV[1] the set's id, ARGV[2] its master key, ARGV[3] its
-- field (`keys:<id>`; set 0 is the record's own write_key, read_key and master_key).
-- Returns 1 when revoked, 0 when the set is not (or no longer) there; LASTKEYSET when it
-- is the app's only set, which is kept (an app without keys could never be used again).
local live = 0
if redis.call('HEXISTS', KEYS[1], 'master_key') == 1 then live = 1 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 5) == 'keys:' then live = live + 1 end
end
local master
if ARGV[1] == '0' then
  master = redis.call('HGET', KEYS[1], 'master_key')
else
  local set = redis.call('HGET', KEYS[1], ARGV[3])
  if set then
    local words = {}
    for w in string.gmatch(set, '%S+') do words[#words + 1] = w end
    master = words[3]
  end
end
if not master or master ~= ARGV[2] then
  return 0
end
if live <= 1 then
  return redis.error_reply('LASTKEYSET this is the project\'s last key set: create another first')
end
if ARGV[1] == '0' then
  redis.call('HDEL', KEYS[1], 'write_key', 'read_key', 'master_key')
else
  redis.call('HDEL', KEYS[1], ARGV[3])
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1
