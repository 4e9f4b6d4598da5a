-- marketcore: extend a writer lease, only while the caller still holds it with its token.
--
-- KEYS[1]  lease key    KEYS[2]  token key
-- ARGV[1]  node id      ARGV[2]  lease TTL in ms
-- ARGV[3]  epoch        ARGV[4]  counter (the caller's token)
--
-- Returns  1  renewed
--          0  another node holds the lease
--         -1  no lease (it expired, or the server lost it)
--         -2  this node holds the lease but the token moved on (new epoch or a
--             newer token): not renewed; the caller acquires again
local holder = redis.call('GET', KEYS[1])
if not holder then return -1 end
if holder ~= ARGV[1] then return 0 end
local token = redis.call('HMGET', KEYS[2], 'epoch', 'counter')
if tonumber(token[1]) ~= tonumber(ARGV[3]) or tonumber(token[2]) ~= tonumber(ARGV[4]) then
  return -2
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
