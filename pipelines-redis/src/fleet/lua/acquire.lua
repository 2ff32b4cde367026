-- ARGV[3] id, ARGV[4] behaviour (r d e k u), ARGV[5] lease ttl (ms), ARGV[6] configuration,
-- ARGV[7] the argument as JSON for use-existing ('' otherwise).
-- Replies: {'admitted', token} | {'waiting', ms until the first lease expires or -1}
--        | {'dropped'} | {'shared', leader} | {'mismatch', configuration in force}
local id, behaviour, ttl, config, arg = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
purge()
local existing = redis.call('GET', CONFIG)
if existing and existing ~= config then return { 'mismatch', existing } end
if not existing then redis.call('SET', CONFIG, config) end
if arg ~= '' then
  local leader = redis.call('HGET', EXISTING, arg)
  if leader then
    redis.call('SADD', P .. ':f:' .. leader, id)
    count('shared')
    return { 'shared', leader }
  end
end
local seq = redis.call('INCR', SEQ)
local live = redis.call('ZCARD', HOLDERS)
if live < MAX and redis.call('ZCARD', WAITING) == 0 then
  local token = admit(id, ttl, seq)
  lead(id, arg)
  return { 'admitted', fmt(token) }
end
if behaviour == 'd' then
  count('dropped')
  log('d ' .. seq .. ' ' .. id)
  return { 'dropped' }
end
if behaviour == 'r' then
  -- The oldest live instances are cancelled until the new one fits: holders not yet
  -- cancelling, oldest token first, then waiters, first arrived first.
  local need = (live - redis.call('SCARD', CANCELLING)) + redis.call('ZCARD', WAITING) + 1 - MAX
  if need > 0 then
    local pairs_ = redis.call('HGETALL', TOKENS)
    local holders = {}
    for i = 1, #pairs_, 2 do
      if redis.call('SISMEMBER', CANCELLING, pairs_[i]) == 0 then
        table.insert(holders, { pairs_[i], tonumber(pairs_[i + 1]) })
      end
    end
    table.sort(holders, function(a, b) return a[2] < b[2] end)
    for _, holder in ipairs(holders) do
      if need <= 0 then break end
      redis.call('SADD', CANCELLING, holder[1])
      tell(holder[1], 'c ' .. holder[1])
      count('restarted')
      log('c ' .. holder[1])
      need = need - 1
    end
    while need > 0 do
      local head = redis.call('ZRANGE', WAITING, 0, 0)
      if #head == 0 then break end
      drop_waiter(head[1])
      tell(head[1], 'c ' .. head[1])
      finish_leader(head[1], 'c')
      count('restarted')
      log('c ' .. head[1])
      need = need - 1
    end
  end
elseif behaviour == 'k' then
  -- One waiting place: whoever waits is cancelled, the new one waits instead.
  for _, waiter in ipairs(redis.call('ZRANGE', WAITING, 0, -1)) do
    drop_waiter(waiter)
    tell(waiter, 'c ' .. waiter)
    finish_leader(waiter, 'c')
    count('replaced')
    log('c ' .. waiter)
  end
end
redis.call('ZADD', WAITING, seq, id)
redis.call('ZADD', WAIT_EXPIRY, NOW + ttl, id)
redis.call('HSET', WAIT_TTL, id, ttl)
lead(id, arg)
log('w ' .. seq .. ' ' .. id)
return { 'waiting', next_expiry() }
