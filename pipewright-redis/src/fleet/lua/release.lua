-- ARGV[3] id (a holder, a waiter, or an admission being withdrawn), ARGV[4] the result for
-- followers when it led a use-existing run ('' when not), ARGV[5] '1' when the queue is
-- restartable (a holder may be asked to cancel).
-- Replies: 'released' | 'withdrawn' | 'gone' (its lease or place had expired)
local function release(keys, args)
  local q = open(keys, args)
  local id, payload = args[3], args[4]
  local status = 'gone'
  local token = nil
  if q.audit then token = redis.call('HGET', q.h, id) end
  if redis.call('HDEL', q.h, id) == 1 then
    redis.call('ZREM', q.x, id)
    if args[5] == '1' then redis.call('SREM', q.c, id) end
    count(q, 'released')
    log(q, 'r ' .. id .. ' ' .. (token or '0'))
    status = 'released'
  elseif redis.call('ZREM', q.w, id) == 1 then
    log(q, 'q ' .. id)
    status = 'withdrawn'
  end
  if payload ~= '' then finish_leader(q, id, payload) end
  if status == 'released' and #redis.call('ZRANGE', q.w, 0, 0) > 0 then
    -- Someone waits: expired leases go too, and the free slots are handed on.
    local now_us, now = clock()
    purge(q, now)
    local _, meta = fill(q, nil, now, now_us)
    save_meta(q, meta)
  end
  close(q)
  return status
end
