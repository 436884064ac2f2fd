-- wrk script: the CP-IS hot lookup, Flag?subject:identifier=nhs-number|X&status=active,
-- on the benchmark data set of server/search_bench_test.go (N children with NHS numbers
-- from the 999 range; about 1% of lookups hit a child with a flag, as in production).
-- wrk -t2 -c32 -d20s -s testdata/wrk/search-flag.lua http://127.0.0.1:8090/fhir
-- Set CHAINED=1 for Flag?patient.identifier=... and N for another data set size. FLOOR=1 requests
-- /healthz?n=<nhs> instead, with the same client-side cost: the floor of the HTTP stack under this load.
-- With authentication on (the default), pass an access token: TOKEN=$(cpis token --role admin --base-url http://127.0.0.1:8090/fhir) wrk ...
if os.getenv("TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN") end
local n = tonumber(os.getenv("N") or "250000")
local chained = os.getenv("CHAINED") == "1"

local function check(base)
  local d, sum = tostring(base), 0
  for i = 1, 9 do sum = sum + tonumber(d:sub(i, i)) * (11 - i) end
  local c = 11 - sum % 11
  if c == 11 then c = 0 end
  if c == 10 then return nil end
  return d .. c
end

-- The i-th number, as benchNHS(i) makes it.
local function nhs(i)
  local base = 999000000 + math.floor(i * 11 / 10)
  while true do
    local s = check(base)
    if s then return s end
    base = base + 1
  end
end

function request()
  local i
  -- Children with no record: numbers past the data set, still in the 999 range.
  if math.random(100) == 1 then i = math.random(0, n - 1) else i = math.random(n, 899999) end
  local v = "https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C" .. nhs(i)
  local path = wrk.path .. "/Flag?subject:identifier=" .. v .. "&status=active"
  if os.getenv("FLOOR") == "1" then path = "/healthz?n=" .. v end
  if chained then path = wrk.path .. "/Flag?patient.identifier=" .. v end
  return wrk.format("GET", path)
end

-- wrk itself reports "Non-2xx or 3xx responses" when there are any.
function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
