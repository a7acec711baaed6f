#!/usr/bin/env python3
"""Render a {{KEY}} template (the nginx configs of scripts/bench/). Standard library only.

    render.py TEMPLATE OUT KEY=VALUE ... [--nginx-string KEY=FILE ...]

--nginx-string puts FILE's text in an nginx single-quoted string: backslashes and quotes are escaped and each `$`
becomes ${gw_dollar} (a variable the template defines as "$"), because nginx has no escape for `$`.
"""
import argparse
import re
import sys


def nginx_single_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "${gw_dollar}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template")
    parser.add_argument("out")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--nginx-string", action="append", default=[], metavar="KEY=FILE")
    args = parser.parse_args()

    values = {}
    for item in args.values:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected KEY=VALUE, got {item!r}")
        values[key] = value
    for item in args.nginx_string:
        key, sep, path = item.partition("=")
        if not sep:
            parser.error(f"expected KEY=FILE, got {item!r}")
        with open(path, encoding="utf-8") as handle:
            values[key] = nginx_single_quoted(handle.read())

    with open(args.template, encoding="utf-8") as handle:
        template = handle.read()
    missing = sorted(set(re.findall(r"\{\{([A-Z0-9_]+)\}\}", template)) - set(values))
    if missing:
        print(f"render.py: no value for {', '.join(missing)} in {args.template}", file=sys.stderr)
        return 1
    rendered = re.sub(r"\{\{([A-Z0-9_]+)\}\}", lambda m: values[m.group(1)], template)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
