-- ARGV[3] the leader a follower waits for.
-- Replies: {'done', payload} | {'pending'} | {'gone'}
local function follow(keys, args)
  local q = open(keys, args)
  local leader = args[3]
  local now_us, now = clock()
  local _, meta = settle(q, nil, now, now_us)
  save_meta(q, meta)
  close(q)
  local result = redis.call('GET', q.P .. ':r:' .. leader)
  if result then return { 'done', result } end
  if redis.call('HEXISTS', q.ea, leader) == 1 then return { 'pending' } end
  return { 'gone' }
end
