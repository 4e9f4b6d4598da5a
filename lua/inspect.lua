-- marketcore: read a lease and its token in one atomic step (no writes).
--
-- Used after an acquire whose reply was lost: the caller reads the outcome back
-- instead of sending the acquire again.
--
-- KEYS[1]  lease key    KEYS[2]  token key
-- Returns {holder, holder instance, epoch, counter, pttl}; "" and -1 where absent.
local holder = redis.call('GET', KEYS[1])
local token = redis.call('HMGET', KEYS[2], 'holder', 'epoch', 'counter')
return {holder or '', token[1] or '', tonumber(token[2]) or -1, tonumber(token[3]) or -1,
        redis.call('PTTL', KEYS[1])}
