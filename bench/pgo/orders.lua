-- `bench/pgo.sh` training load for workflows/order-events.yaml (async):
-- created, cancelled and other events in turn.
local bodies = {
  '{"event":"order.created","id":"O-1","items":[{"sku":"A","qty":2},{"sku":"B","qty":1}]}',
  '{"event":"order.cancelled","id":"O-2"}',
  '{"event":"order.shipped","id":"O-3","items":[]}',
}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, bodies[i % #bodies + 1])
end
