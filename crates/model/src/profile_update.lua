-- Applies a list of operations to one user's profile, all or none: KEYS[1] the profile
-- hash, KEYS[2] the app's set of user ids; ARGV[1] the user id, ARGV[2] the most
-- properties, ARGV[3] the most bytes (names and JSON values), ARGV[4] now (ms), ARGV[5]
-- 1 for a dry run (check everything, write nothing), then
-- (operation, property, JSON value) triples: set, once (only when unset), incr and mul
-- (by a number), max and min (keep the larger or smaller number), push (append to a
-- list), addtoset (append what the list lacks), pull (remove from a list), unset; push,
-- addtoset and pull take a JSON list of the values. Fields starting with '$' are the
-- profile's own ($id, $created). Over a limit, arithmetic on a property that is not a
-- number, or a list operation on one that is not a list, nothing is written and the reply
-- is an error whose code says which (PROFILELIMIT, NOTNUMBER, NOTLIST). Returns the
-- number of properties.
local h = KEYS[1]
local cur = redis.call('HGETALL', h)
local t = {}
for i = 1, #cur, 2 do
  t[cur[i]] = cur[i + 1]
end
-- Numbers are kept as JSON text: integers exactly while they fit a double's integers.
local function num_text(r)
  if r == math.floor(r) and math.abs(r) < 9007199254740992 then
    return string.format('%d', r)
  end
  return string.format('%.17g', r)
end
local function number_of(name)
  if t[name] == nil then return nil end
  local n = tonumber(t[name])
  if n == nil then
    error({err = 'NOTNUMBER property "' .. name .. '" is not a number'})
  end
  return n
end
-- A list property as a Lua array of JSON texts (an absent one is empty).
local function list_of(name)
  if t[name] == nil then return {} end
  local ok, v = pcall(cjson.decode, t[name])
  if not ok or type(v) ~= 'table' or (next(v) ~= nil and v[1] == nil) then
    if t[name] ~= '[]' then
      error({err = 'NOTLIST property "' .. name .. '" is not a list'})
    end
    return {}
  end
  local out = {}
  for i = 1, #v do out[i] = cjson.encode(v[i]) end
  return out
end
local function store_list(name, items)
  t[name] = '[' .. table.concat(items, ',') .. ']'
end
local function values_of(v)
  local out = {}
  for i, x in ipairs(cjson.decode(v)) do out[i] = cjson.encode(x) end
  return out
end
local function apply(op, name, v)
  if op == 'set' then
    t[name] = v
  elseif op == 'once' then
    if t[name] == nil then t[name] = v end
  elseif op == 'incr' then
    t[name] = num_text((number_of(name) or 0) + tonumber(v))
  elseif op == 'mul' then
    t[name] = num_text((number_of(name) or 0) * tonumber(v))
  elseif op == 'max' then
    local n = number_of(name)
    if n == nil or tonumber(v) > n then t[name] = v end
  elseif op == 'min' then
    local n = number_of(name)
    if n == nil or tonumber(v) < n then t[name] = v end
  elseif op == 'push' then
    local items = list_of(name)
    for _, x in ipairs(values_of(v)) do items[#items + 1] = x end
    store_list(name, items)
  elseif op == 'addtoset' then
    local items = list_of(name)
    for _, x in ipairs(values_of(v)) do
      local seen = false
      for _, y in ipairs(items) do
        if y == x then seen = true end
      end
      if not seen then items[#items + 1] = x end
    end
    store_list(name, items)
  elseif op == 'pull' then
    local gone = {}
    for _, x in ipairs(values_of(v)) do gone[x] = true end
    local kept = {}
    for _, y in ipairs(list_of(name)) do
      if not gone[y] then kept[#kept + 1] = y end
    end
    store_list(name, kept)
  elseif op == 'unset' then
    t[name] = nil
  end
end
for i = 6, #ARGV, 3 do
  local ok, e = pcall(apply, ARGV[i], ARGV[i + 1], ARGV[i + 2])
  if not ok then
    if type(e) == 'table' and e.err then return redis.error_reply(e.err) end
    return redis.error_reply('ERR ' .. tostring(e))
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
if ARGV[5] == '1' then return count end
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
