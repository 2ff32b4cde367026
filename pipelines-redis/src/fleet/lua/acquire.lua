-- ARGV[3] id, ARGV[4] behaviour (r d e k u), ARGV[5] lease ttl (ms), ARGV[6] configuration,
-- ARGV[7] the argument as JSON for use-existing ('' otherwise).
-- Replies: {'admitted', token} | {'waiting', ms until the first expiry or -1}
--        | {'dropped'} | {'shared', leader} | {'mismatch', configuration in force}
local function acquire(keys, args)
  local q = open(keys, args)
  local id, behaviour, ttl, config, arg = args[3], args[4], tonumber(args[5]), args[6], args[7]
  local now_us, now = clock()
  purge(q, now)
  local meta = load_meta(q)
  local live = fill(q, meta, now, now_us)
  -- Fewer than max holders after fill: nobody waits.
  local waiting = 0
  if live >= q.max then waiting = redis.call('ZCARD', q.w) end
  if meta.cfg ~= config then
    if meta.cfg and (live > 0 or waiting > 0) then
      save_meta(q, meta)
      return { 'mismatch', meta.cfg }
    end
    redis.call('HSET', q.m, 'cfg', config)
  end
  if live == 0 and waiting == 0 then
    -- Busy again: its bookkeeping is kept until it idles.
    redis.call('PERSIST', q.m)
    if q.audit then redis.call('PERSIST', q.log) end
  end
  if arg ~= '' then
    local leader = redis.call('HGET', q.e, arg)
    if leader then
      redis.call('SADD', q.P .. ':f:' .. leader, id)
      count(q, 'shared')
      save_meta(q, meta)
      return { 'shared', leader }
    end
  end
  meta.seq = meta.seq + 1
  meta.dirty = true
  local seq = meta.seq
  if live < q.max and waiting == 0 then
    local token = admit(q, meta, id, ttl, seq, live, now, now_us)
    lead(q, id, arg)
    save_meta(q, meta)
    return { 'admitted', fmt(token) }
  end
  if behaviour == 'd' then
    count(q, 'dropped')
    log(q, 'd ' .. seq .. ' ' .. id)
    save_meta(q, meta)
    return { 'dropped' }
  end
  if behaviour == 'r' then
    -- The oldest live instances are cancelled until the new one fits: holders not yet
    -- cancelling, oldest token first, then waiters, first arrived first.
    local need = (live - redis.call('SCARD', q.c)) + waiting + 1 - q.max
    if need > 0 then
      local pairs_ = redis.call('HGETALL', q.h)
      local holders = {}
      for i = 1, #pairs_, 2 do
        if redis.call('SISMEMBER', q.c, pairs_[i]) == 0 then
          table.insert(holders, { pairs_[i], tonumber(pairs_[i + 1]) })
        end
      end
      table.sort(holders, function(a, b) return a[2] < b[2] end)
      for _, holder in ipairs(holders) do
        if need <= 0 then break end
        redis.call('SADD', q.c, holder[1])
        tell(holder[1], 'c ' .. holder[1])
        count(q, 'restarted')
        log(q, 'c ' .. holder[1])
        need = need - 1
      end
      while need > 0 do
        local head = redis.call('ZRANGE', q.w, 0, 0)
        if #head == 0 then break end
        drop_waiter(q, head[1])
        tell(head[1], 'c ' .. head[1])
        finish_leader(q, head[1], 'c')
        count(q, 'restarted')
        log(q, 'c ' .. head[1])
        need = need - 1
      end
    end
  elseif behaviour == 'k' then
    -- One waiting place: whoever waits is cancelled, the new one waits instead.
    for _, waiter in ipairs(redis.call('ZRANGE', q.w, 0, -1)) do
      drop_waiter(q, waiter)
      tell(waiter, 'c ' .. waiter)
      finish_leader(q, waiter, 'c')
      count(q, 'replaced')
      log(q, 'c ' .. waiter)
    end
  end
  redis.call('ZADD', q.w, seq, id)
  redis.call('ZADD', q.x, now + ttl, id)
  redis.call('HSET', q.wt, id, ttl)
  lead(q, id, arg)
  log(q, 'w ' .. seq .. ' ' .. id)
  save_meta(q, meta)
  return { 'waiting', fmt(next_expiry(q, now)) }
end
