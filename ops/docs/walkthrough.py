#!/usr/bin/env python3
"""Runs the walk-throughs of the documentation as written, and fails when one does not
behave as its text says (issue 17). Called by ops/docs/run.sh (the test command).

Usage: walkthrough.py --stratus BIN [--openstack BIN] [--nats-server BIN] [--keep] DOC.md...

WHICH BLOCKS RUN
  A ```sh fence directly below an HTML comment (invisible when rendered):
      <!-- doc-test -->
      <!-- doc-test; status: COMMAND -->     (COMMAND: see `-> STATUS` below)
  The marked blocks of one document run in order in one bash session (one reader, one
  terminal: variables, functions and jobs carry over from block to block), in a fresh
  temporary directory holding a copy of the repository's ops/ (the commands run as from
  the repository root, without touching it). Unmarked ```sh blocks do not run; the
  runner lists them. Every document given must also be sound: each opening fence names
  its language (a bare ``` where an opening fence is expected means unbalanced fences),
  no doc-test marker inside code, relative links resolve inside the repository
  (headings included), no path in the text leads out of it.
  To add a block: put the marker above it and write what the reader sees as comments
  in the convention below; a block that starts a process stops it at its end (`kill %1;
  wait %1`) unless the text goes on using it.

HOW A BLOCK RUNS
  Lines are grouped into complete shell commands (as `bash -n` sees them); lines that
  are only a comment are prose. Each command runs as written, in the same shell, with
  these adaptations only:
    - the default ports of the text (Stratus 8774 8775 5000 5001 9292 9293 9696 9697, nats 4222
      8222) are free ports instead: in the command text (every `:PORT`), for Stratus
      processes started without a listen flag (STRATUS_LISTEN, STRATUS_IDENTITY_LISTEN,
      STRATUS_IMAGE_LISTEN, STRATUS_NETWORK_LISTEN) and for nats-server (a wrapper
      appends -p and -m);
    - `cargo run --release -- ARGS` and `stratus ARGS` run the already built binary
      (--stratus), `openstack` is --openstack (ops/cli/run.sh's virtualenv);
    - stdin is /dev/null; the output (stdout and stderr) of each command is kept;
    - before each command the shell reports finished jobs (`jobs`), as an interactive
      shell does before each prompt, so job numbers (`kill %2`) are the reader's.
  The environment has no OS_*, STRATUS_* (but the four above) or NATS_* variables,
  and no proxy for 127.0.0.1.

EXPECTED RESULTS: the trailing `# comment` of a command's last line
    cmd   # 202                a number (alone, or before `:` `;` `,` `->` and prose):
                               the command prints exactly that number
    cmd   # "TEXT" ...         quoted text first: the output contains TEXT, where `...`
                               stands for anything; several quoted texts (joined by `,`
                               `and` or `...`): each of them
    cmd & # wait for "TEXT"    a long-running command: ready once its output contains
                               TEXT (30 s); the runner then goes on. Without `&` (the
                               reader's foreground), the runner then presses Ctrl-C
                               (SIGINT) and the command must exit with status 0
    cmd   # ... -> STATUS ...  then the server reaches STATUS (capitals, e.g. PAUSED)
                               within 30 s (ERROR fails at once), as the block's
                               `status:` command prints it (run in the same shell)
    cmd   # fails: "TEXT"      the command exits non-zero and its output contains TEXT
  Anything else in a comment is prose for the reader. Every command must exit 0 (except
  `fails:`); a background command needs `wait for`. A command that fails, prints
  something else, or takes longer than 120 s fails the test with the block, the command,
  its output and the output of every process the document started (the server logs).
  Everything started is stopped at the end (SIGTERM, SIGKILL after 10 s), failure or not.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

STRATUS_PORTS = [8774, 8775, 5000, 5001, 9292, 9293, 9696, 9697]
NATS_PORTS = [4222, 8222]
COMMAND_TIMEOUT = 120.0
WAIT_TIMEOUT = 30.0
STATUS_TIMEOUT = 30.0
SHOWN_OUTPUT_LINES = 12


class DocFailure(Exception):
    pass


# ---------------------------------------------------------------- markdown

FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})(.*)$")
MARKER = re.compile(r"^<!--\s*doc-test\s*(?:;\s*(.*?))?\s*-->\s*$")


def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


class Block:
    def __init__(self, doc, line, heading, options, lines):
        self.doc = doc
        self.line = line  # line number of the first command line
        self.heading = heading
        self.options = options
        self.lines = lines


def parse_doc(path, repo):
    """The marked blocks of a document; raises DocFailure when the document is unsound."""
    text = open(path, encoding="utf-8").read().split("\n")
    rel = os.path.relpath(path, repo)
    problems = []
    blocks = []
    unmarked = []
    anchors = set()
    heading = "(top)"
    fence = None  # open fence: (its ``` run, its line, doc-test options or None, language)
    body = []
    prev = ""
    for no, line in enumerate(text, 1):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(2)[0] == fence[0][0] and len(m.group(2)) >= len(fence[0]) \
                    and m.group(3).strip() == "":
                if fence[2] is not None:
                    blocks.append(Block(rel, fence[1] + 1, heading, fence[2], body))
                elif fence[3] == "sh":
                    first = next((b.strip() for b in body if b.strip()), "")
                    unmarked.append(f"{rel}:{fence[1]} \"{heading}\": {first}")
                fence = None
                body = []
            else:
                if MARKER.match(line.strip()):
                    problems.append(f"{rel}:{no}: doc-test marker inside a code block "
                                    f"(opened at line {fence[1]}): unbalanced fences?")
                body.append(line)
            prev = line
            continue
        if m:
            info = m.group(3).strip()
            if not info:
                problems.append(f"{rel}:{no}: opening fence without a language "
                                "(every opening fence names one, e.g. ```text; "
                                "a bare ``` here usually means unbalanced fences)")
            pm = MARKER.match(prev.strip())
            options = None
            if pm:
                if info.split()[0:1] != ["sh"]:
                    problems.append(f"{rel}:{no}: doc-test marker above a ```{info} fence (only ```sh runs)")
                options = parse_options(pm.group(1) or "", f"{rel}:{no - 1}", problems)
            fence = (m.group(2), no, options, (info.split() or [""])[0])
            body = []
            prev = line
            continue
        if MARKER.match(line.strip()):
            nxt = text[no] if no < len(text) else ""
            if not FENCE.match(nxt):
                problems.append(f"{rel}:{no}: doc-test marker not directly above a fence")
        h = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            heading = h.group(2)
            anchors.add(slug(heading))
        prev = line
    if fence is not None:
        problems.append(f"{rel}:{fence[1]}: code fence never closed")
    problems += check_links(path, repo, text, anchors)
    if problems:
        raise DocFailure("document problems:\n  " + "\n  ".join(problems))
    return blocks, unmarked


def parse_options(s, where, problems):
    options = {}
    if not s:
        return options
    key, sep, value = s.partition(":")
    key = key.strip()
    if not sep or key != "status":
        problems.append(f"{where}: unknown doc-test option {s!r} (known: `status: COMMAND`)")
    else:
        options["status"] = value.strip()
    return options


def check_links(path, repo, lines, own_anchors):
    """Relative links must point into the repository, at a file (and heading) that exists;
    a path in the text must not leave the repository either."""
    problems = []
    rel = os.path.relpath(path, repo)
    base = os.path.dirname(os.path.abspath(path))
    in_code = False
    for no, line in enumerate(lines, 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(base, file)) if file else os.path.abspath(path)
            if not full.startswith(os.path.abspath(repo) + os.sep):
                problems.append(f"{rel}:{no}: link to {target} leaves the repository")
                continue
            if not os.path.exists(full):
                problems.append(f"{rel}:{no}: link to {target}: no such file")
                continue
            if anchor and full.endswith(".md"):
                anchors = own_anchors if full == os.path.abspath(path) else file_anchors(full)
                if anchor not in anchors:
                    problems.append(f"{rel}:{no}: link to {target}: no such heading")
        for m in re.finditer(r"(?<![\w./])((?:\.\./)+[\w./-]+)", line):
            full = os.path.normpath(os.path.join(base, m.group(1)))
            if not full.startswith(os.path.abspath(repo) + os.sep):
                problems.append(f"{rel}:{no}: {m.group(1)} is outside the repository")
            elif not os.path.exists(full):
                problems.append(f"{rel}:{no}: {m.group(1)}: no such file in the repository")
    return problems


def file_anchors(path):
    anchors = set()
    in_code = False
    for line in open(path, encoding="utf-8"):
        if FENCE.match(line):
            in_code = not in_code
            continue
        h = None if in_code else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            anchors.add(slug(h.group(2)))
    return anchors


# ---------------------------------------------------------------- shell commands

def complete(text):
    if text.rstrip().endswith("\\"):
        return False
    r = subprocess.run(["bash", "-n"], input=text + "\n", text=True, capture_output=True)
    return r.returncode == 0


def trailing_comment(text):
    """The `# comment` on the last line of a shell command (None when there is none)."""
    last_line_start = text.rfind("\n") + 1
    single = double = False
    i = 0
    found = None
    while i < len(text):
        c = text[i]
        if single:
            if c == "'":
                single = False
        elif c == "\\":
            i += 1
        elif double:
            if c == '"':
                double = False
        elif c == "'":
            single = True
        elif c == '"':
            double = True
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;"):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            if i >= last_line_start:
                found = (i, text[i + 1:end].strip())
            i = end
            continue
        i += 1
    return found


QUOTED = r'"((?:[^"\\]|\\.)*)"'
# A number alone, or followed by `:`, `;`, `,` or `->` (`# 409: Cannot ...`, `# 202 -> PAUSED`),
# not a number that starts prose (`# 64 hex characters`).
NUMBER = r"^(\d+)\s*(?:$|[:;,]|->)"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Command:
    def __init__(self, block, line, text):
        self.block = block
        self.line = line
        self.text = text
        c = trailing_comment(text)
        self.comment = c[1] if c else ""
        code = text[:c[0]] if c else text
        self.background = bool(re.search(r"(?<![&|])&\s*$", code.rstrip()))
        self.expect_number = None
        self.expect_texts = []
        self.wait_for = None
        self.fails = None
        self.status = None
        cm = self.comment
        m = re.match(r"^wait for\s+" + QUOTED, cm)
        if m:
            self.wait_for = m.group(1)
        elif re.match(r"^fails:\s*" + QUOTED, cm):
            self.fails = re.match(r"^fails:\s*" + QUOTED, cm).group(1)
        elif re.match(NUMBER, cm):
            self.expect_number = re.match(NUMBER, cm).group(1)
        elif cm.startswith('"'):
            m = re.match(r"^(" + QUOTED + r"(?:\s*(?:,|and|\.\.\.)\s*" + QUOTED + r")*)", cm)
            if m:
                self.expect_texts = re.findall(QUOTED, m.group(1))
        m = re.search(r"->\s*([A-Z][A-Z_]+)\b", cm)
        if m:
            self.status = m.group(1)
        if self.background and self.wait_for is None:
            raise DocFailure(f"{block.doc}:{line}: a background command needs "
                             f'`# wait for "TEXT"` (what the reader waits for)')
        if self.wait_for is None and not self.background and "Ctrl-C" in cm:
            raise DocFailure(f"{block.doc}:{line}: a foreground server needs `# wait for \"TEXT\"`")

    def expectation(self):
        parts = []
        if self.wait_for is not None:
            parts.append(f'output contains "{self.wait_for}"'
                         + ("" if self.background else ", then exits 0 on Ctrl-C"))
        if self.fails is not None:
            parts.append(f'exits non-zero, output contains "{self.fails}"')
        if self.expect_number is not None:
            parts.append(f"prints exactly {self.expect_number}")
        for t in self.expect_texts:
            parts.append(f'output contains "{t}"')
        if self.status:
            parts.append(f"then the server reaches {self.status}")
        if self.fails is None:
            parts.insert(0, "exit status 0")
        return "; ".join(parts)


def commands_of(block):
    cmds = []
    acc = []
    start = None
    for i, line in enumerate(block.lines):
        if not acc and (not line.strip() or line.strip().startswith("#")):
            continue
        if not acc:
            start = block.line + i
        acc.append(line)
        text = "\n".join(acc)
        if complete(text):
            cmds.append(Command(block, start, text))
            acc = []
    if acc:
        raise DocFailure(f"{block.doc}:{start}: incomplete shell command at the end of the block")
    return cmds


def pattern(text):
    """TEXT with `...` standing for anything, as a regex."""
    return re.compile(".*".join(re.escape(p) for p in text.split("...")))


# ---------------------------------------------------------------- processes

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_all(pids, grace=10.0):
    pids = [p for p in pids if alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


# Before each command, `jobs` does what an interactive shell does before each prompt:
# it reports finished jobs and forgets them (so job numbers are what a reader gets).
PRELUDE = r"""
trap 'kill $(jobs -p) 2>/dev/null' EXIT
__doc_run() {
    jobs >/dev/null 2>&1
    eval "$(<"$__DOC/cmd_$1")" >"$__DOC/out_$1" 2>&1 </dev/null
    local __rc=$?
    echo "$__rc ${!:-}" >"$__DOC/rc_$1.tmp" && mv "$__DOC/rc_$1.tmp" "$__DOC/rc_$1"
}
__doc_run_fg() {
    jobs >/dev/null 2>&1
    eval "$(<"$__DOC/cmd_$1")" >"$__DOC/out_$1" 2>&1 </dev/null &
    echo "$!" >"$__DOC/pid_$1.tmp" && mv "$__DOC/pid_$1.tmp" "$__DOC/pid_$1"
    wait "$!"
    local __rc=$?
    echo "$__rc" >"$__DOC/rc_$1.tmp" && mv "$__DOC/rc_$1.tmp" "$__DOC/rc_$1"
}
__doc_probe() {
    eval "$(<"$__DOC/probe_cmd")" >"$__DOC/probe_out" 2>&1 </dev/null
    local __rc=$?
    echo "$__rc" >"$__DOC/probe_rc.tmp" && mv "$__DOC/probe_rc.tmp" "$__DOC/probe_rc"
}
"""


class Session:
    """One bash in a fresh directory: one reader's terminal."""

    def __init__(self, doc, args, repo, root):
        self.doc = doc
        self.repo = repo
        self.dir = os.path.join(root, re.sub(r"\W", "_", doc))
        self.ctl = os.path.join(root, re.sub(r"\W", "_", doc) + ".ctl")
        os.makedirs(self.ctl)
        os.makedirs(self.dir)
        shutil.copytree(os.path.join(repo, "ops"), os.path.join(self.dir, "ops"))
        self.ports = {p: free_port() for p in STRATUS_PORTS + NATS_PORTS}
        shims = os.path.join(self.ctl, "bin")
        os.makedirs(shims)
        os.symlink(os.path.abspath(args.stratus), os.path.join(shims, "stratus"))
        write_exec(os.path.join(shims, "cargo"), f"""#!/usr/bin/env bash
# doc-test: `cargo run --release -- ARGS` is the stratus binary the test command built.
if [ "${{1:-}}" = run ] && [ "${{2:-}}" = --release ] && [ "${{3:-}}" = -- ]; then
    shift 3
    exec {sh_quote(os.path.abspath(args.stratus))} "$@"
fi
echo "doc-test: only 'cargo run --release -- ARGS' is mapped, not: cargo $*" >&2
exit 97
""")
        write_exec(os.path.join(shims, "nats-server"), f"""#!/usr/bin/env bash
# doc-test: the documented nats-server, on free ports instead of 4222 and 8222.
exec {sh_quote(args.nats_server)} "$@" -p {self.ports[4222]} -m {self.ports[8222]}
""")
        if args.openstack:
            os.symlink(os.path.abspath(args.openstack), os.path.join(shims, "openstack"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OS_", "STRATUS_", "NATS_"))}
        env["PATH"] = shims + os.pathsep + env.get("PATH", "")
        env["STRATUS_LISTEN"] = f"127.0.0.1:{self.ports[8774]}"
        env["STRATUS_IDENTITY_LISTEN"] = f"127.0.0.1:{self.ports[5000]}"
        env["STRATUS_IMAGE_LISTEN"] = f"127.0.0.1:{self.ports[9292]}"
        env["STRATUS_NETWORK_LISTEN"] = f"127.0.0.1:{self.ports[9696]}"
        env["__DOC"] = self.ctl
        env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
        self.bash = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.dir, env=env,
                                     stdin=subprocess.PIPE, text=True)
        self.send(PRELUDE)
        self.n = 0
        self.started = []  # (Command, pid, output file) of every background process
        self.status_cmd = None

    def send(self, line):
        self.bash.stdin.write(line + "\n")
        self.bash.stdin.flush()

    def adapt(self, text):
        for default, port in self.ports.items():
            text = re.sub(rf"(?<=:){default}(?!\d)", str(port), text)
        return text

    def wait_file(self, path, timeout, what):
        deadline = time.time() + timeout
        while not os.path.exists(path):
            if self.bash.poll() is not None:
                raise DocFailure(f"the shell exited (status {self.bash.returncode}) {what}")
            if time.time() > deadline:
                raise DocFailure(f"timed out after {timeout:.0f} s {what}")
            time.sleep(0.02)
        with open(path) as f:
            return f.read().split()

    def output(self, n):
        try:
            with open(os.path.join(self.ctl, f"out_{n}"), errors="replace") as f:
                return ANSI.sub("", f.read())
        except OSError:
            return ""

    def run(self, cmd):
        self.n += 1
        n = self.n
        text = self.adapt(cmd.text)
        with open(os.path.join(self.ctl, f"cmd_{n}"), "w") as f:
            f.write(text + "\n")
        out_file = os.path.join(self.ctl, f"out_{n}")
        cmd.adapted = text
        cmd.n = n
        if cmd.wait_for is not None and not cmd.background:
            self.send(f"__doc_run_fg {n}")
            pid = int(self.wait_file(os.path.join(self.ctl, f"pid_{n}"), 10, "starting it")[0])
            self.await_text(cmd, n, pid)
            # The reader presses Ctrl-C: SIGINT to the foreground processes.
            for p in [pid] + descendants(pid):
                try:
                    os.kill(p, signal.SIGINT)
                except ProcessLookupError:
                    pass
            rc = int(self.wait_file(os.path.join(self.ctl, f"rc_{n}"), 30, "stopping it with Ctrl-C")[0])
            if rc != 0:
                raise DocFailure(f"exit status {rc} after Ctrl-C")
            return self.output(n)
        self.send(f"__doc_run {n}")
        rc_line = self.wait_file(os.path.join(self.ctl, f"rc_{n}"), COMMAND_TIMEOUT, "")
        rc = int(rc_line[0])
        out = self.output(n)
        if cmd.background:
            if len(rc_line) < 2:
                raise DocFailure("no background process started")
            pid = int(rc_line[1])
            self.started.append((cmd, pid, out_file))
            self.await_text(cmd, n, pid)
            return self.output(n)
        if cmd.fails is not None:
            if rc == 0:
                raise DocFailure("exit status 0, the text says it fails")
            if not pattern(self.adapt(cmd.fails)).search(out):
                raise DocFailure(f'the output lacks "{cmd.fails}"')
            return out
        if rc != 0:
            raise DocFailure(f"exit status {rc}")
        if cmd.expect_number is not None and out.strip() != cmd.expect_number:
            raise DocFailure(f"printed {out.strip()!r}, the text says {cmd.expect_number}")
        for t in cmd.expect_texts:
            if not pattern(self.adapt(t)).search(out):
                raise DocFailure(f'the output lacks "{t}"')
        if cmd.status:
            self.await_status(cmd)
        return out

    def await_text(self, cmd, n, pid):
        want = pattern(self.adapt(cmd.wait_for))
        deadline = time.time() + WAIT_TIMEOUT
        while not want.search(self.output(n)):
            if not alive(pid) and not want.search(self.output(n)):
                raise DocFailure(f'it exited before printing "{cmd.wait_for}"')
            if time.time() > deadline:
                raise DocFailure(f'no "{cmd.wait_for}" after {WAIT_TIMEOUT:.0f} s')
            time.sleep(0.05)

    def await_status(self, cmd):
        if not self.status_cmd:
            raise DocFailure(f"`-> {cmd.status}` but the block has no `status:` command "
                             "in its doc-test marker")
        with open(os.path.join(self.ctl, "probe_cmd"), "w") as f:
            f.write(self.adapt(self.status_cmd) + "\n")
        deadline = time.time() + STATUS_TIMEOUT
        got = ""
        while True:
            rc_file = os.path.join(self.ctl, "probe_rc")
            if os.path.exists(rc_file):
                os.unlink(rc_file)
            self.send("__doc_probe")
            self.wait_file(rc_file, COMMAND_TIMEOUT, "in the status command")
            with open(os.path.join(self.ctl, "probe_out"), errors="replace") as f:
                got = f.read().strip()
            if got == cmd.status:
                return
            if got == "ERROR" or time.time() > deadline:
                raise DocFailure(f"the server is {got!r}, the text says -> {cmd.status} "
                                 f"(status command: {self.status_cmd})")
            time.sleep(0.1)

    def logs(self):
        parts = []
        for cmd, pid, out_file in self.started:
            try:
                with open(out_file, errors="replace") as f:
                    lines = ANSI.sub("", f.read()).splitlines()
            except OSError:
                lines = []
            running = alive(pid)
            keep = 60 if running else 10
            parts.append(f"---- output of `{cmd.text.splitlines()[0]}` ({cmd.block.doc}:{cmd.line}, "
                         f"pid {pid}, {'running' if running else 'exited'}; last {keep} lines) ----")
            parts += lines[-keep:]
        return "\n".join(parts)

    def close(self):
        # Only the shell's descendants: a pid of a process that exited earlier may belong
        # to someone else by now.
        stop_all(descendants(self.bash.pid))
        try:
            self.bash.stdin.close()
        except OSError:
            pass
        try:
            self.bash.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.bash.kill()
            self.bash.wait()


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def indent(text, limit=None):
    lines = text.rstrip("\n").splitlines()
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return "\n".join("    " + line for line in lines)


def run_doc(doc, args, repo, root):
    blocks, unmarked = parse_doc(doc, repo)
    commands = [(b, commands_of(b)) for b in blocks]
    if not blocks:
        raise DocFailure(f"{os.path.relpath(doc, repo)}: no doc-test block")
    session = Session(os.path.relpath(doc, repo), args, repo, root)
    try:
        for block, cmds in commands:
            print(f"== {block.doc}:{block.line - 1} \"{block.heading}\" "
                  f"({len(cmds)} commands)", flush=True)
            session.status_cmd = block.options.get("status")
            for cmd in cmds:
                t0 = time.time()
                try:
                    out = session.run(cmd)
                except DocFailure as e:
                    report = [
                        "",
                        f"DOC-TEST FAILED: {block.doc}:{cmd.line} in \"{block.heading}\"",
                        "command (as written):",
                        indent(cmd.text),
                    ]
                    if getattr(cmd, "adapted", cmd.text) != cmd.text:
                        report += ["command (as run: ports, binaries adapted):", indent(cmd.adapted)]
                    report += [
                        f"expected: {cmd.expectation()}",
                        f"got: {e}",
                        "its output:",
                        indent(session.output(getattr(cmd, "n", 0))) or "    (none)",
                        session.logs(),
                    ]
                    raise DocFailure("\n".join(report)) from None
                print(f"$ {cmd.text}", flush=True)
                shown = indent(out, SHOWN_OUTPUT_LINES)
                if shown:
                    print(shown)
                print(f"  ok ({time.time() - t0:.1f} s: {cmd.expectation()})", flush=True)
    finally:
        session.close()
    for u in unmarked:
        print(f"not run (no doc-test marker): {u}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stratus", required=True)
    ap.add_argument("--openstack")
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("docs", nargs="+")
    args = ap.parse_args()
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    for tool in (args.stratus, args.nats_server) + ((args.openstack,) if args.openstack else ()):
        if not os.access(tool, os.X_OK):
            sys.exit(f"doc-test: {tool} is not an executable")
    root = tempfile.mkdtemp(prefix="stratus-doctest-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    try:
        for doc in args.docs:
            run_doc(os.path.abspath(doc), args, repo, root)
    except DocFailure as e:
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        if args.keep:
            print(f"doc-test: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"doc-test: every walk-through behaved as written ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
