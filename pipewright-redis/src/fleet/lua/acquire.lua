-- The waiters this call added, in one write each; their member's places are renewed
-- together, by the marker '@member' in P:x.
local function flush_waiters(q, state)
  if #state.w == 0 then return end
  call_many('ZADD', q.w, state.w)
  redis.call('ZADD', q.x, 'GT', state.now + state.marker_ttl, '@' .. state.member)
  state.w = {}
end

-- One request for a slot: ARGS id, behaviour (r d e k u), configuration, the argument
-- as JSON for use-existing ('' otherwise). `state` holds the holders and waiters now
-- (waiting = nil: not counted yet). Returns the reply's kind and value.
local function acquire_one(q, meta, state, id, behaviour, config, arg)
  if state.waiting == nil then state.waiting = redis.call('ZCARD', q.w) end
  local live, waiting = state.live, state.waiting
  if meta.cfg ~= config then
    if meta.cfg and (live > 0 or waiting > 0) then return 'mismatch', meta.cfg end
    redis.call('HSET', q.m, 'cfg', config)
    meta.cfg = config
  end
  if arg ~= '' then
    local leader = redis.call('HGET', q.e, arg)
    if leader then
      redis.call('SADD', q.P .. ':f:' .. leader, id)
      count(q, 'shared')
      return 'shared', leader
    end
  end
  meta.seq = meta.seq + 1
  meta.dirty = true
  local seq = meta.seq
  if live < q.max and waiting == 0 then
    local token = admit(q, meta, id, seq, live, state.now, state.now_us)
    state.live = live + 1
    lead(q, id, arg)
    return 'admitted', token
  end
  if behaviour == 'd' then
    count(q, 'dropped')
    log(q, 'd ' .. seq .. ' ' .. id)
    return 'dropped', ''
  end
  if behaviour == 'r' or behaviour == 'k' then
    -- What follows reads the waiters: the ones of this call first.
    flush_waiters(q, state)
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
        redis.call('ZREM', q.w, head[1])
        tell(head[1], 'c ' .. head[1])
        finish_leader(q, head[1], 'creplaced')
        count(q, 'restarted')
        log(q, 'c ' .. head[1])
        need = need - 1
      end
    end
    state.waiting = nil
  elseif behaviour == 'k' then
    -- One waiting place: whoever waits is cancelled, the new one waits instead.
    for _, waiter in ipairs(redis.call('ZRANGE', q.w, 0, -1)) do
      redis.call('ZREM', q.w, waiter)
      tell(waiter, 'c ' .. waiter)
      finish_leader(q, waiter, 'creplaced')
      count(q, 'replaced')
      log(q, 'c ' .. waiter)
    end
    state.waiting = nil
  end
  local w = state.w
  w[#w + 1] = seq
  w[#w + 1] = id
  local ttl = ttl_of(id)
  if ttl > state.marker_ttl then state.marker_ttl = ttl end
  state.member = state.member or member_of(id)
  if state.waiting ~= nil then state.waiting = state.waiting + 1 end
  lead(q, id, arg)
  log(q, 'w ' .. seq .. ' ' .. id)
  return 'waiting', nil
end

-- ARGV[3..]: requests for a slot, four values each (see acquire_one), in arrival order.
-- Reply: two values per request: 'admitted', token | 'waiting', ms until the first
-- expiry or -1 | 'dropped', '' | 'shared', leader | 'mismatch', configuration in force.
local function acquire(keys, args)
  local q = open(keys, args)
  local now_us, now = clock()
  local meta = load_meta(q)
  local live = redis.call('HLEN', q.h)
  if live >= q.max then
    -- Full, as far as it looks: expired leases may free slots (waiters go first). An
    -- expired lease not purged yet only makes it look fuller.
    local settled
    settled, meta = settle(q, meta, now, now_us)
    live = settled or live
  end
  local state = { live = live, w = {}, now = now, now_us = now_us, marker_ttl = 0 }
  -- Fewer than max holders: nobody waits (the invariant).
  if live < q.max then state.waiting = 0 end
  local reply = {}
  local waiters = {}
  for i = 3, #args, 4 do
    local kind, value = acquire_one(q, meta, state, args[i], args[i + 1], args[i + 2], args[i + 3])
    reply[#reply + 1] = kind
    reply[#reply + 1] = value or ''
    if kind == 'waiting' then waiters[#waiters + 1] = #reply end
  end
  flush_waiters(q, state)
  if #waiters > 0 then
    local next = next_expiry(q, now)
    for _, at in ipairs(waiters) do reply[at] = next end
  end
  save_meta(q, meta)
  keep(q)
  close(q)
  return reply
end
