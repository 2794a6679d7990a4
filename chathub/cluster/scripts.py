"""The Lua scripts ``RedisBackplane`` runs in Redis: each is one atomic step, so two nodes can
never both be granted a nick, nor both win the reaping of a dead node.

Keys, all under the cluster's key prefix ``P`` (default ``ch:``), described in
docs/cluster.md: ``P epoch``, ``P nodes`` (set of node ids), ``P node:{id}`` (a node's lease,
holding the random token of the process that holds it), ``P lost:{id}`` (the node was
declared dead), ``P reap:{id}`` (who reaped it), ``P nodenicks:{id}`` (set of the node's
nicks), ``P nick:{folded}`` (the owner "node_id/session"), ``P room:{folded}`` (the token
of the making of the live room of that name and its maker's lease token:
``chathub.hub.roomclaims``).

Every script gets the key prefix as ARGV[1] and this node's id as ARGV[2] and builds key
names from them, so it works on one Redis server (or a primary with replicas), not on
Redis Cluster, whose scripts must declare their keys.
"""
from __future__ import annotations

PRELUDE = """
local P, SELF = ARGV[1], ARGV[2]
local function lease_key(node) return P .. 'node:' .. node end
local function holds_lease(token) return redis.call('GET', lease_key(SELF)) == token end
local function dead(node)
  -- declared dead: no lease, and either a watchdog marked it lost or it is no longer a
  -- member (reaped, stopped, or forgotten with Redis's data); a node whose lease merely
  -- lapsed while it was cut off is neither, and may resume
  if redis.call('EXISTS', lease_key(node)) == 1 then return false end
  return redis.call('EXISTS', P .. 'lost:' .. node) == 1
      or redis.call('SISMEMBER', P .. 'nodes', node) == 0
end
local function take(nick, owner)
  local key = P .. 'nick:' .. nick
  local holder = redis.call('GET', key)
  local granted = 1
  if holder and holder ~= owner then
    local node = string.match(holder, '^([^/]*)/')
    if not node or node == SELF or not dead(node) then return 0 end
    granted = 2
  end
  redis.call('SET', key, owner)
  redis.call('SADD', P .. 'nodenicks:' .. SELF, nick)
  return granted
end
local function release(nick, owner)
  local key = P .. 'nick:' .. nick
  if redis.call('GET', key) == owner then
    redis.call('DEL', key)
    redis.call('SREM', P .. 'nodenicks:' .. SELF, nick)
    return 1
  end
  return 0
end
local function free_nicks(node)
  local set = P .. 'nodenicks:' .. node
  local mine = node .. '/'
  for _, nick in ipairs(redis.call('SMEMBERS', set)) do
    local key = P .. 'nick:' .. nick
    local holder = redis.call('GET', key)
    if holder and string.sub(holder, 1, #mine) == mine then redis.call('DEL', key) end
  end
  redis.call('DEL', set)
end
local function epoch(candidate)
  local current = redis.call('GET', P .. 'epoch')
  if current then return current, 0 end
  redis.call('SET', P .. 'epoch', candidate)
  return candidate, 1
end
"""

#: ARGV[3] token, [4] lease ms, [5] a new epoch in case there is none, [6] '1': take over
#: from an unreaped previous process with this id even though live nodes could reap it.
#: Returns {epoch, created, status}: 1 taken; 0 a live process holds this id; 3 a previous
#: process with this id died and live nodes have not reaped it yet (try again later).
ACQUIRE = PRELUDE + """
local e, created = epoch(ARGV[5])
if redis.call('EXISTS', lease_key(SELF)) == 1 then return {e, created, 0} end
if redis.call('SISMEMBER', P .. 'nodes', SELF) == 1 and ARGV[6] ~= '1' then
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if node ~= SELF and redis.call('EXISTS', lease_key(node)) == 1 then return {e, created, 3} end
  end
end
free_nicks(SELF)
redis.call('DEL', P .. 'lost:' .. SELF, P .. 'reap:' .. SELF)
redis.call('SET', lease_key(SELF), ARGV[3], 'PX', ARGV[4])
redis.call('SADD', P .. 'nodes', SELF)
return {e, created, 1}
"""

#: ARGV[3] token, [4] lease ms, [5] a new epoch in case there is none.
#: Returns {epoch, created, status}: 1 renewed; 2 the lease had lapsed and nobody declared
#: this node dead, so it is taken again; 0 declared dead; -1 another process holds it.
HEARTBEAT = PRELUDE + """
local e, created = epoch(ARGV[5])
local holder = redis.call('GET', lease_key(SELF))
local status
if holder == ARGV[3] then
  redis.call('PEXPIRE', lease_key(SELF), ARGV[4])
  status = 1
elseif holder then
  status = -1
elseif redis.call('EXISTS', P .. 'lost:' .. SELF) == 1 then
  status = 0
else
  redis.call('SET', lease_key(SELF), ARGV[3], 'PX', ARGV[4])
  status = 2
end
if status > 0 then redis.call('SADD', P .. 'nodes', SELF) end
return {e, created, status}
"""

#: ARGV[3] token, [4] nick, [5] owner. Returns 1 granted, 2 granted from a dead node,
#: 0 held by another live session, -1 this node does not hold its lease.
CLAIM = PRELUDE + """
if not holds_lease(ARGV[3]) then return -1 end
return take(ARGV[4], ARGV[5])
"""

#: ARGV[3] token, [4] old nick, [5] new nick, [6] owner. As CLAIM for the new nick; the
#: old one is released only when the new one is granted.
RENAME = PRELUDE + """
if not holds_lease(ARGV[3]) then return -1 end
local granted = take(ARGV[5], ARGV[6])
if granted > 0 and ARGV[4] ~= ARGV[5] then release(ARGV[4], ARGV[6]) end
return granted
"""

