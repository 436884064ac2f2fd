-- wrk script: POST council uploads as transaction Bundles of 100 entries:
-- 25 children, each a Patient conditional create by NHS number (ifNoneExist),
-- a Flag, a CarePlan and a CareTeam linked by urn:uuid. Every child is new
-- (NHS numbers from the 999 range with a valid Modulus 11 check digit,
-- counting up from START, default 999200000; threads take disjoint ranges).
-- Resources per second = 100 x requests per second.
--   wrk -t4 -c4 -d20s -s testdata/wrk/transaction.lua http://127.0.0.1:8080/fhir
-- With authentication on (the default), pass an access token: TOKEN=$(cpis token --role admin --base-url http://127.0.0.1:8080/fhir) wrk ...
if os.getenv("TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN") end
local counter = 0
local stride = 100000
local base = tonumber(os.getenv("START") or "999200000")
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function nhs()
  while true do
    counter = counter + 1
    local n = base + tid * stride + counter
    local s = tostring(n)
    local sum = 0
    for k = 1, 9 do
      sum = sum + tonumber(s:sub(k, k)) * (11 - k)
    end
    local c = 11 - sum % 11
    if c == 11 then c = 0 end
    if c ~= 10 then return s .. tostring(c) end
  end
end

local sys = "https://fhir.nhs.uk/Id/nhs-number"
local flagCode = '{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]}'

local function child(i, num)
  local u = function(k) return string.format("urn:uuid:00000000-0000-4000-8000-%012d", 4 * i + k) end
  return '{"fullUrl":"' .. u(0) .. '","resource":{"resourceType":"Patient","identifier":[{"system":"' .. sys .. '","value":"' .. num ..
    '"}],"name":[{"family":"Testchild","given":["Alex"]}],"gender":"female","birthDate":"2015-04-01"},' ..
    '"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=' .. sys .. '|' .. num .. '"}},' ..
    '{"fullUrl":"' .. u(1) .. '","resource":{"resourceType":"Flag","status":"active","code":' .. flagCode ..
    ',"category":[{"coding":[{"system":"http://snomed.info/sct","code":"342191000000101"}]}],"subject":{"reference":"' .. u(0) ..
    '"},"period":{"start":"2026-01-15"},"author":{"reference":"Organization/la-1"}},"request":{"method":"POST","url":"Flag"}},' ..
    '{"fullUrl":"' .. u(2) .. '","resource":{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"' .. u(0) ..
    '"},"careTeam":[{"reference":"' .. u(3) .. '"}]},"request":{"method":"POST","url":"CarePlan"}},' ..
    '{"fullUrl":"' .. u(3) .. '","resource":{"resourceType":"CareTeam","status":"active","subject":{"reference":"' .. u(0) ..
    '"}},"request":{"method":"POST","url":"CareTeam"}}'
end

function request()
  local parts = {}
  for i = 0, 24 do
    parts[#parts + 1] = child(i, nhs())
  end
  local body = '{"resourceType":"Bundle","type":"transaction","entry":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal",
    ["Authorization"] = wrk.headers["Authorization"]}, body)
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("non-200 responses: %d; resources/s: %.0f\n", bad,
    100 * (summary.requests - bad) / (summary.duration / 1e6)))
end
