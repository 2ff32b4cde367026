-- ARGV[3] id, ARGV[4] its token ('' for whatever it is: a holder, a waiter, a withdrawn
-- admission), ARGV[5] the result for followers when it led a use-existing run ('' when not).
-- Replies: 'released' | 'withdrawn' | 'gone' (its lease had expired)
local id, token, payload = ARGV[3], ARGV[4], ARGV[5]
local status = 'gone'
local held = redis.call('HGET', TOKENS, id)
if held and (token == '' or held == token) then
  drop_holder(id)
  count('released')
  log('r ' .. id .. ' ' .. held)
  status = 'released'
elseif redis.call('ZSCORE', WAITING, id) then
  drop_waiter(id)
  log('q ' .. id)
  status = 'withdrawn'
end
if payload ~= '' then finish_leader(id, payload) end
purge()
tidy()
return status
