#!/usr/bin/env python3
"""Fails if a .wasm module imports anything from the "env" module.

Native-only code that sneaks into a wasm build (a C library, a libc call) shows up as an import
from "env", which no browser provides. Usage: wasm-imports.py FILE.wasm
"""
import sys


def uleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def name(data, pos):
    length, pos = uleb(data, pos)
    return data[pos:pos + length].decode("utf-8"), pos + length


def imports(data):
    if data[:4] != b"\0asm":
        raise SystemExit("not a wasm module")
    pos = 8
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = uleb(data, pos)
        if section == 2:
            count, p = uleb(data, pos)
            for _ in range(count):
                module, p = name(data, p)
                field, p = name(data, p)
                kind, p = data[p], p + 1
                if kind == 0:
                    _, p = uleb(data, p)
                elif kind == 1:
                    p += 1
                    flags, p = uleb(data, p + 0)
                    _, p = uleb(data, p)
                    if flags & 1:
                        _, p = uleb(data, p)
                elif kind == 2:
                    flags, p = uleb(data, p)
                    _, p = uleb(data, p)
                    if flags & 1:
                        _, p = uleb(data, p)
                elif kind == 3:
                    p += 2
                else:
                    raise SystemExit(f"unknown import kind {kind}")
                yield module, field
        pos += size


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        found = list(imports(f.read()))
    env = [field for module, field in found if module == "env"]
    if env:
        print(f"{path} imports from \"env\": {', '.join(env)}", file=sys.stderr)
        sys.exit(1)
    print(f"{path}: {len(found)} imports, none from \"env\"")


if __name__ == "__main__":
    main()
