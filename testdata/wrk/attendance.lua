-- wrk script: the CP-IS attendance path. POST an Encounter (A&E attendance,
-- subject by NHS number) by an unscheduled-care clinician for a child with a
-- current CP-IS record: the server writes the Encounter, a notification
-- (Communication) to the child's council and the audit record in one
-- durable transaction, and answers 201 with a Warning header.
--
-- Load flagged children first with transaction.lua on ONE thread (so that
-- its NHS numbers are START+1, START+2, ... with a valid check digit):
--   START=999300000 TOKEN=$ADMIN wrk -t1 -c4 -d20s -s testdata/wrk/transaction.lua http://127.0.0.1:18501/fhir
-- then (COUNT = children loaded, 25 per Bundle; TOKEN = a clinician-unscheduled
-- token whose --ods is SITE, default RXX01):
--   START=999300000 COUNT=25000 TOKEN=$CL wrk -t2 -c32 -d10s -s testdata/wrk/attendance.lua http://127.0.0.1:18501/fhir
-- Each (child, site) pair notifies once in 24 hours: keep the run shorter
-- than COUNT attendances to measure notifying attendances only.
local base = tonumber(os.getenv("START") or "999300000")
local count = tonumber(os.getenv("COUNT") or "25000")
local token = os.getenv("TOKEN") or ""
local site = os.getenv("SITE") or "RXX01"
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local nums = nil
local function numbers()
  local out = {}
  local n = base
  while #out < count do
    n = n + 1
    local s = tostring(n)
    local sum = 0
    for k = 1, 9 do
      sum = sum + tonumber(s:sub(k, k)) * (11 - k)
    end
    local c = 11 - sum % 11
    if c == 11 then c = 0 end
    if c ~= 10 then out[#out + 1] = s .. tostring(c) end
  end
  return out
end

-- Threads interleave: thread t of THREADS (default 2, as -t) takes the
-- children t, t+THREADS, t+2*THREADS, ...
local step = tonumber(os.getenv("THREADS") or "2")
local i = 0
function request()
  if nums == nil then
    nums = numbers()
    i = tid
  end
  local num = nums[(i % count) + 1]
  i = i + step
  local body = '{"resourceType":"Encounter","status":"arrived",' ..
    '"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},' ..
    '"serviceType":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-CareSettingType","code":"1060971000000108"}],"text":"Emergency department"},' ..
    '"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"' .. num .. '"}},' ..
    '"period":{"start":"2026-12-01T10:00:00Z"},' ..
    '"serviceProvider":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"' .. site .. '"},"display":"Test Hospital"}}'
  return wrk.format("POST", wrk.path .. "/Encounter", {["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal",
    ["Authorization"] = "Bearer " .. token}, body)
end

-- wrk counts non-2xx answers itself; a 201 without the CP-IS warning (the
-- child was not found flagged) is reported once per thread.
local warned = false
function response(status, headers, body)
  if status == 201 and headers["Warning"] == nil and not warned then
    warned = true
    io.stderr:write("a 201 without the CP-IS Warning header: is the child loaded (START, COUNT)?\n")
  end
end
