-- marketcore: give a writer lease back, only while the caller holds it with its token.
--
-- KEYS[1]  lease key    KEYS[2]  token key
-- ARGV[1]  node id      ARGV[2]  epoch    ARGV[3]  counter
--
-- Returns 1 released, 0 not held by the caller (nothing changed).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local token = redis.call('HMGET', KEYS[2], 'epoch', 'counter')
if tonumber(token[1]) ~= tonumber(ARGV[2]) or tonumber(token[2]) ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
