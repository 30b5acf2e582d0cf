"""The sandbox's cost per tool call (target, issue 5: under 1 ms per call).

Baseline measured in the same run: parsing the same JSON arguments and touching a plain dict,
i.e. the least any in-memory tool implementation must do.
"""

from __future__ import annotations

import json
import time

from _common import machine, table, verdict  # noqa: E402

from sociolab.scenarios.sandbox import Workspace

CALLS = [("write_file", '{"path": "/home/agent/f.txt", "content": "' + "x" * 2000 + '"}'),
         ("cat", '{"path": "/home/agent/f.txt"}'), ("ls", '{"path": "/home/agent"}'),
         ("edit", '{"path": "/home/agent/f.txt", "old": "xxx", "new": "xxx"}'),
         ("run", '{"script": "noop", "args": ["a", "b"]}'), ("cp", '{"src": "/home/agent/f.txt", "dst": "/home/agent/g.txt"}'),
         ("set_date", '{"path": "/home/agent/g.txt", "date": "2024-01-01"}'), ("rm", '{"path": "/home/agent/g.txt"}'),
         ("cat", '{"path": "../../etc/passwd"}')]
N = 2000


def main() -> None:
    print(f"sandbox: {machine()}")
    ws = Workspace(root_writable=True)
    ws.mkdir("/home/agent")
    ws.register_script("noop", lambda w, a: "ok")
    t0 = time.perf_counter()
    for _ in range(N):
        for tool, args in CALLS:
            ws.execute(tool, args)
    sandbox = (time.perf_counter() - t0) / (N * len(CALLS))
    plain: dict[str, str] = {}
    t0 = time.perf_counter()
    for _ in range(N):
        for tool, args in CALLS:
            parsed = json.loads(args)
            plain[parsed.get("path", tool)] = parsed.get("content", "")
    floor = (time.perf_counter() - t0) / (N * len(CALLS))
    print(table(["path", "µs per call"], [["Workspace.execute (validated, logged, path-checked)", sandbox * 1e6],
                                           ["json.loads + dict write (floor)", floor * 1e6]]))
    print(f"sandbox / floor: {sandbox / floor:.1f}x")
    print(verdict("< 1 ms per tool call", f"{sandbox * 1e6:.1f} µs", sandbox < 1e-3))


if __name__ == "__main__":
    main()
