-- wrk script: POST the 1.5 KB test Patient (testdata/cpis/patient.json).
-- wrk -t2 -c32 -d20s -s testdata/wrk/post-patient.lua http://127.0.0.1:8080/fhir/Patient
-- With authentication on (the default), pass an access token: TOKEN=$(cpis token --role admin --base-url http://127.0.0.1:8080/fhir) wrk ...
if os.getenv("TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN") end
local f = assert(io.open("testdata/cpis/patient.json", "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/fhir+json"

local bad = 0
function response(status, headers, body)
  if status ~= 201 then bad = bad + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("non-201 responses: %d\n", bad))
end
