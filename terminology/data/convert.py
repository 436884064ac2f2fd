#!/usr/bin/env python3
"""Writes the embedded CodeSystem and ValueSet JSON of package terminology.

Run once from the repository root with the shared inputs beside it:

    python3 terminology/data/convert.py ../shared

It converts the national XML (nhs-england/) and trims the R4 core JSON
(fhir-r4/core/) to what the terminology service reads: url, version, name,
status, concepts (code, display, nested concepts), compose (include system,
concept, filter) and expansion.contains. SOURCES.md names each input.
The server never reads ../shared at run time; it embeds the output.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

NS = '{http://hl7.org/fhir}'
OUT = os.path.dirname(os.path.abspath(__file__))


def val(el, name):
    c = el.find(NS + name)
    return None if c is None else c.get('value')


def concepts_xml(parent):
    out = []
    for c in parent.findall(NS + 'concept'):
        d = {'code': val(c, 'code')}
        if val(c, 'display') is not None:
            d['display'] = val(c, 'display')
        sub = concepts_xml(c)
        if sub:
            d['concept'] = sub
        out.append(d)
    return out


def head(el, rt):
    d = {'resourceType': rt}
    for k in ('id', 'url', 'version', 'name', 'title', 'status'):
        if val(el, k) is not None:
            d[k] = val(el, k)
    return d


def codesystem_xml(path):
    el = ET.parse(path).getroot()
    d = head(el, 'CodeSystem')
    for k in ('caseSensitive', 'content'):
        if val(el, k) is not None:
            d[k] = val(el, k) == 'true' if k == 'caseSensitive' else val(el, k)
    d['concept'] = concepts_xml(el)
    return d


def valueset_xml(path):
    el = ET.parse(path).getroot()
    d = head(el, 'ValueSet')
    comp = el.find(NS + 'compose')
    inc = []
    for i in comp.findall(NS + 'include'):
        x = {'system': val(i, 'system')}
        cs = concepts_xml(i)
        if cs:
            x['concept'] = cs
        fs = [{'property': val(f, 'property'), 'op': val(f, 'op'), 'value': val(f, 'value')}
              for f in i.findall(NS + 'filter')]
        if fs:
            x['filter'] = fs
        inc.append(x)
    d['compose'] = {'include': inc}
    exp = el.find(NS + 'expansion')
    if exp is not None:
        contains = []
        for c in exp.findall(NS + 'contains'):
            x = {'system': val(c, 'system'), 'code': val(c, 'code')}
            if val(c, 'display') is not None:
                x['display'] = val(c, 'display')
            contains.append(x)
        d['expansion'] = {'timestamp': val(exp, 'timestamp'), 'total': len(contains), 'contains': contains}
    return d


def trim_concepts(cs):
    out = []
    for c in cs:
        d = {'code': c['code']}
        if 'display' in c:
            d['display'] = c['display']
        if 'concept' in c:
            d['concept'] = trim_concepts(c['concept'])
        out.append(d)
    return out


def codesystem_json(path):
    src = json.load(open(path))
    d = {k: src[k] for k in ('resourceType', 'id', 'url', 'version', 'name', 'title', 'status',
                              'caseSensitive', 'content') if k in src}
    d['concept'] = trim_concepts(src.get('concept', []))
    return d


def valueset_json(path):
    src = json.load(open(path))
    d = {k: src[k] for k in ('resourceType', 'id', 'url', 'version', 'name', 'title', 'status') if k in src}
    inc = []
    for i in src['compose']['include']:
        x = {'system': i['system']}
        if 'concept' in i:
            x['concept'] = [{'code': c['code']} for c in i['concept']]
            if i['system'] == 'http://unitsofmeasure.org':
                # UCUM is not held as a CodeSystem: keep the displays.
                x['concept'] = [{'code': c['code'], 'display': c['display']} for c in i['concept']]
        inc.append(x)
    d['compose'] = {'include': inc}
    return d


def write(d, name):
    with open(os.path.join(OUT, name), 'w') as f:
        json.dump(d, f, indent=1, ensure_ascii=False)
        f.write('\n')


def main(shared):
    nhs = os.path.join(shared, 'nhs-england')
    for f in ('cpis-api/CodeSystem-England-FlagCategoryPatient.xml',
              'cpis-api/CodeSystem-UKCore-SpineErrorOrWarningCode.xml',
              'cpis-api/CodeSystem-England-SpineErrorOrWarningCode.xml',
              'ukcore/CodeSystem-UKCore-NHSNumberVerificationStatusEngland.xml',
              'ukcore/CodeSystem-UKCore-NHSNumberVerificationStatusWales.xml'):
        write(codesystem_xml(os.path.join(nhs, f)), os.path.basename(f)[:-4] + '.json')
    for f in ('cpis-api/ValueSet-England-ChildProtectionPlan.xml',
              'cpis-api/ValueSet-England-FlagCategoryPatient.xml',
              'ukcore/ValueSet-UKCore-NHSNumberVerificationStatus.xml',
              'ukcore/ValueSet-UKCore-CareSettingType.xml'):
        write(valueset_xml(os.path.join(nhs, f)), os.path.basename(f)[:-4] + '.json')
    core = os.path.join(shared, 'fhir-r4', 'core')
    for vs in R4_VALUESETS:
        v = valueset_json(os.path.join(core, 'ValueSet-%s.json' % vs))
        write(v, 'ValueSet-%s.json' % vs)
        for i in v['compose']['include']:
            if 'concept' in i and i['system'] == 'http://unitsofmeasure.org':
                continue  # a concept list of UCUM, which is a grammar, not a file
            cs = i['system'].rsplit('/', 1)[1]
            write(codesystem_json(os.path.join(core, 'CodeSystem-%s.json' % cs)), 'CodeSystem-%s.json' % cs)


# The R4 value sets that required bindings of the profiled resources and
# their data types use (each includes whole R4 code systems or concept lists).
R4_VALUESETS = [
    'administrative-gender', 'link-type', 'flag-status', 'request-status', 'care-plan-intent',
    'care-plan-activity-kind', 'care-plan-activity-status', 'care-team-status', 'encounter-status',
    'encounter-location-status', 'event-status', 'request-priority', 'audit-event-action',
    'audit-event-outcome', 'network-type', 'days-of-week', 'identifier-use', 'contact-point-system',
    'contact-point-use', 'name-use', 'address-use', 'address-type',
    # the data types Narrative, Quantity (Duration...), Timing
    'narrative-status', 'quantity-comparator', 'units-of-time', 'event-timing',
]
# Not held: http://hl7.org/fhir/ValueSet/mimetypes (Attachment.contentType),
# which is BCP 13 (any MIME type), a grammar rather than a list of codes.

if __name__ == '__main__':
    main(sys.argv[1])
