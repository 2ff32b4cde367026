-- Shared by every fleet script. KEYS[1] is the queue's key prefix; ARGV[1] is '1' when
-- the queue keeps an audit log, ARGV[2] its max. Every script first purges expired
-- leases and waiters (handing freed slots to the next waiters), so any member's call
-- frees a crashed member's slots.
local P = KEYS[1]
local AUDIT = ARGV[1] == '1'
local MAX = tonumber(ARGV[2])
local HOLDERS, TOKENS, CANCELLING = P .. ':h', P .. ':t', P .. ':c'
local WAITING, WAIT_EXPIRY, WAIT_TTL = P .. ':w', P .. ':wx', P .. ':wt'
local SEQ, TOKEN, STATS, LOG, CONFIG = P .. ':seq', P .. ':tok', P .. ':s', P .. ':log', P .. ':cfg'
local EXISTING, LEADS = P .. ':e', P .. ':ea'
-- Bookkeeping of an idle queue is kept this long (ms), then forgotten.
local IDLE_KEEP = 86400000

local clock = redis.call('TIME')
local NOW_US = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local NOW = math.floor(NOW_US / 1000)

local function fmt(n) return string.format('%.0f', n) end
local function member_of(id) return string.match(id, '^(.+)%.%d+$') end
local function tell(id, message)
  redis.call('PUBLISH', 'pipelines:m:' .. member_of(id), message)
end
local function log(entry)
  if AUDIT then redis.call('RPUSH', LOG, entry) end
end
local function count(field) redis.call('HINCRBY', STATS, field, 1) end

-- Fencing tokens increase per queue and stay above every earlier one even if Redis lost
-- the counter (a restart without persistence): never below the server's clock in us.
local function next_token()
  local last = tonumber(redis.call('GET', TOKEN) or '0')
  local token = math.max(last + 1, NOW_US)
  redis.call('SET', TOKEN, fmt(token))
  return token
end

local function next_expiry()
  local first = redis.call('ZRANGE', HOLDERS, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - NOW)
end

local function drop_holder(id)
  redis.call('ZREM', HOLDERS, id)
  redis.call('HDEL', TOKENS, id)
  redis.call('SREM', CANCELLING, id)
end

local function drop_waiter(id)
  redis.call('ZREM', WAITING, id)
  redis.call('ZREM', WAIT_EXPIRY, id)
  redis.call('HDEL', WAIT_TTL, id)
end

-- use-existing: `id` leads the run for argument `arg`.
local function lead(id, arg)
  if arg ~= '' then
    redis.call('HSET', EXISTING, arg, id)
    redis.call('HSET', LEADS, id, arg)
  end
end

-- The leader `id` is done: its followers get `payload` ('o' .. json, 'f' .. message,
-- 'c' cancelled, 'l' lost), by message and, for a follower that missed it, in a key.
local function finish_leader(id, payload)
  local arg = redis.call('HGET', LEADS, id)
  if not arg then return end
  redis.call('HDEL', LEADS, id)
  if redis.call('HGET', EXISTING, arg) == id then redis.call('HDEL', EXISTING, arg) end
  local followers_key = P .. ':f:' .. id
  local followers = redis.call('SMEMBERS', followers_key)
  if #followers > 0 then
    redis.call('SET', P .. ':r:' .. id, payload, 'PX', 60000)
    for _, follower in ipairs(followers) do
      tell(follower, 'd ' .. follower .. ' ' .. payload)
    end
    redis.call('DEL', followers_key)
  end
end

local function admit(id, ttl, seq)
  local token = next_token()
  redis.call('ZADD', HOLDERS, NOW + ttl, id)
  redis.call('HSET', TOKENS, id, fmt(token))
  local live = redis.call('ZCARD', HOLDERS)
  count('admitted')
  if live > tonumber(redis.call('HGET', STATS, 'peak') or '0') then
    redis.call('HSET', STATS, 'peak', live)
  end
  if live > MAX then count('over') end
  log('a ' .. seq .. ' ' .. id .. ' ' .. fmt(token) .. ' ' .. live)
  return token
end

-- Free slots go to the waiters, in arrival order; each is told by a message.
local function fill()
  while redis.call('ZCARD', HOLDERS) < MAX do
    local head = redis.call('ZRANGE', WAITING, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local id, seq = head[1], head[2]
    local ttl = tonumber(redis.call('HGET', WAIT_TTL, id) or '10000')
    drop_waiter(id)
    local token = admit(id, ttl, seq)
    tell(id, 'a ' .. id .. ' ' .. fmt(token))
  end
end

local function purge()
  local expired = redis.call('ZRANGEBYSCORE', HOLDERS, '-inf', NOW)
  for _, id in ipairs(expired) do
    drop_holder(id)
    count('expired')
    log('x ' .. id)
    finish_leader(id, 'l')
  end
  local gone = redis.call('ZRANGEBYSCORE', WAIT_EXPIRY, '-inf', NOW)
  for _, id in ipairs(gone) do
    drop_waiter(id)
    count('expired')
    log('y ' .. id)
    finish_leader(id, 'l')
  end
  fill()
end

-- An idle queue forgets its configuration (so it may change) and, after a while, its
-- bookkeeping; tokens stay increasing without it (see next_token).
local function tidy()
  if redis.call('ZCARD', HOLDERS) == 0 and redis.call('ZCARD', WAITING) == 0 then
    redis.call('DEL', CONFIG)
    for _, key in ipairs({ TOKEN, SEQ, STATS, LOG }) do
      redis.call('PEXPIRE', key, IDLE_KEEP)
    end
  end
end
