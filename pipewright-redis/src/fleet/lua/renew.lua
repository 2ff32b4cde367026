-- ARGV[3] lease ttl (ms), ARGV[4] the member, ARGV[5] '1' when it has waiters here (their
-- places are renewed together), ARGV[6] '1' for a full look (ids may be waiters: after a
-- reconnection, messages may have been lost), ARGV[7..] ids. Extends the member's leases
-- (and places) in the queue, and says where each id stands.
-- Reply: {ms until the first expiry or -1, then per id: 'h' .. token (held),
--         'c' .. token (held, asked to cancel), 'w' (waiting) or 'g' (gone)}
local function renew(keys, args)
  local q = open(keys, args)
  local ttl, member, waiters, full = tonumber(args[3]), args[4], args[5] == '1', args[6] == '1'
  local now_us, now = clock()
  local _, meta = settle(q, nil, now, now_us)
  save_meta(q, meta)
  local until_ = now + ttl
  if waiters then redis.call('ZADD', q.x, 'GT', until_, '@' .. member) end
  local ids = {}
  for i = 7, #args do ids[#ids + 1] = args[i] end
  local reply = { '' }
  if #ids > 0 then
    local tokens = redis.call('HMGET', q.h, unpack(ids))
    local places = nil
    if full then places = redis.call('ZMSCORE', q.w, unpack(ids)) end
    local cancelling = nil
    if redis.call('EXISTS', q.c) == 1 then
      cancelling = redis.call('SMISMEMBER', q.c, unpack(ids))
    end
    local leases = {}
    for i, id in ipairs(ids) do
      if tokens[i] then
        leases[#leases + 1] = until_
        leases[#leases + 1] = id
        if cancelling and cancelling[i] == 1 then
          reply[i + 1] = 'c' .. tokens[i]
        else
          reply[i + 1] = 'h' .. tokens[i]
        end
      elseif places and places[i] then
        reply[i + 1] = 'w'
      else
        reply[i + 1] = 'g'
      end
    end
    for i = 1, #leases, 1000 do
      redis.call('ZADD', q.x, 'XX', unpack(leases, i, math.min(i + 999, #leases)))
    end
  end
  keep(q)
  reply[1] = fmt(next_expiry(q, now))
  close(q)
  return reply
end
