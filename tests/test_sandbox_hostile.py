"""The hostile suite: each program attacks the harness; each test states the expected
outcome and then checks the harness is alive, nothing of the run survived, files outside
the sandbox are untouched and planted secrets stayed secret.

Safety on a real machine (CI runs as root): every target is something the test created
(a temp dir made world-writable so that only the sandbox, not file permissions, protects
it; a listener on 127.0.0.1; a decoy ``sleep`` process; a secret in the environment).
``kill(-1, SIGKILL)`` is only attempted by a program that sees itself as pid 1, i.e. inside
a fresh pid namespace, so a failed namespace can never turn it loose on the machine.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prm_plugin.sandbox import Sandbox, check_solution, launcher, proctree, run_python

FAST = {"timeout_s": 0.5, "wall_factor": 4.0, "wall_slack_s": 1.0}  # wall backstop 3 s: CI cores are shared


@pytest.fixture(scope="module", params=["auto", "basic"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(request.param) as sandbox:
        sandbox.start()
        yield sandbox


@pytest.fixture(scope="module")
def full_box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        if sandbox.level != "full":
            pytest.skip(f"namespaces unavailable here: {sandbox.layers}")
        yield sandbox


@pytest.fixture
def exposed_dir() -> Iterator[Path]:
    """A temp dir anyone may write: only the sandbox stands between it and the program."""
    path = Path(tempfile.mkdtemp(prefix="prm-hostile-"))
    path.chmod(0o777)
    victim = path / "victim.txt"
    victim.write_text("original")
    victim.chmod(0o666)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _host_processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def _slot_processes() -> list[int]:
    if os.geteuid() != 0:
        return []
    base = launcher.uid_slots().base
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError):
            continue
        if base <= uid < base + 256:
            out.append(int(pid))
    return out


def assert_contained(sandbox: Sandbox, token: str | None = None) -> None:
    """The harness is alive and nothing of the finished runs is left anywhere."""
    assert sandbox.zygote.alive()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (
        proctree.children(sandbox.zygote.proc.pid) or _slot_processes() or (token and _host_processes_with(token))
    ):
        time.sleep(0.05)
    assert proctree.children(sandbox.zygote.proc.pid) == [], "a sandbox process outlived its run"
    assert _slot_processes() == [], "a process of a sandbox uid survived"
    if token:
        assert _host_processes_with(token) == [], "a daemon escaped"
    alive = run_python("print(6 * 7)", sandbox=sandbox)
    assert alive.stdout == "42\n", alive


# ---- time --------------------------------------------------------------------------


def test_infinite_loop_times_out(box: Sandbox) -> None:
    res = run_python("while True:\n    pass", sandbox=box, **FAST)
    assert res.status == "timeout"
    assert res.cpu_seconds >= 0.5 or "wall-clock" in res.reason  # a starved machine hits the backstop first
    assert_contained(box)


def test_busy_loop_ignoring_signals_is_still_stopped(box: Sandbox) -> None:
    code = "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):\n" \
           "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass"
    res = run_python(code, sandbox=box, **FAST)
    assert res.status == "timeout" and res.returncode == -9
    assert_contained(box)


def test_sleeping_forever_hits_the_wall_clock_backstop(box: Sandbox) -> None:
    res = run_python("import time\ntime.sleep(600)", sandbox=box, **FAST)
    assert res.status == "timeout" and "wall-clock" in res.reason and res.seconds < 8
    assert_contained(box)


# ---- processes and memory ------------------------------------------------------------


def test_fork_bomb_is_contained(box: Sandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    start = time.monotonic()
    res = run_python(code, sandbox=box, max_processes=16, **FAST)
    assert res.status in ("timeout", "killed") and time.monotonic() - start < 15
    assert_contained(box)


def test_thread_bomb_is_contained(box: Sandbox) -> None:
    code = ("import threading, time\nwhile True:\n    try:\n"
            "        threading.Thread(target=time.sleep, args=(600,)).start()\n    except RuntimeError:\n        pass")
    res = run_python(code, sandbox=box, max_processes=16, **FAST)
    assert res.status in ("timeout", "killed")
    assert_contained(box)


def test_memory_bomb_is_a_memory_failure(box: Sandbox) -> None:
    res = run_python("x = []\nwhile True:\n    x.append(b'x' * 10**7)", memory_mb=128, sandbox=box, **FAST)
    assert res.status == "memory"
    assert_contained(box)


def test_fork_then_allocate_is_caught_on_the_whole_tree(box: Sandbox) -> None:
    # Each child stays under the per-process limit; together they do not.
    code = ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        x = b'x' * (60 * 2**20)\n"
            "        time.sleep(600)\ntime.sleep(600)")
    res = run_python(code, memory_mb=128, sandbox=box, **FAST)
    assert res.status == "memory" and "resident memory" in res.reason
    assert_contained(box)


def test_deep_recursion_fails_cleanly(box: Sandbox) -> None:
    code = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)"
    res = run_python(code, memory_mb=256, sandbox=box, **FAST)
    assert res.status in ("runtime_error", "memory", "timeout")
    assert_contained(box)


def test_a_gigabyte_of_stdout_is_cut_off_while_streaming(box: Sandbox) -> None:
    code = "import os\nblock = b'y' * 2**20\nfor _ in range(1024):\n    os.write(1, block)"
    start = time.monotonic()
    res = run_python(code, sandbox=box, max_output_bytes=2**20, timeout_s=10)
    assert res.status == "output_limit" and len(res.stdout) == 2**20
    assert time.monotonic() - start < 10
    assert_contained(box)


# ---- files -----------------------------------------------------------------------------


def test_writing_and_deleting_outside_tmp_fails(box: Sandbox, exposed_dir: Path) -> None:
    victim = exposed_dir / "victim.txt"
    code = f"""
