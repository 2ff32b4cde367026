-- ARGV[3] id, ARGV[4] lease ttl (ms). Extends a lease or a waiting place, and says where
-- the id stands, for a member that missed a message.
-- Replies: {'held', token} | {'cancelling', token} | {'waiting', ms until the first lease
-- expires or -1} | {'gone'}
local id, ttl = ARGV[3], tonumber(ARGV[4])
purge()
local token = redis.call('HGET', TOKENS, id)
if token then
  redis.call('ZADD', HOLDERS, NOW + ttl, id)
  if redis.call('SISMEMBER', CANCELLING, id) == 1 then return { 'cancelling', token } end
  return { 'held', token }
end
if redis.call('ZSCORE', WAITING, id) then
  redis.call('ZADD', WAIT_EXPIRY, NOW + ttl, id)
  return { 'waiting', next_expiry() }
end
tidy()
return { 'gone' }