#: ARGV[3] token, [4] folded room name, [5] the claiming making's token, [6] a token it may
#: take over ('' none: a making whose room never came). The name's key holds the making's
#: token and the lease token of the process that made it: a claim whose maker's process
#: is gone (another process holds its node's lease: it restarted; or none does and the node
#: is dead, as for nicks) is taken over at once: its rooms ended with it unless other nodes
#: hold them, and then no node claims the name.
#: Returns {1} granted, {0, holder's making token} held by another making, {-1} this node
#: does not hold its lease. Room claims are not the node's (the room outlives its maker's
#: node): a node's death frees none of them.
ROOM_CLAIM = PRELUDE + """
if not holds_lease(ARGV[3]) then return {-1} end
local key = P .. 'room:' .. ARGV[4]
local held = redis.call('GET', key)
if held then
  local making, lease = string.match(held, '^(%S+) (%S+)$')
  if not making then
    if held ~= ARGV[6] then return {0, held} end
  elseif making ~= ARGV[5] and making ~= ARGV[6] then
    local node = string.match(making, '^([^/]*)/')
    local current = node and redis.call('GET', lease_key(node))
    -- its maker's process is gone: another process holds the node's lease, or none does
    -- and the node is dead (a lease that lapsed while cut off may be taken again)
    local gone = node and ((current and current ~= lease) or (not current and dead(node)))
    if not gone then return {0, making} end
  end
end
redis.call('SET', key, ARGV[5] .. ' ' .. ARGV[3])
return {1}
"""

#: ARGV[3] token, [4..] pairs of folded room name and making token: after Redis lost its
#: data, a node claims again the names of the live rooms it made, each one nobody claimed
#: meanwhile. Returns how many it claimed, -1 when this node does not hold its lease.
ROOM_REASSERT = PRELUDE + """
if not holds_lease(ARGV[3]) then return -1 end
local claimed = 0
for i = 4, #ARGV, 2 do
  local key = P .. 'room:' .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, ARGV[i + 1] .. ' ' .. ARGV[3])
    claimed = claimed + 1
  end
end
return claimed
"""

#: ARGV[3..] pairs of folded room name and making token. Releases each name that making
#: still holds; returns how many were.
ROOM_RELEASE = PRELUDE + """
local released = 0
for i = 3, #ARGV, 2 do
  local key = P .. 'room:' .. ARGV[i]
  local held = redis.call('GET', key)
  if held and string.match(held, '^(%S+)') == ARGV[i + 1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

#: ARGV[3..] pairs of nick and owner. Releases each nick its owner still holds; returns
#: how many were.
RELEASE = PRELUDE + """
local released = 0
for i = 3, #ARGV, 2 do released = released + release(ARGV[i], ARGV[i + 1]) end
return released
"""

#: ARGV[3] token, [4..] pairs of nick and owner this node holds. Claims each again; returns
#: {1, nicks now held by another live session...}, or {-1} without the lease.
REASSERT = PRELUDE + """
if not holds_lease(ARGV[3]) then return {-1} end
local result = {1}
for i = 4, #ARGV, 2 do
  if take(ARGV[i], ARGV[i + 1]) == 0 then table.insert(result, ARGV[i]) end
end
return result
"""

#: ARGV[3] '1': mark nodes without a lease as lost ('0' during a grace period: only report
#: those already marked); [4] how many of the node ids after it to check as the members
#: are (known before Redis lost its data); [5..] those, then nodes only to report when
#: marked lost already (the caller knows them: one another node reaped is no member any
#: more; one that left cleanly has no mark). Returns {members, dead nodes}.
WATCH = PRELUDE + """
local members = redis.call('SMEMBERS', P .. 'nodes')
local found, seen = {}, {}
local function check(node, may_mark)
  if node == SELF or seen[node] then return end
  seen[node] = true
  if redis.call('EXISTS', lease_key(node)) == 1 then return end
  local lost = P .. 'lost:' .. node
  if may_mark and ARGV[3] == '1' then redis.call('SET', lost, SELF, 'NX') end
  if redis.call('EXISTS', lost) == 1 then table.insert(found, node) end
end
for _, node in ipairs(members) do check(node, true) end
local marking = 5 + tonumber(ARGV[4])
for i = 5, #ARGV do check(ARGV[i], i < marking) end
return {members, found}
"""

#: ARGV[3] the dead node, [4] ms its reap and lost marks are kept. Returns 1 for the one
#: caller that frees its nicks, 0 for everyone else or when the node is not dead.
REAP = PRELUDE + """
local node = ARGV[3]
if node == SELF or not dead(node) then return 0 end
if not redis.call('SET', P .. 'reap:' .. node, SELF, 'NX', 'PX', ARGV[4]) then return 0 end
free_nicks(node)
redis.call('SREM', P .. 'nodes', node)
redis.call('PEXPIRE', P .. 'lost:' .. node, ARGV[4])
return 1
"""

#: ARGV[3] token. Leaves the cluster unless this node was declared dead (then its reapers
#: clean up). Returns 1 when it left.
STOP = PRELUDE + """
local holder = redis.call('GET', lease_key(SELF))
if holder == ARGV[3] or (not holder and redis.call('EXISTS', P .. 'lost:' .. SELF) == 0) then
  free_nicks(SELF)
  redis.call('DEL', lease_key(SELF))
  redis.call('SREM', P .. 'nodes', SELF)
  return 1
end
return 0
"""