import os, shutil
attempts = [
    lambda: os.remove({str(victim)!r}),
    lambda: open({str(victim)!r}, 'w').write('pwned'),
    lambda: open({str(exposed_dir / 'new.txt')!r}, 'w').write('pwned'),
    lambda: shutil.rmtree({str(exposed_dir)!r}),
    lambda: open('/etc/passwd', 'a').write('pwned'),
    lambda: open('/usr/prm-hostile', 'w'),
]
for attempt in attempts:
    try:
        attempt()
        print('SUCCEEDED')
    except OSError as exc:
        print('refused', exc.errno)
"""
    res = run_python(code, sandbox=box)
    assert res.status == "ok" and "SUCCEEDED" not in res.stdout and res.stdout.count("refused") == 6
    assert victim.read_text() == "original" and sorted(p.name for p in exposed_dir.iterdir()) == ["victim.txt"]
    assert_contained(box)


def test_filling_the_disk_stops_at_the_tmp_cap(full_box: Sandbox) -> None:
    code = ("import os\nf = open('/tmp/fill', 'wb')\ntry:\n    while True:\n        f.write(b'z' * 2**20)\n        f.flush()\n"
            "except OSError as exc:\n    print(exc.errno, os.path.getsize('/tmp/fill') // 2**20)")
    res = run_python(code, tmp_mb=16, sandbox=full_box)
    errno_, mib = map(int, res.stdout.split())
    assert res.status == "ok" and errno_ == 28 and mib <= 16  # ENOSPC inside the sandbox's own tmpfs
    assert_contained(full_box)


def test_chdir_and_local_module_hijack_change_nothing(box: Sandbox) -> None:
    evil = "raise SystemExit('hijacked')"
    code = f"""
import os, sys, importlib
os.chdir(os.path.dirname(os.path.abspath(__file__)))
for name in ('json', 'codec', 'runner', 'math', 'os', '_child'):
    open(name + '.py', 'w').write({evil!r})
sys.path.insert(0, os.getcwd())
importlib.invalidate_caches()
def f(x):
    return x + 1
"""
    v = check_solution(code, [([1], 3)], entry_point="f", sandbox=box)
    assert not v.passed and v.per_test[0].status == "wrong_answer" and v.per_test[0].output == 2
    listing = run_python("import os, json\nprint(sorted(os.listdir('.')), json.dumps(1))", sandbox=box)
    # a fresh scratch dir for every program (besides main.py it may only hold the mount
    # points of read-only host paths that live under /tmp, e.g. a virtualenv there)
    names, dumped = listing.stdout.rsplit(" ", 1)
    assert dumped == "1\n" and "'main.py'" in names
    assert not any(f"'{name}.py'" in names for name in ("json", "codec", "runner", "math", "os", "_child"))
    assert_contained(box)


def test_the_answer_file_is_out_of_reach(box: Sandbox, exposed_dir: Path) -> None:
    answers = exposed_dir / "answers.json"
    token = secrets.token_hex(8)
    answers.write_text(f'{{"0": "{token}"}}')
    answers.chmod(0o644)
    finder = f"""
import json, os
def find():
    try:
        return json.load(open({str(answers)!r}))
    except OSError:
        pass
    for root, dirs, files in os.walk('/'):
        dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'usr', 'dev')]
        if 'answers.json' in files:
            return json.load(open(os.path.join(root, 'answers.json')))
    return {{}}
def f(i):
    return find().get(str(i), 'not found')
