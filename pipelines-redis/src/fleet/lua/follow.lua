-- ARGV[3] the leader a follower waits for.
-- Replies: {'done', payload} | {'pending'} | {'gone'}
local leader = ARGV[3]
purge()
local result = redis.call('GET', P .. ':r:' .. leader)
if result then return { 'done', result } end
if redis.call('HEXISTS', LEADS, leader) == 1 then return { 'pending' } end
return { 'gone' }
