-- Applies a list of operations to one user's profile, all or none: KEYS[1] the profile
-- hash, KEYS[2] the app's set of user ids; ARGV[1] the user id, ARGV[2] the most
-- properties, ARGV[3] the most bytes (names and JSON values), ARGV[4] now (ms), then
-- (operation, property, JSON value) triples: set, once (only when unset), incr (a
-- number), unset. Fields starting with '$' are the profile's own ($id, $created). Over a
-- limit, or an increment of a property that is not a number, nothing is written and the
-- reply is an error whose code says which (PROFILELIMIT, NOTNUMBER). Returns the number
-- of properties.
local h = KEYS[1]
local cur = redis.call('HGETALL', h)
local t = {}
for i = 1, #cur, 2 do
  t[cur[i]] = cur[i + 1]
end
for i = 5, #ARGV, 3 do
  local op, name, v = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'set' then
    t[name] = v
  elseif op == 'once' then
    if t[name] == nil then t[name] = v end
  elseif op == 'incr' then
    local n = 0
    if t[name] ~= nil then
      n = tonumber(t[name])
      if n == nil then
        return redis.error_reply('NOTNUMBER property "' .. name .. '" is not a number')
      end
    end
    local r = n + tonumber(v)
    if r == math.floor(r) and math.abs(r) < 9007199254740992 then
      t[name] = string.format('%d', r)
    else
      t[name] = string.format('%.17g', r)
    end
  elseif op == 'unset' then
    t[name] = nil
  end
end
local count, bytes = 0, 0
for k, v in pairs(t) do
  if string.sub(k, 1, 1) ~= '$' then count = count + 1 end
  bytes = bytes + #k + #v
end
if count > tonumber(ARGV[2]) then
  return redis.error_reply('PROFILELIMIT a profile has at most ' .. ARGV[2] .. ' properties')
end
if bytes > tonumber(ARGV[3]) then
  return redis.error_reply('PROFILELIMIT a profile has at most ' .. ARGV[3] .. ' bytes')
end
t['$id'] = ARGV[1]
if t['$created'] == nil then t['$created'] = ARGV[4] end
redis.call('DEL', h)
local args = {}
for k, v in pairs(t) do
  args[#args + 1] = k
  args[#args + 1] = v
end
redis.call('HSET', h, unpack(args))
redis.call('SADD', KEYS[2], ARGV[1])
return count
