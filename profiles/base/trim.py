#!/usr/bin/env python3
"""Writes base/r4.json: the R4 element definitions the snapshot generator merges
profiles onto, trimmed to path, min, max, types (code, targetProfile) and binding
(strength, valueSet) of each element.

Run once from the repository root: python3 profiles/base/trim.py ../shared
Input: ../shared/fhir-r4/core/StructureDefinition-<Type>.json (hl7.fhir.r4.core 4.0.1).
"""
import json
import os
import sys

TYPES = ['Patient', 'Flag', 'CarePlan', 'CareTeam', 'Organization', 'Encounter', 'Communication',
         'AuditEvent', 'PractitionerRole', 'Identifier', 'Reference', 'Period', 'CodeableConcept',
         'Coding', 'ContactPoint', 'HumanName', 'Extension', 'Meta', 'Address']
FHIR_TYPE = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type'


def main(shared):
    out = []
    for t in TYPES:
        sd = json.load(open(os.path.join(shared, 'fhir-r4', 'core', 'StructureDefinition-%s.json' % t)))
        els = []
        for e in sd['snapshot']['element']:
            d = {'path': e['path'], 'min': e['min'], 'max': e['max']}
            types = []
            for ty in e.get('type', []):
                code = ty['code']
                for x in ty.get('extension', []):
                    if x['url'] == FHIR_TYPE:
                        code = x.get('valueUrl') or x.get('valueUri')
                tt = {'code': code}
                if 'targetProfile' in ty:
                    tt['targetProfile'] = ty['targetProfile']
                types.append(tt)
            if types:
                d['type'] = types
            b = e.get('binding')
            if b and 'valueSet' in b:
                d['binding'] = {'strength': b['strength'], 'valueSet': b['valueSet']}
            if 'contentReference' in e:
                d['contentReference'] = e['contentReference']
            els.append(d)
        out.append({'type': t, 'kind': sd['kind'], 'element': els})
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'r4.json'), 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1])