print(f(0))
"""
    res = run_python(finder, sandbox=box, timeout_s=5)
    assert res.stdout == "not found\n" and token not in res.stderr
    v = check_solution(finder, [([0], token)], entry_point="f", sandbox=box)
    assert not v.passed and v.per_test[0].output == "not found"
    assert_contained(box)


# ---- secrets, network, processes ---------------------------------------------------------


def test_a_secret_in_the_parents_environment_stays_secret(monkeypatch: pytest.MonkeyPatch, box: Sandbox) -> None:
    token = "prm-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("PRM_HOSTILE_SECRET", token)
    code = f"""
import os
found = [k + '=' + v for k, v in os.environ.items()]
for path in ['/proc/self/environ', '/proc/1/environ', '/proc/{os.getpid()}/environ', '/proc/{os.getppid()}/environ']:
    try:
        found.append(open(path, 'rb').read().decode(errors='replace'))
    except OSError as exc:
        found.append(f'{{path}}: {{exc.errno}}')
try:
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                found.append(open(f'/proc/{{pid}}/environ', 'rb').read().decode(errors='replace'))
            except OSError:
                pass
except OSError:
    pass
print('\\n'.join(found))
"""
    with Sandbox(box.isolation) as fresh:  # its zygote starts with the secret in our environment
        res = run_python(code, sandbox=fresh)
        assert res.status == "ok" and token not in res.stdout + res.stderr
        assert "PRM_HOSTILE_SECRET" not in res.stdout
        assert_contained(fresh)


def test_connecting_to_the_parents_listeners_fails(box: Sandbox, exposed_dir: Path) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    tcp.setblocking(False)
    unix_path = str(exposed_dir / "harness.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    unix.listen()
    unix.setblocking(False)
    code = f"""
import socket
for family, addr in ((socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]})), (socket.AF_UNIX, {unix_path!r})):
    try:
        s = socket.socket(family)
        s.settimeout(1)
        s.connect(addr)
        s.sendall(b'pwned')
        print('CONNECTED')
    except OSError as exc:
        print('refused', type(exc).__name__)
a, b = socket.socketpair()  # local pairs still work (multiprocessing needs them)
a.sendall(b'ok')
print(b.recv(2).decode())
"""
    try:
        res = run_python(code, sandbox=box)
        assert "CONNECTED" not in res.stdout and res.stdout.count("refused") == 2 and res.stdout.endswith("ok\n")
        for listener in (tcp, unix):
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        tcp.close()
        unix.close()
    assert_contained(box)


def test_killing_the_parent_a_decoy_or_everything_fails(box: Sandbox) -> None:
    decoy = subprocess.Popen(["sleep", "60"], start_new_session=True)
    zygote_pid = box.zygote.proc.pid
    code = f"""
import ctypes, os, signal
for pid in ({decoy.pid}, {zygote_pid}, os.getppid()):
    try:
        os.kill(pid, signal.SIGKILL)
        print('sent', pid)
    except OSError as exc:
        print('refused', exc.errno)
ctypes.CDLL(None).kill({decoy.pid}, 9)  # the same through libc, bypassing Python
if os.getpid() == 1:  # only inside a fresh pid namespace, where -1 means "my namespace"
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:  # nothing else lives in it
        pass
print('done')
"""
    try:
        res = run_python(code, sandbox=box)
        time.sleep(0.1)
        assert decoy.poll() is None, "the decoy was killed"
        assert box.zygote.alive() and box.zygote.proc.pid == zygote_pid
        assert res.stdout.endswith("done\n")
    finally:
        decoy.kill()
        decoy.wait()
    assert_contained(box)


def test_a_double_forked_setsid_daemon_is_gone_afterwards(box: Sandbox) -> None:
    token = "prmdaemon" + secrets.token_hex(6)
    code = f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', [{token!r}, '600'])
    os._exit(0)
os.wait()
print('spawned')
"""
    res = run_python(code, sandbox=box)
    assert res.status == "ok" and res.stdout == "spawned\n"
    assert_contained(box, token)


def test_os_system_and_subprocess_stay_inside(box: Sandbox, exposed_dir: Path) -> None:
    victim = exposed_dir / "victim.txt"
    code = f"""
import os, subprocess, sys
os.system('rm -f {victim}; echo shell ran')
print(subprocess.run(['cat', {str(victim)!r}], capture_output=True, text=True).returncode)
print(subprocess.run([sys.executable, '-c', 'print(40 + 2)'], capture_output=True, text=True).stdout.strip())
"""
    res = run_python(code, sandbox=box)
    assert res.stdout == "shell ran\n1\n42\n", res.stderr  # subprocesses work, the host file stays out of reach
    assert victim.read_text() == "original"
    assert_contained(box)


