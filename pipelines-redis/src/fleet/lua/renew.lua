-- ARGV[3] lease ttl (ms), ARGV[4..] ids. Extends the leases and waiting places of the
-- ids (one member's, in one queue), and says where each stands, for a member that
-- missed a message.
-- Reply: {ms until the first expiry or -1, then per id: 'h' .. token (held),
--         'c' .. token (held, asked to cancel), 'w' (waiting) or 'g' (gone)}
local function renew(keys, args)
  local q = open(keys, args)
  local ttl = tonumber(args[3])
  local now_us, now = clock()
  settle(q, now, now_us)
  local ids = {}
  for i = 4, #args do ids[#ids + 1] = args[i] end
  local reply = { '' }
  if #ids == 0 then
    reply[1] = fmt(next_expiry(q, now))
    return reply
  end
  local tokens = redis.call('HMGET', q.h, unpack(ids))
  local places = redis.call('ZMSCORE', q.w, unpack(ids))
  local cancelling = nil
  if redis.call('EXISTS', q.c) == 1 then
    cancelling = redis.call('SMISMEMBER', q.c, unpack(ids))
  end
  local expiry = {}
  local until_ = now + ttl
  for i, id in ipairs(ids) do
    if tokens[i] then
      expiry[#expiry + 1] = until_
      expiry[#expiry + 1] = id
      if cancelling and cancelling[i] == 1 then
        reply[i + 1] = 'c' .. tokens[i]
      else
        reply[i + 1] = 'h' .. tokens[i]
      end
    elseif places[i] then
      expiry[#expiry + 1] = until_
      expiry[#expiry + 1] = id
      reply[i + 1] = 'w'
    else
      reply[i + 1] = 'g'
    end
  end
  if #expiry > 0 then
    redis.call('ZADD', q.x, 'XX', unpack(expiry))
  else
    tidy(q, nil)
  end
  reply[1] = fmt(next_expiry(q, now))
  return reply
end
