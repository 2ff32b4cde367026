-- Shared by every fleet function. This library is loaded once (FUNCTION LOAD), so these
-- helpers are defined once, not per call. Each function gets KEYS[1], the queue's key
-- prefix, and ARGV[1] ('1' when the queue keeps an audit log) and ARGV[2] (its max).
--
-- A queue's keys (P = the prefix):
--   P:h   hash, holder id -> its fencing token (HLEN: live holders)
--   P:x   sorted set, by expiry (ms): each holder id (its lease), and '@' .. member for
--         each member with waiters (their waiting places, renewed together)
--   P:w   sorted set, waiter id -> its arrival number
--   P:c   set, holders asked to cancel (restartable)
--   P:m   hash: cfg (configuration in force), seq (last arrival number), tok (last
--         token), peak, and the counters (admitted, released, expired, ...); forgotten
--         a day after the last admission or renewal
--   P:log list, the audit log (audited queues), forgotten with P:m
--   P:e, P:ea, P:f:ID, P:r:ID  use-existing: argument -> leader, leader -> argument,
--         a leader's followers, its result
-- An id is `member.ttl.n` (ttl: the lease ttl in ms it asks for). Invariant after every
-- call: fewer than max holders means nobody waits.

-- Bookkeeping of a queue is kept this long (ms) after its last admission or renewal.
local KEEP = 86400000

local function clock()
  local time = redis.call('TIME')
  local us = tonumber(time[1]) * 1000000 + tonumber(time[2])
  return us, math.floor(us / 1000)
end

-- Integers as text (tostring would use an exponent past 14 digits). Redis itself takes
-- numbers as arguments without loss up to 2^53.
local function fmt(n) return string.format('%.0f', n) end

local function member_of(id) return string.match(id, '^(.+)%.%d+%.%d+$') end
local function ttl_of(id) return tonumber(string.match(id, '%.(%d+)%.%d+$')) or 10000 end

local function tell(id, message)
  redis.call('PUBLISH', 'pipelines:m:' .. member_of(id), message)
end

-- The queue one call works on: its keys are made when first used; its audit entries
-- are written once, when the call closes it.
local SUFFIX = {
  h = ':h', x = ':x', w = ':w', c = ':c', m = ':m', log = ':log', e = ':e', ea = ':ea',
}
local QUEUE = {
  __index = function(q, name)
    local suffix = SUFFIX[name]
    if suffix == nil then return nil end
    local key = q.P .. suffix
    rawset(q, name, key)
    return key
  end,
}

local function open(keys, args)
  return setmetatable({ P = keys[1], audit = args[1] == '1', max = tonumber(args[2]), logs = {} }, QUEUE)
end

