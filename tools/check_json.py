#!/usr/bin/env python3
"""check_json.py SCHEMA [FILE...] - checks siamidx --json documents against docs/json-schema.json.

Each FILE (or standard input) holds one document per line. The bytes must be
strict UTF-8 and each line one JSON object; the object's "kind" picks its
definition ($defs/doc_KIND), and the document must match it exactly: every
required key present, no key the schema does not list, every value of its type.
Implements the part of JSON Schema (draft 2020-12) the schema uses: type,
properties, required, additionalProperties, items, minItems, maxItems, enum,
const, anyOf, oneOf, $ref, minimum, maximum, pattern. No dependencies.
Exit status: 0 all valid, 1 a document failed (each problem printed), 2 usage.
"""
import json
import re
import sys

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def resolve(root, ref):
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def check(root, schema, value, where, problems):
    """Appends to problems every way value fails schema; returns whether it matched."""
    before = len(problems)
    if "$ref" in schema:
        check(root, resolve(root, schema["$ref"]), value, where, problems)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in types):
            problems.append("%s: %r is not %s" % (where, value, " or ".join(types)))
            return False
    if "const" in schema and value != schema["const"]:
        problems.append("%s: %r is not %r" % (where, value, schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        problems.append("%s: %r is not one of %s" % (where, value, schema["enum"]))
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append("%s: %r < %r" % (where, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append("%s: %r > %r" % (where, value, schema["maximum"]))
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append("%s: %r does not match %s" % (where, value, schema["pattern"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = [s for s in schema[key] if check(root, s, value, where, [])]
            if not matches or (key == "oneOf" and len(matches) > 1):
                problems.append("%s: %r matches %d of the %s alternatives" % (where, value, len(matches), key))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                problems.append("%s: lacks the required key %r" % (where, k))
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                check(root, props[k], v, "%s.%s" % (where, k), problems)
            elif extra is False:
                problems.append("%s: key %r is not in the schema" % (where, k))
            elif isinstance(extra, dict):
                check(root, extra, v, "%s.%s" % (where, k), problems)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append("%s: more than %d items" % (where, schema["maxItems"]))
        if "items" in schema:
            for i, v in enumerate(value):
                check(root, schema["items"], v, "%s[%d]" % (where, i), problems)
    return len(problems) == before


def check_document(root, line, name):
    try:
        doc = json.loads(line.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, ValueError) as e:
        return ["%s: not UTF-8 JSON: %s" % (name, e)]
    if not isinstance(doc, dict) or "kind" not in doc:
        return ["%s: not an object with a 'kind'" % name]
    definition = root["$defs"].get("doc_%s" % doc["kind"])
    if definition is None:
        return ["%s: kind %r is not documented" % (name, doc["kind"])]
    problems = []
    check(root, definition, doc, "%s(%s)" % (name, doc["kind"]), problems)
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = json.load(open(argv[1], encoding="utf-8"))
    sources = [(p, open(p, "rb").read()) for p in argv[2:]] or [("stdin", sys.stdin.buffer.read())]
    failed = 0
    for name, data in sources:
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            problems = check_document(root, line, "%s:%d" % (name, n))
            for p in problems:
                print(p)
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
