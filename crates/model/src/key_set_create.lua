-- Adds a key set to an app: KEYS[1] the app's registry record, KEYS[2..4] the index
-- entries of the new write, read and master key; ARGV[1] the app id, ARGV[2] the set
-- ("write read master created"), ARGV[3] the most live sets. The first set's keys are
-- the record's own fields (write_key, ...), later ones fields `keys:<id>`. Returns the
-- new set's id; NOAPP when the app is gone, KEYSETLIMIT when it has enough sets.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOAPP the project does not exist')
end
local live = 0
if redis.call('HEXISTS', KEYS[1], 'master_key') == 1 then live = 1 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 5) == 'keys:' then live = live + 1 end
end
if live >= tonumber(ARGV[3]) then
  return redis.error_reply('KEYSETLIMIT the project has ' .. live .. ' key sets')
end
local id = redis.call('HINCRBY', KEYS[1], 'keys_seq', 1)
redis.call('HSET', KEYS[1], 'keys:' .. id, ARGV[2])
for i = 2, 4 do
  redis.call('SET', KEYS[i], ARGV[1])
end
return id
