-- Shared by every fleet function. This library is loaded once (FUNCTION LOAD), so these
-- helpers are defined once, not per call. Each function gets KEYS[1], the queue's key
-- prefix, and ARGV[1] ('1' when the queue keeps an audit log) and ARGV[2] (its max).
--
-- A queue's keys (P = the prefix):
--   P:h   hash, holder id -> its fencing token (HLEN: live holders)
--   P:x   sorted set, by expiry (ms): each holder id (its lease), and '@' .. member for
--         each member with waiters (their waiting places, renewed together)
--   P:w   sorted set, waiter id -> its arrival number
--   P:wt  hash, waiter id -> the lease ttl it asked for
--   P:c   set, holders asked to cancel (restartable)
--   P:m   hash: cfg (configuration in force), seq (last arrival number), tok (last
--         token), peak, and the counters (admitted, released, expired, ...)
--   P:log list, the audit log (audited queues)
--   P:e, P:ea, P:f:ID, P:r:ID  use-existing: argument -> leader, leader -> argument,
--         a leader's followers, its result
-- An id is `member.n`. Invariant after every call: fewer than max holders means nobody
-- waits.

-- Bookkeeping of an idle queue is kept this long (ms), then forgotten.
local IDLE_KEEP = 86400000

local function clock()
  local time = redis.call('TIME')
  local us = tonumber(time[1]) * 1000000 + tonumber(time[2])
  return us, math.floor(us / 1000)
end

-- Integers as text (tostring would use an exponent past 14 digits). Redis itself takes
-- numbers as arguments without loss up to 2^53.
local function fmt(n) return string.format('%.0f', n) end

local function member_of(id) return string.match(id, '^(.+)%.%d+$') end

local function tell(id, message)
  redis.call('PUBLISH', 'pipelines:m:' .. member_of(id), message)
end

-- The queue one call works on; its audit entries are written once, at the end.
local function open(keys, args)
  local P = keys[1]
  return {
    P = P, audit = args[1] == '1', max = tonumber(args[2]), logs = {},
    h = P .. ':h', x = P .. ':x', w = P .. ':w', wt = P .. ':wt', c = P .. ':c',
    m = P .. ':m', log = P .. ':log', e = P .. ':e', ea = P .. ':ea',
  }
end

local function log(q, entry)
  if q.audit then q.logs[#q.logs + 1] = entry end
end

local function close(q)
  if #q.logs > 0 then redis.call('RPUSH', q.log, unpack(q.logs)) end
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
local function admit(q, meta, id, ttl, seq, live, now, now_us)
  local token = math.max(meta.tok + 1, now_us)
  meta.tok = token
  meta.admitted = meta.admitted + 1
  if live + 1 > meta.peak then meta.peak = live + 1 end
  meta.dirty = true
  redis.call('HSET', q.h, id, token)
  redis.call('ZADD', q.x, now + ttl, id)
  if live + 1 > q.max then count(q, 'over') end
  if q.audit then log(q, 'a ' .. seq .. ' ' .. id .. ' ' .. fmt(token) .. ' ' .. (live + 1)) end
  return token
end

local function drop_waiter(q, id)
  redis.call('ZREM', q.w, id)
  redis.call('HDEL', q.wt, id)
end

-- use-existing: `id` leads the run for argument `arg`.
local function lead(q, id, arg)
  if arg ~= '' then
    redis.call('HSET', q.e, arg, id)
    redis.call('HSET', q.ea, id, arg)
  end
end

-- The leader `id` is done: its followers get `payload` ('o' .. json, 'f' .. message,
-- 'c' cancelled, 'l' lost), by message and, for a follower that missed it, in a key.
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
    local ttl = tonumber(redis.call('HGET', q.wt, id) or '10000')
    drop_waiter(q, id)
    meta = meta or load_meta(q)
    local token = admit(q, meta, id, ttl, seq, live, now, now_us)
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
          drop_waiter(q, waiter)
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

-- Purges, and hands freed slots on.
local function settle(q, now, now_us)
  if purge(q, now) then
    local _, meta = fill(q, nil, now, now_us)
    save_meta(q, meta)
  end
end

-- ms until the first lease or member's places in the queue expire, -1 if none.
local function next_expiry(q, now)
  local first = redis.call('ZRANGE', q.x, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
end

-- An idle queue's bookkeeping is forgotten after a while (an admission to an idle queue
-- makes it permanent again); tokens stay increasing without it (see admit). `live` as
-- fill returned it, if it ran (then fewer than max holders means nobody waits).
local function tidy(q, live)
  if live == nil then
    live = redis.call('HLEN', q.h)
    if live == 0 and redis.call('ZCARD', q.w) > 0 then return end
  end
  if live == 0 then
    redis.call('PEXPIRE', q.m, IDLE_KEEP)
    if q.audit then redis.call('PEXPIRE', q.log, IDLE_KEEP) end
  end
end
