-- ARGV[3] id (a holder, a waiter, or an admission being withdrawn), ARGV[4] the result for
-- followers when it led a use-existing run ('' when not), ARGV[5] '1' when the queue is
-- restartable (a holder may be asked to cancel).
-- Replies: 'released' | 'withdrawn' | 'gone' (its lease or place had expired)
local function release(keys, args)
  local q = open(keys, args)
  local id, payload = args[3], args[4]
  local now_us, now = clock()
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
    redis.call('HDEL', q.wt, id)
    log(q, 'q ' .. id)
    status = 'withdrawn'
  end
  if payload ~= '' then finish_leader(q, id, payload) end
  local freed = purge(q, now)
  local live = nil
  if status == 'released' or freed then
    local meta
    live, meta = fill(q, nil, now, now_us)
    save_meta(q, meta)
  end
  tidy(q, live)
  close(q)
  return status
end
