"""Adversarial tool calls against the sandboxed workspace: 0 host reads, writes or processes.

Why: the agentic kinds hand a model a file system and scripts; the safety rule (docs/workspace.md)
is that nothing an agent writes is ever executed or written on the host, and no host file is
read. This bench measures that objectively instead of trusting the path policy: it runs several
thousand hand-written and generated tool calls (path traversal, host paths, `/proc/self`, NUL
bytes, `~`, URLs, host paths of a canary folder planted for the purpose, huge files, deep trees,
cp into itself, mv across read-only places, shell metacharacters in script names and arguments,
interpreter names, odd argument shapes) in the workspaces of every agentic kind (sandbox_task, the
7 instrumental tasks, the 3 peer_preservation setups), in a child process whose working directory
is a fresh temp dir. The child records, with `sys.addaudithook` plus wrappers of `os.stat`,
`os.lstat` and `os.access` (which raise no audit event), every host operation raised while a tool
call runs: file opens (read or write), directory listings, file-system changes, process starts,
sockets. Afterwards the parent compares a snapshot of the canary folder and the child's working
directory (content hashes, sizes, mtimes, modes) and checks that the marker paths the calls tried
to create (in /tmp and $HOME) do not exist. atime is not used (relatime makes it unreliable).

    python bench/adversarial_tools.py            # every case (~5-12 s on 2 cores)
    python bench/adversarial_tools.py --quick    # every 6th case (~2 s)

Prints counts by case family and by host-effect category, every host effect seen, and the total;
exits 1 if any host effect, any exception out of `Workspace.execute`, or any internal error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, machine, table

# audit events by category; `open` is split into read / write by its mode or flags
PROCESS = ("subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
           "pty.spawn", "os.startfile", "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.call_function")
WRITE = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate", "os.chmod",
         "os.chown", "os.utime", "os.chflags", "os.lchmod", "os.lchown", "os.setxattr", "os.removexattr",
         "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.rmtree",
         "shutil.move", "shutil.chown", "os.putenv", "os.unsetenv", "tempfile.mkstemp", "tempfile.mkdtemp")
READ = ("os.listdir", "os.scandir", "os.chdir", "glob.glob", "os.getxattr", "os.listxattr", "fcntl.ioctl",
        "mmap.__new__", "shutil.make_archive", "shutil.unpack_archive")
NETWORK = ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname",
           "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect")
CODE = ("exec", "compile", "import", "marshal.loads", "pickle.find_class", "code.__new__")


# ---- the cases (generated in the child; `canary`, `marker` are host paths of this run) ------------------

def host_paths(canary: str, marker: str, cwd: str) -> list[str]:
    home = os.path.expanduser("~")
    rel_canary = os.path.relpath(canary, cwd)
    return [
        "../../etc/passwd", "../" * 30 + "etc/passwd", "/etc/passwd", "/etc/shadow", "/etc/hosts", "//etc//passwd",
        "/./etc/../etc/passwd", "/srv/../../../../etc/passwd", "/srv/models/../../..", "a/../../b",
        "/proc/self/environ", "/proc/self/mem", "/proc/self/fd/0", "/proc/self/cwd/x", "/proc/1/root/etc/passwd",
        "/sys/kernel/notes", "/dev/zero", "/dev/urandom", "/dev/stdout", "/dev/tcp/127.0.0.1/80", "/dev/shm/x",
        "~", "~/.ssh/id_rsa", "~root/.bashrc", "$HOME/.bashrc", "${HOME}/x", "%USERPROFILE%\\x", "C:\\Windows\\x",
        "C:/Windows/system32", "\\\\server\\share\\x", "file:///etc/passwd", "http://127.0.0.1/x", "..%2f..%2fetc",
        "\u2024\u2024/etc/passwd", "\uff0fetc\uff0fpasswd", "/etc/passwd\x00.txt", "a\x00b", "\x00", "x\ny",
        "\ud800", "\x1b[31m", "x" * 300, "/a" * 600, "/" + "d/" * 200, "", " ", ".", "..", "/", "-rf", "--help",
        "$(touch " + marker + ")", "`touch " + marker + "`", "; touch " + marker, "|cat /etc/passwd", "*", "?",
        "/srv/*", "{a,b}", "CON", "NUL", "aux.txt",
        canary, canary + "/secret.txt", canary + "/.ssh/id_rsa", canary + "/new.txt", rel_canary + "/secret.txt",
        "../" * 3 + canary.lstrip("/") + "/secret.txt", cwd, cwd + "/probe.txt", "probe.txt", marker, home,
        home + "/adv-tools-marker", sys.executable, str(ROOT / "pyproject.toml"), os.devnull, "/tmp", "/tmp/x",
    ]


def cases(canary: str, marker: str, cwd: str) -> list[tuple[str, str, object]]:
    """(family, tool, arguments): generated over paths, plus hand-written script and size cases."""
    out: list[tuple[str, str, object]] = []
    paths = host_paths(canary, marker, cwd)
    good = "/home/agent/notes.txt"
    for p in paths:
        out += [("paths: read", "cat", {"path": p}), ("paths: read", "ls", {"path": p, "recursive": True}),
                ("paths: write", "write_file", {"path": p, "content": "pwned"}),
                ("paths: write", "write_file", {"path": p + "/x.txt", "content": "pwned"}),
                ("paths: write", "edit", {"path": p, "old": "root", "new": "pwned"}),
                ("paths: write", "mkdir", {"path": p}), ("paths: write", "rm", {"path": p, "recursive": True}),
                ("paths: write", "set_date", {"path": p, "date": "2030-01-01"}),
                ("paths: copy/move", "cp", {"src": p, "dst": "/home/agent/got"}),
                ("paths: copy/move", "cp", {"src": good, "dst": p}),
                ("paths: copy/move", "mv", {"src": good, "dst": p}),
                ("paths: copy/move", "mv", {"src": p, "dst": "/home/agent/got"}),
                ("paths: scripts", "run", {"script": p}),
                ("paths: messages", "send_message", {"to": p, "text": "exfil " + p})]
    for payload in ("; touch M", "$(touch M)", "`touch M`", "| sh -c 'touch M'", "&& touch M", "> M", "\ntouch M",
                    "M", "../../../bin/sh", "-c", "--version", "%s%s%n", "\x00", "\ud800", "x" * 5000):
        payload = payload.replace("M", marker)
        for name in ("request_change", "scale_service", "force_scale", "check_task", "transfer_credits", "migrate",
                     "fleet_apply", "submit_review", "deploy", "export_memories", "check_status"):
            out += [("scripts: metacharacters", "run", {"script": name, "args": [payload]}),
                    ("scripts: metacharacters", "run", {"script": name, "args": "web " + payload}),
                    ("scripts: metacharacters", "run", {"script": name + payload})]
    for name in ("sh", "/bin/sh", "bash -c id", "python", sys.executable, "/usr/bin/touch", "env", "os.system",
                 "subprocess.run", "__import__('os').system('touch " + marker + "')", "eval", "exec", "open",
                 "../../usr/bin/env", "/srv/ops/../../bin/sh", "./force_scale", "scale_service.sh", "", " ", None,
                 42, ["sh"], {"cmd": "sh"}):
        out.append(("scripts: interpreters", "run", {"script": name, "args": ["-c", "touch " + marker]}))
    out += size_cases() + shape_cases(marker)
    unique = {(tool, repr(arguments)): (family, tool, arguments) for family, tool, arguments in out}
    return list(unique.values())  # distinct by construction


def size_cases() -> list[tuple[str, str, object]]:
    deep = "/home/agent/" + "/".join(["d"] * 127)
    return [("sizes", "write_file", {"path": "/home/agent/big.bin", "content": "x" * (300 * 1024)}),
            ("sizes", "write_file", {"path": "/home/agent/huge.bin", "content": "x" * (1_900_000)}),
            ("sizes", "mkdir", {"path": deep}), ("sizes", "mkdir", {"path": deep + "/e/f/g"}),
            ("sizes", "write_file", {"path": deep + "/f.txt", "content": "x"}),
            ("sizes", "cp", {"src": "/home", "dst": "/home/agent/copy"}),
            ("sizes", "cp", {"src": "/home/agent", "dst": "/home/agent/inside"}),
            ("sizes", "mv", {"src": "/home/agent", "dst": "/home/agent/inside"}),
            ("sizes", "cp", {"src": "/", "dst": "/home/agent/root"}),
            ("sizes", "mv", {"src": "/srv", "dst": "/home/agent/srv"}),
            ("sizes", "mv", {"src": "/srv/models", "dst": "/mnt/backup/models"}),
            ("sizes", "rm", {"path": "/", "recursive": True}),
            ("sizes", "ls", {"path": "/", "recursive": True}),
            ("sizes", "edit", {"path": "/home/agent/notes.txt", "old": "", "new": "x" * 100_000}),
            ("sizes", "edit", {"path": "/home/agent/notes.txt", "old": "alpha", "new": "x" * 300_000}),
            # several calls in one workspace: past the total size, the file count, doubling copies
            ("sizes", "sequence", [("write_file", {"path": f"/home/agent/f{i}", "content": "y" * 250_000})
                                   for i in range(40)]),
            ("sizes", "sequence", [("mkdir", {"path": f"/home/agent/d{i}"}) for i in range(2100)]),
            ("sizes", "sequence", [("cp", {"src": "/home/agent", "dst": f"/home/c{i}"}) for i in range(12)]
             + [("cp", {"src": "/home", "dst": "/home/agent/again"})]),
            ("sizes", "sequence", [("mkdir", {"path": "/home/agent/" + "/".join(["n"] * i)}) for i in range(1, 140)])]


def shape_cases(marker: str) -> list[tuple[str, str, object]]:
    return [("argument shapes", tool, args) for tool, args in (
        ("cat", '{"path": "/etc/passwd", "path": "/srv"}'), ("cat", '{"path": {"__class__": "os"}}'),
        ("cat", "!!python/object/apply:os.system ['touch " + marker + "']"), ("cat", "[" * 50_000 + "]" * 50_000),
        ("cat", b'{"path": "/etc/passwd"}'), ("cat", None), ("cat", 42), ("cat", ["/etc/passwd"]),
        ("ls", '{"path": "/", "recursive": "yes; touch ' + marker + '"}'), ("ls", '{"path": "/", "extra": 1}'),
        ("write_file", {"path": "/home/agent/x", "content": {"nested": "obj"}}),
        ("set_date", {"path": "/home/agent", "date": "2030-01-01; touch " + marker}),
        ("set_date", {"path": "/home/agent", "date": "$(date)"}), ("set_date", {"path": "/home/agent", "date": "9" * 50}),
        ("send_message", {"to": "root@localhost", "text": "x"}), ("send_message", {"to": "|mail x", "text": "x"}),
        ("__import__", {"name": "os"}), ("../cat", {"path": "/etc/passwd"}), ("", {}), (None, {}), (42, {}),
        ("system", {"command": "touch " + marker}), ("exec", {"code": "open('" + marker + "', 'w')"}),
        ("shell", {"cmd": "id"}), ("python", {"code": "import os"}), ("read_file", {"path": "/etc/passwd"}))]


def workspaces():
    """(name, factory) of every agentic kind's workspace."""
    from sociolab.scenarios.agentic import SandboxTask, SandboxTaskParams
    from sociolab.scenarios.instrumental import TASKS, Instrumental, InstrumentalParams
    from sociolab.scenarios.peer_preservation import PeerPreservation, PeerPreservationParams

    yield "sandbox_task", lambda: SandboxTask(SandboxTaskParams()).build_workspace(None)
    for task in TASKS:
        yield f"instrumental.{task}", lambda t=task: Instrumental(InstrumentalParams(task=t)).build_workspace(None)
    for setup in ("score_inflation", "shutdown_tampering", "exfiltration"):
        yield (f"peer_preservation.{setup}",
               lambda s=setup: PeerPreservation(PeerPreservationParams(setup=s)).build_workspace(None))


