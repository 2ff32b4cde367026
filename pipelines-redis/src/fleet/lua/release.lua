-- ARGV[3] id, ARGV[4] its token ('' for whatever it is: a holder, a waiter, a withdrawn
-- admission), ARGV[5] the result for followers when it led a use-existing run ('' when not).
-- Replies: 'released' | 'withdrawn' | 'gone' (its lease had expired)
local function release(keys, args)
  local q = open(keys, args)
  local id, token, payload = args[3], args[4], args[5]
  local now_us, now = clock()
  local status = 'gone'
  local held = redis.call('HGET', q.h, id)
  if held and (token == '' or held == token) then
    redis.call('HDEL', q.h, id)
    redis.call('ZREM', q.x, id)
    redis.call('SREM', q.c, id)
    count(q, 'released')
    log(q, 'r ' .. id .. ' ' .. held)
    status = 'released'
  elseif redis.call('ZREM', q.w, id) == 1 then
    redis.call('ZREM', q.x, id)
    redis.call('HDEL', q.wt, id)
    log(q, 'q ' .. id)
    status = 'withdrawn'
  end
  if payload ~= '' then finish_leader(q, id, payload) end
  local freed = purge(q, now)
  local live = nil
  if status == 'released' or freed then
    local meta = load_meta(q)
    live = fill(q, meta, now, now_us)
    save_meta(q, meta)
  end
  tidy(q, live)
  return status
end
