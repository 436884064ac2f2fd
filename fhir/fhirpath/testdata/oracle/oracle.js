// oracle.js evaluates FHIRPath expressions with fhirpath.js (the HL7
// reference implementation, R4 model) for fhir/fhirpath/oracle_test.go.
//
// Input (stdin): {"dir": "<examples folder>", "cases": [{"expr": "...", "files": ["Patient-example.json", ...]}]}
// Output (stdout): one JSON object a line per case and file:
//   {"case": i, "file": "...", "error": "..."} or
//   {"case": i, "file": "...", "types": ["FHIR.HumanName", ...], "values": [...]}
//
// resolve() cannot fetch, so it is replaced by the same stand-in as the Go
// evaluator's: "#id" resolves to a contained resource, any other reference
// to a stub {"resourceType": T, "id": id} typed from the reference or
// Reference.type. hasExtension(url), used by one R4 SearchParameter, is
// added as extension(url).exists().
'use strict';
const fs = require('fs');
const path = require('path');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');
const {ResourceNode} = require('fhirpath/src/types');

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
let current = null; // the resource being evaluated

function resolveRef(v) {
  let ref = '', type = '';
  if (typeof v === 'string') ref = v;
  else if (v && typeof v === 'object') { ref = v.reference || ''; type = v.type || ''; }
  if (ref.startsWith('#')) {
    return (current.contained || []).find(c => c.id === ref.substring(1)) || null;
  }
  let parts = ref.split('/');
  const n = parts.length;
  if (n >= 4 && parts[n - 2] === '_history') parts = parts.slice(0, n - 2);
  let id = '';
  if (parts.length >= 2 && r4.type2Parent[parts[parts.length - 2]] &&
      /^[A-Z]/.test(parts[parts.length - 2]) && isResource(parts[parts.length - 2])) {
    type = parts[parts.length - 2];
    id = parts[parts.length - 1];
  }
  if (!type || !isResource(type)) return null;
  const out = {resourceType: type};
  if (id) out.id = id;
  return out;
}

function isResource(t) {
  for (let p = t; p; p = r4.type2Parent[p]) {
    if (p === 'Resource') return true;
  }
  return false;
}

const userInvocationTable = {
  resolve: {
    fn: function (coll) {
      return coll.map(item => resolveRef(fhirpath.util.valData(item))).filter(x => x)
        .map(r => ResourceNode.makeResNode(this, r, null, r.resourceType, null, r.resourceType));
    },
    arity: {0: []},
  },
  hasExtension: {
    fn: (coll, url) => [coll.some(item => {
      const v = fhirpath.util.valData(item);
      return v && typeof v === 'object' && (v.extension || []).some(e => e.url === url);
    })],
    arity: {1: ['String']},
  },
};

const resources = new Map();
function load(file) {
  if (!resources.has(file)) {
    resources.set(file, JSON.parse(fs.readFileSync(path.join(input.dir, file), 'utf8')));
  }
  return resources.get(file);
}

const out = [];
input.cases.forEach((c, i) => {
  let compiled = null;
  let compileError = null;
  try {
    compiled = fhirpath.compile(c.expr, r4, {resolveInternalTypes: false, userInvocationTable});
  } catch (e) {
    compileError = String(e.message || e);
  }
  for (const file of c.files || []) {
    if (compileError) {
      out.push(JSON.stringify({case: i, file, error: compileError}));
      continue;
    }
    try {
      current = load(file);
      const res = compiled(current, {});
      const types = fhirpath.types(res);
      const values = fhirpath.resolveInternalTypes(res);
      out.push(JSON.stringify({case: i, file, types, values}));
    } catch (e) {
      out.push(JSON.stringify({case: i, file, error: String(e.message || e)}));
    }
  }
});
process.stdout.write(out.join('\n') + '\n');