def test_a_ctypes_segfault_is_a_runtime_error(box: Sandbox) -> None:
    res = run_python("import ctypes\nctypes.string_at(0)", sandbox=box)
    assert res.status == "runtime_error" and res.returncode == -11 and "SIGSEGV" in res.reason
    assert_contained(box)


def test_the_sandbox_holds_no_privilege(full_box: Sandbox) -> None:
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
print(caps, libc.unshare(0x10000000), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), os.getuid() != 0)
"""
    res = run_python(code, sandbox=full_box)
    assert res.stdout == "0000000000000000 -1 -1 True\n"
    assert_contained(full_box)


# ---- verdicts cannot be forged --------------------------------------------------------------

FORGERIES = {
    "exit(0) before tests": "import sys\nsys.exit(0)\ndef f(x):\n    return 0",
    "os._exit(0) before tests": "import os\nos._exit(0)\ndef f(x):\n    return 0",
    "os._exit(0) in the function": "import os\ndef f(x):\n    os._exit(0)",
    "always-equal object": "class E:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\ndef f(x):\n    return E()",
    "always-equal int subclass": "class I(int):\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return I(-1)",
    "always-equal str subclass": "class S(str):\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return S('no')",
    "monkeypatched exit and assert": (
        "import builtins, sys, os\nbuiltins.AssertionError = type('Never', (Exception,), {})\n"
        "sys.exit = lambda *a: None\nos._exit = lambda *a: None\nbuiltins.exit = builtins.quit = sys.exit\n"
        "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\ndef f(x):\n    return -1"
    ),
    "forged result frames": (
        "import gc, json, os\n"
        "def frame(o):\n    d = json.dumps(o).encode()\n    return len(d).to_bytes(4, 'big') + d\n"
        "for fd in (1, 2, 3, 4):\n    try:\n"
        "        os.write(fd, frame({'load': 'ok'}) + frame({'i': 0, 'passed': True, 'status': 'passed'}))\n"
        "    except OSError:\n        pass\n"
        "for o in gc.get_objects():\n"
        "    if isinstance(o, dict) and 'write_frame' in o and 'RESULT_FD' in o:\n"
        "        o['write_frame'] = lambda fd, obj: os.write(fd, frame({'i': obj.get('i'), 'passed': True}))\n"
        "    if isinstance(o, dict) and 'encode' in o and 'CodecError' in o:\n"
        "        o['encode'] = lambda v, depth=0: {'t': 'passed', 'v': True}\n"
        "print(json.dumps({'passed': True, 'per_test': [True]}))\n"
        "def f(x):\n    return -1"
    ),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_verdicts_cannot_be_forged(full_box: Sandbox, name: str) -> None:
    v = check_solution(FORGERIES[name], [([1], 1), ([2], 2)], entry_point="f", fail_fast=False, sandbox=full_box)
    assert not v.passed and v.n_passed == 0, v.per_test
    assert_contained(full_box)


def test_an_honest_program_still_passes_after_the_forgeries(full_box: Sandbox) -> None:
    v = check_solution("def f(x):\n    return x", [([1], 1), ([2], 2)], entry_point="f", sandbox=full_box)
    assert v.passed


def test_exposed_dir_really_is_exposed(exposed_dir: Path) -> None:
    # Guard for the tests above: without the sandbox, an ordinary user could delete the victim.
    mode = exposed_dir.stat().st_mode
    assert mode & stat.S_IWOTH and (exposed_dir / "victim.txt").stat().st_mode & stat.S_IWOTH


# ---- the user-namespace way to the full level ---------------------------------------------


@pytest.fixture(scope="module")
def userns_box() -> Iterator[Sandbox]:
    """The full level built inside a user namespace (what non-root users get)."""
    with Sandbox("full", variants=["userns"]) as sandbox:
        try:
            sandbox.start()
        except Exception as exc:  # noqa: BLE001 - any failure means: not available here
            pytest.skip(f"user namespaces unavailable: {exc}")
        yield sandbox


def test_userns_level_contains_the_essentials(userns_box: Sandbox, exposed_dir: Path) -> None:
    victim = exposed_dir / "victim.txt"
    token = "prmdaemon" + secrets.token_hex(6)
    code = f"""
import os
try:
    os.remove({str(victim)!r})
    print('REMOVED')
except OSError:
    pass
caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
print(os.getpid(), caps)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', [{token!r}, '600'])
    os._exit(0)
os.wait()
"""
    res = run_python(code, sandbox=userns_box)
    assert res.stdout == "1 0000000000000000\n" and victim.read_text() == "original"
    bomb = run_python("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                      sandbox=userns_box, max_processes=16, **FAST)
    assert bomb.status in ("timeout", "killed")
    assert userns_box.layers["variant"] == "userns"
    assert_contained(userns_box, token)