-- redis.call(command, key, values...) in chunks: Lua's unpack takes a few thousand
-- values at most. An even chunk keeps pairs together.
local function call_many(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

local function log(q, entry)
  if q.audit then q.logs[#q.logs + 1] = entry end
end

local function close(q)
  if #q.logs > 0 then call_many('RPUSH', q.log, q.logs) end
end

local function count(q, field) redis.call('HINCRBY', q.m, field, 1) end

-- The counters an admission updates, read once and written once per call.
local function load_meta(q)
  local v = redis.call('HMGET', q.m, 'cfg', 'seq', 'tok', 'peak', 'admitted')
  return {
    cfg = v[1], seq = tonumber(v[2]) or 0, tok = tonumber(v[3]) or 0,
    peak = tonumber(v[4]) or 0, admitted = tonumber(v[5]) or 0, dirty = false,
  }
end

local function save_meta(q, meta)
  if meta and meta.dirty then
    redis.call('HSET', q.m, 'seq', meta.seq, 'tok', meta.tok, 'peak', meta.peak,
      'admitted', meta.admitted)
  end
end

-- Gives `id` a slot; `live` holders before it. Fencing tokens increase per queue and
-- stay above every earlier one even if Redis lost the counter (a restart without
-- persistence): never below the server's clock in us.
local function admit(q, meta, id, seq, live, now, now_us)
  local token = math.max(meta.tok + 1, now_us)
  meta.tok = token
  meta.admitted = meta.admitted + 1
  if live + 1 > meta.peak then meta.peak = live + 1 end
  meta.dirty = true
  redis.call('HSET', q.h, id, token)
  redis.call('ZADD', q.x, now + ttl_of(id), id)
  if live + 1 > q.max then count(q, 'over') end
  if q.audit then log(q, 'a ' .. seq .. ' ' .. id .. ' ' .. fmt(token) .. ' ' .. (live + 1)) end
  return token
end

-- use-existing: `id` leads the run for argument `arg`.
local function lead(q, id, arg)
  if arg ~= '' then
    redis.call('HSET', q.e, arg, id)
    redis.call('HSET', q.ea, id, arg)
  end
end

-- The leader `id` is done: its followers get `payload` ('o' .. json, 'f' .. message,
-- 'c' .. reason cancelled, 'l' lost), by message and, for a follower that missed it, in a key.
local function finish_leader(q, id, payload)
  local arg = redis.call('HGET', q.ea, id)
  if not arg then return end
  redis.call('HDEL', q.ea, id)
  if redis.call('HGET', q.e, arg) == id then redis.call('HDEL', q.e, arg) end
  local followers_key = q.P .. ':f:' .. id
  local followers = redis.call('SMEMBERS', followers_key)
  if #followers > 0 then
    redis.call('SET', q.P .. ':r:' .. id, payload, 'PX', 60000)
    for _, follower in ipairs(followers) do
      tell(follower, 'd ' .. follower .. ' ' .. payload)
    end
    redis.call('DEL', followers_key)
  end
end

-- Free slots go to the waiters, in arrival order; each is told by a message. `meta` may
-- be nil (read when first needed). Returns the holders after, and `meta`.
local function fill(q, meta, now, now_us)
  local live = redis.call('HLEN', q.h)
  while live < q.max do
    local head = redis.call('ZRANGE', q.w, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local id, seq = head[1], head[2]
    redis.call('ZREM', q.w, id)
    meta = meta or load_meta(q)
    local token = admit(q, meta, id, seq, live, now, now_us)
    live = live + 1
    tell(id, 'a ' .. id .. ' ' .. fmt(token))
  end
  return live, meta
end

-- Expired leases go, and so do the waiting places of a member that stopped renewing
-- them (any member's call frees a crashed member's slots and places); true if a slot
-- was freed.
local function purge(q, now)
  local expired = redis.call('ZRANGEBYSCORE', q.x, '-inf', now)
  local freed = false
  for _, id in ipairs(expired) do
    redis.call('ZREM', q.x, id)
    if string.sub(id, 1, 1) == '@' then
      local member = string.sub(id, 2)
      for _, waiter in ipairs(redis.call('ZRANGE', q.w, 0, -1)) do
        if member_of(waiter) == member then
          redis.call('ZREM', q.w, waiter)
          count(q, 'expired')
          log(q, 'y ' .. waiter)
          finish_leader(q, waiter, 'l')
        end
      end
    elseif redis.call('HDEL', q.h, id) == 1 then
      redis.call('SREM', q.c, id)
      freed = true
      count(q, 'expired')
      log(q, 'x ' .. id)
      finish_leader(q, id, 'l')
    end
  end
  return freed
end

-- Purges, and hands freed slots on. Returns the holders after, and `meta`, if it did.
local function settle(q, meta, now, now_us)
  if not purge(q, now) then return nil, meta end
  return fill(q, meta, now, now_us)
end

-- ms until the first lease or member's places in the queue expire, -1 if none.
local function next_expiry(q, now)
  local first = redis.call('ZRANGE', q.x, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
end

-- The queue's bookkeeping is kept a day after it was last used.
local function keep(q)
  redis.call('PEXPIRE', q.m, KEEP)
  if q.audit then redis.call('PEXPIRE', q.log, KEEP) end
end
