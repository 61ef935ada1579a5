-- wrk script: a stream of new products (each a new product and stock actor), for memory under
-- new keys: wrk -t2 -c32 -d30s -s benches/wrk/new_products.lua http://127.0.0.1:8080/
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local tag = math.random(1, 1000000000)
request = function()
  n = n + 1
  local body = '{"name":"p ' .. tag .. ' ' .. n .. '","description":"d","price":10,"quantity":5}'
  return wrk.format("POST", "/api/product", {["content-type"] = "application/json"}, body)
end