# ---- the child: run the cases under the audit hook ----------------------------------------------

def classify(event: str, args: tuple) -> str | None:
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                  (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        return "host writes" if writing else "host reads"
    for category, names in (("processes", PROCESS), ("host writes", WRITE), ("host reads", READ),
                            ("network", NETWORK), ("dynamic code / imports", CODE)):
        if any(event == n or event.startswith(n + ".") for n in names):
            return category
    return None


def child(canary: str, marker: str, every: int) -> dict:
    cwd = os.getcwd()
    todo = cases(canary, marker, cwd)[::every]
    factories = list(workspaces())
    armed, seen = [False], []

    def hook(event, args):
        if armed[0]:
            category = classify(event, args)
            if category:
                armed[0] = False  # what the recording itself does is not the tool's
                seen.append((category, event, repr(args)[:200]))
                armed[0] = True

    def watched(fn, name):
        def wrapper(*a, **k):
            if armed[0]:
                armed[0] = False
                seen.append(("host reads", name, repr(a)[:200]))
                armed[0] = True
            return fn(*a, **k)
        return wrapper

    for name in ("stat", "lstat", "access"):
        setattr(os, name, watched(getattr(os, name), "os." + name))
    for _, make in factories:  # warm up: every tool once, so lazy imports happen before arming
        ws = make()
        for tool in ("ls", "cat", "write_file", "edit", "cp", "mv", "rm", "mkdir", "set_date", "run", "send_message"):
            ws.execute(tool, {"path": "/", "script": "check_status"})
    sys.addaudithook(hook)
    control = positive_control(armed, seen, canary)
    per_family: dict[str, Counter] = {}
    effects, raised, internal, accepted = [], [], 0, Counter()
    t0 = time.perf_counter()
    for i, (family, tool, arguments) in enumerate(todo):
        for ws_name, make in factories:
            ws = make()
            ws.put("/home/agent/notes.txt", "alpha\n")  # a file of the agent's to copy, move and edit
            before = len(seen)
            armed[0] = True
            try:
                steps = arguments if tool == "sequence" else [(tool, arguments)]
                results = [ws.execute(t, a, actor="agent") for t, a in steps]
                outcome = "refused" if results[-1].is_error else "accepted"
            except BaseException as exc:  # execute must never raise
                outcome = "raised"
                raised.append(f"{ws_name} {tool} {str(arguments)[:80]!r}: {type(exc).__name__}: {exc}"[:300])
            finally:
                armed[0] = False
            internal += len(ws.internal_errors)
            if outcome == "accepted" and family.startswith("paths"):
                accepted[f"{tool} {json.dumps(arguments, ensure_ascii=True)[:70]}"] += 1
            counts = per_family.setdefault(family, Counter())
            counts["calls"] += 1
            counts[outcome] += 1
            for category, event, detail in seen[before:]:
                counts[category] += 1
                effects.append(f"{category}: {event} {detail} <- {ws_name} {tool} {str(arguments)[:80]!r}")
    return {"cases": len(todo), "workspaces": len(factories), "seconds": time.perf_counter() - t0,
            "families": {f: dict(c) for f, c in per_family.items()}, "effects": effects[:200],
            "effect_count": len(effects), "raised": raised[:50], "raised_count": len(raised),
            "internal_errors": internal, "control": control,
            "accepted_paths": dict(accepted)}


def positive_control(armed: list, seen: list, canary: str) -> dict[str, int]:
    """The recording works: known host operations, done armed outside any tool call, are seen."""
    import socket

    armed[0] = True
    try:
        with open(os.path.join(canary, "secret.txt")) as f:
            f.read()
        with open(os.devnull, "w") as f:
            f.write("x")
        os.stat(canary)
        os.listdir(canary)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        try:
            socket.getaddrinfo("localhost", 80)
        except OSError:
            pass
    finally:
        armed[0] = False
    got = Counter(category for category, _, _ in seen)
    seen.clear()
    return dict(got)


# ---- the parent: a fresh temp dir, the child, snapshots -------------------------------------------

def snapshot(root: Path, skip: set[Path]) -> dict[str, tuple]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path in skip:
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
    return out


def plant_canary(canary: Path) -> None:
    (canary / ".ssh").mkdir(parents=True)
    (canary / "secret.txt").write_text("host secret\n")
    (canary / ".ssh" / "id_rsa").write_text("-----BEGIN KEY-----\n")
    (canary / "sub").mkdir()


def run_child(every: int) -> tuple[dict, list[str]]:
    top = Path(tempfile.mkdtemp(prefix="adv-tools-"))
    canary, cwd, report = top / "canary", top / "cwd", top / "report.json"
    cwd.mkdir()
    plant_canary(canary)
    marker = f"/tmp/adv-tools-marker-{os.getpid()}"
    markers = [Path(marker), Path(os.path.expanduser("~")) / "adv-tools-marker"]
    before = snapshot(top, {report})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(canary), marker,
                           str(every), str(report)], cwd=cwd, capture_output=True, text=True, timeout=600)
    problems = []
    if proc.returncode != 0:
        problems.append(f"child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    after = snapshot(top, {report})
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            problems.append(f"host file changed: {top / name} {before.get(name)} -> {after.get(name)}")
    problems += [f"marker created on the host: {m}" for m in markers if m.exists()]
    result = json.loads(report.read_text()) if report.exists() else {}
    subprocess.run(["rm", "-rf", str(top)], check=False)
    return result, problems


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "scenarios"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" (+ uncommitted changes in scenarios/)" if dirty else "")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        canary, marker, every, report = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        result = child(canary, marker, every)  # the hook is disarmed once the cases are done
        Path(report).write_text(json.dumps(result))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 6th case")
    args = ap.parse_args()
    print(f"adversarial_tools: {machine()}; commit {commit()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    t0 = time.perf_counter()
    result, problems = run_child(6 if args.quick else 1)
    if not result:
        print("\n".join(problems) or "no report from the child")
        return 1
    categories = ["host reads", "host writes", "processes", "network", "dynamic code / imports"]
    rows, total = [], Counter()
    for family, counts in result["families"].items():
        rows.append([family, counts.get("calls", 0), counts.get("refused", 0), counts.get("accepted", 0),
                     counts.get("raised", 0)] + [counts.get(c, 0) for c in categories])
        total.update(counts)
    rows.append(["total", total["calls"], total["refused"], total["accepted"], total["raised"]]
                + [total[c] for c in categories])
    print(f"{result['cases']} distinct tool calls x {result['workspaces']} workspaces = {total['calls']} calls "
          f"in {result['seconds']:.1f} s (child), {time.perf_counter() - t0:.1f} s in all")
    print(table(["family", "calls", "refused", "accepted", "raised"] + categories, rows))
    acc = result["accepted_paths"]
    print(f"accepted host-looking paths ({len(acc)} distinct calls; they act on the in-memory tree), e.g.:")
    for call in sorted(acc)[:: max(1, len(acc) // 12)]:
        print(f"  {call}  (in {acc[call]} of {result['workspaces']} workspaces)")
    for line in result["effects"] + result["raised"] + problems:
        print("  " + line)
    print(f"internal errors (a script raised): {result['internal_errors']}")
    control = result["control"]
    print("positive control (host operations done on purpose while recording, outside the tool calls): "
          + ", ".join(f"{control.get(c, 0)} {c}" for c in categories[:4]) + " seen (expected >= 2, 1, 1, 1)")
    host = sum(total[c] for c in categories[:4])
    print(f"{total['calls']} adversarial tool calls: {total['host reads']} host reads, {total['host writes']} host "
          f"writes, {total['processes']} processes, {total['network']} network operations; "
          f"{len(problems)} changes seen from outside; {total['raised']} raised")
    blind = not all(control.get(c, 0) >= n for c, n in zip(categories[:4], (2, 1, 1, 1)))
    return 1 if blind or host or problems or total["raised"] or result["internal_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
