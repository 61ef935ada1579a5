-- wrk script: one-line orders spread over 200 SKUs named "sku_0" .. "sku_199", which the
-- caller creates first (POST /api/product {"name":"sku N", ...}: the skuCode is derived from
-- the name). Prints p50 and p99 at the end.
--   wrk -t2 -c64 -d5s -s benches/wrk/order.lua http://127.0.0.1:8080/
local n = 0
request = function()
  n = n + 1
  local sku = "sku_" .. (n % 200)
  local body = '{"orderLineItemsDtoList":[{"skuCode":"' .. sku .. '","price":10,"quantity":1}]}'
  return wrk.format("POST", "/api/order", {["content-type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("p50=%.1fms p99=%.1fms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
