-- `bench/pgo.sh` training load for workflows/payment-callback.yaml (sync,
-- Basic auth): paid callbacks, with some unpaid, malformed
-- and unauthorized ones among them.
local auth = "Basic c2hvcDpwZ28tdHJhaW5pbmc=" -- shop:pgo-training
-- Most are paid; one in eight each is unpaid (400) or malformed (400).
local bodies = {
  '{"order":{"id":"A-1001","amount":99.5},"status":"SUCCESS"}',
  '{"order":{"id":"A-1002","amount":12},"status":"SUCCESS"}',
  '{"order":{"id":"A-1003"},"status":"SUCCESS"}',
  '{"order":{"id":"A-1004","amount":7.25},"status":"SUCCESS"}',
  '{"order":{"id":"A-1005","amount":1},"status":"SUCCESS"}',
  '{"order":{"id":"A-1006","amount":300},"status":"SUCCESS"}',
  '{"order":{"id":"A-1007","amount":12},"status":"PENDING"}',
  '{"status":"SUCCESS"}',
}
local i = 0
request = function()
  i = i + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = auth,
    ["X-Request-Id"] = "pgo-" .. i,
  }
  if i % 50 == 0 then headers["Authorization"] = "Basic d3Jvbmc6d3Jvbmc=" end
  return wrk.format("POST", nil, headers, bodies[i % #bodies + 1])
end
