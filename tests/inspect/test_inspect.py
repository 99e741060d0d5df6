#!/usr/bin/env python3
"""CTest driver for oncpu-inspect and the GDB extension.

usage: test_inspect.py runtime INSPECT PROG [DSO]   inspector == run time
       test_inspect.py pid INSPECT PROG             --pid == run time
       test_inspect.py object INSPECT OBJ           ET_REL object file
       test_inspect.py none INSPECT PROG            no sections: exit 0
       test_inspect.py corrupt INSPECT PROG          corrupted copies
       test_inspect.py scale INSPECT [VALGRIND]      large tables stay fast
       test_inspect.py gdb GDB INSPECT PROG SOURCE EXT SCENARIO MODE
                      MODE: with, late (sourced at start_ip), without,
                      autoload (.debug_gdb_scripts in PROG), installed
                      (an install tree, oncpu-inspect beside the
                      extension), missing (no oncpu-inspect)
Exit status 0 pass, 1 fail, 77 skip (CTest SKIP_RETURN_CODE).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok: %s" % what)


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, **kw)


def inspect_json(inspect, args):
    r = run([inspect, "--json"] + args)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        raise Fail("inspector printed invalid JSON (rc %d): %r %s"
                   % (r.returncode, r.stdout[:400], r.stderr))
    return r.returncode, doc


def parse_dump(text):
    d = {"bias": {}, "registered": [], "ptr": {}, "exit": {}}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "bias":
            d["bias"][f[1]] = int(f[2], 16)
        elif f[0] == "registered":
            d["registered"].append((int(f[1], 16), int(f[2]), int(f[3]),
                                    int(f[4], 16), int(f[5]), int(f[6], 16)))
        elif f[0] == "ptr":
            d["ptr"].setdefault(f[1], []).append(int(f[2], 16))
        elif f[0] == "exit":
            d["exit"].setdefault(f[1], []).append((int(f[2], 16),
                                                   int(f[3], 16)))
        elif f[0] == "registered-thread":
            d["thread"] = int(f[1])
    return d


def compare(dump, objects, modules):
    """modules: {"exe": path, "dso": path}; objects: inspector objects."""
    byfile = {os.path.realpath(o["file"]): o for o in objects}
    by_desc = {}
    for mod, path in modules.items():
        obj = byfile.get(os.path.realpath(path))
        check(obj is not None and obj["error"] is None,
              "%s inspected without error" % mod)
        # Addresses: link-time + bias (files), or run time (--pid: bias 0).
        bias = dump["bias"][mod] if "load_bias" not in obj else 0
        if "load_bias" in obj:
            check(int(obj["load_bias"], 16) == dump["bias"][mod],
                  "%s load bias 0x%x matches dl_iterate_phdr"
                  % (mod, dump["bias"][mod]))
        descs = sorted(int(c["descriptor"], 16) + bias
                       for c in obj["critical_sections"])
        check(descs == sorted(dump["ptr"].get(mod, [])),
              "%s: %d descriptors == the relocated __rseq_cs_ptr_array"
              % (mod, len(descs)))
        for c in obj["critical_sections"]:
            check(c["valid"] and not c["violations"],
                  "%s: section %s valid" % (mod, c["start_ip"]))
            check(c["function"] is not None and
                  c["function_offset"] + c["post_commit_offset"] <=
                  c.get("function_size", 0),
                  "%s: section %s lies inside %s (offset %s, size %s)"
                  % (mod, c["start_ip"], c["function"],
                     c.get("function_offset"), c.get("function_size")))
            by_desc[int(c["descriptor"], 16) + bias] = (c, bias)
        exits = sorted((int(x["start_ip"], 16) + bias,
                        int(x["exit_ip"], 16) + bias)
                       for x in obj["exit_points"])
        check(exits == sorted(dump["exit"].get(mod, [])),
              "%s: exit points == the relocated __rseq_exit_point_array"
              % mod)
    if "thread" in dump:
        check(len(dump["registered"]) >= 2,
              "program registered %d descriptors" % len(dump["registered"]))
    for (desc, ver, flags, start, pco, abort) in dump["registered"]:
        c, bias = by_desc.get(desc, (None, 0))
        check(c is not None, "registered descriptor 0x%x is listed" % desc)
        got = (c["version"], c["flags"], int(c["start_ip"], 16) + bias,
               c["post_commit_offset"], int(c["abort_ip"], 16) + bias)
        check(got == (ver, flags, start, pco, abort),
              "descriptor 0x%x fields match rseq->rseq_cs at run time "
              "(start 0x%x +%d abort 0x%x)" % (desc, start, pco, abort))
        check(int(c["post_commit_ip"], 16) + bias == start + pco,
              "post-commit ip of 0x%x" % desc)


def t_runtime(inspect, prog, dso=None):
    r = run([prog, "dump"])
    check(r.returncode == 0, "%s dump ran" % prog)
    dump = parse_dump(r.stdout)
    args = [prog] + ([dso] if dso else [])
    rc, doc = inspect_json(inspect, args)
    check(rc == 0, "inspector exit status 0 (got %d)" % rc)
    mods = {"exe": prog}
    if dso:
        mods["dso"] = dso
    compare(dump, doc["objects"], mods)
    text = run([inspect] + args)
    check(text.returncode == 0 and "tp_counter_inc+0x" in text.stdout
          or "tp_addv+0x" in text.stdout,
          "human output names the enclosing function")


def t_pid(inspect, prog):
    p = subprocess.Popen([prog, "wait"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, universal_newlines=True)
    try:
        lines = []
        for line in p.stdout:
            if line.strip() == "ready":
                break
            lines.append(line)
        dump = parse_dump("".join(lines))
        rc, doc = inspect_json(inspect, ["--pid", str(p.pid)])
        check(rc == 0, "inspector --pid exit status 0 (got %d)" % rc)
        mods = {"exe": prog}
        if "dso" in dump["bias"]:
            dsos = [o["file"] for o in doc["objects"]
                    if "libtp_dso" in o["file"]]
            check(len(dsos) == 1, "--pid lists libtp_dso.so")
            mods["dso"] = dsos[0]
        compare(dump, doc["objects"], mods)
        text = run([inspect, "--pid", str(p.pid)])
        check(text.returncode == 0 and "load bias 0x" in text.stdout,
              "human --pid output shows the load bias")
    finally:
        p.stdin.write("done\n")
        p.stdin.close()
        p.wait(timeout=30)


def t_object(inspect, obj):
    rc, doc = inspect_json(inspect, [obj])
    check(rc == 0, "object file: exit status 0")
    o = doc["objects"][0]
    check(o["type"] == "REL", "object file type REL")
    cs = o["critical_sections"]
    check(len(cs) == 2, "object file: 2 critical sections")
    names = sorted(c["function"] for c in cs)
    check(names == ["tp_addv", "tp_cmpeqv_storev"],
          "object file: enclosing functions %s" % names)
    check(all(c["source"] == "tp_sections.c" for c in cs),
          "object file: source file tp_sections.c")
    check(all(c["start_ip_loc"].startswith(".text+") and
              c["abort_ip_loc"].startswith("__rseq_failure+") for c in cs),
          "object file: locations relative to .text and __rseq_failure")
    check(len(o["exit_points"]) == 1 and
          o["exit_points"][0]["critical_section"] >= 0,
          "object file: exit point attached to its section")
    check(all(c["valid"] and not c["warnings"] for c in cs),
          "object file: sections valid, no warnings")


def t_none(inspect, prog):
    r = run([inspect, prog])
    check(r.returncode == 0, "no sections: exit status 0")
    check("no rseq critical sections found" in r.stdout,
          "no sections: says so")
    rc, doc = inspect_json(inspect, [prog])
    check(rc == 0 and doc["objects"][0]["critical_sections"] == [] and
          doc["summary"]["critical_sections"] == 0,
          "no sections: JSON lists none")


# --- large tables (tests/inspect/gen_many_cs.py) ---------------------------

def instructions(valgrind, cmd):
    """Instructions the command executed (valgrind --tool=cachegrind)."""
    r = run([valgrind, "--tool=cachegrind", "--cache-sim=no",
             "--cachegrind-out-file=/dev/null"] + cmd, timeout=1800)
    m = re.search(r"I\s+refs:\s+([\d,]+)", r.stderr)
    if r.returncode != 0 or not m:
        raise Fail("valgrind failed (rc %d): %s" % (r.returncode,
                                                    r.stderr[-500:]))
    return int(m.group(1).replace(",", ""))


def t_scale(inspect, valgrind=None):
    """Exit points, sections, symbols and descriptors by the ten thousand:
    the same results as a scan of every table, and work that grows like
    n log n.  Counted in instructions under valgrind; without valgrind a
    file where table scans take minutes runs under CTest's TIMEOUT."""
    sys.path.insert(0, HERE)
    import gen_many_cs
    tmp = tempfile.mkdtemp(prefix="oi-scale-")
    try:
        data, want = gen_many_cs.build(300)
        path = os.path.join(tmp, "small")
        with open(path, "wb") as f:
            f.write(data)
        rc, doc = inspect_json(inspect, [path])
        o = doc["objects"][0]
        cs = o["critical_sections"]
        check(rc == 0 and o["error"] is None and len(cs) == want["n"],
              "%d descriptors listed" % want["n"])
        check([int(c["start_ip"], 16) for c in cs] == want["starts"],
              "descriptors in table order")
        check([[int(e, 16) for e in c["exits"]] for c in cs] ==
              want["exits"], "each descriptor's exit points, in table order")
        check(set(i for i, c in enumerate(cs)
                  if "an exit point lies inside the section"
                  in c["warnings"]) == want["inside"],
              "exit points inside a section are flagged")
        check(all(c["function"] == "f%d" % i and c["function_offset"] == 0
                  and c["start_ip_loc"].startswith(".text+") for i, c
                  in enumerate(cs)), "functions and sections named")
        xs = o["exit_points"]
        check(len(xs) == want["n_exits"] and
              sum(x["critical_section"] < 0 for x in xs) == want["orphans"]
              and all(x["critical_section"] < 0 or
                      int(x["start_ip"], 16) ==
                      want["starts"][x["critical_section"]] for x in xs),
              "%d exit points, %d matching no descriptor"
              % (want["n_exits"], want["orphans"]))
        text = run([inspect, path]).stdout
        check(text.count("matches no critical section") == want["orphans"]
              and text.count("      exit ") == want["n_exits"] -
              want["orphans"], "human output lists the same exit points")
        if valgrind:
            n = 2000
            for mode in ([], ["--json"]):
                ir = []
                for k in (n, 8 * n):
                    path = os.path.join(tmp, "n%d" % k)
                    with open(path, "wb") as f:
                        f.write(gen_many_cs.build(k)[0])
                    ir.append(instructions(valgrind, [inspect] + mode +
                                           [path]))
                # n log n from n to 8n: about 9x; a table scan per entry:
                # up to 64x.
                check(ir[1] < 16 * ir[0],
                      "%s: %d -> %d entries: %d -> %d instructions (%.1fx, "
                      "bound 16x)" % (" ".join(["oncpu-inspect"] + mode), n,
                                      8 * n, ir[0], ir[1], ir[1] / ir[0]))
        else:
            n = 120000
            path = os.path.join(tmp, "large")
            with open(path, "wb") as f:
                f.write(gen_many_cs.build(n)[0])
            print("no valgrind: %d descriptors, %d bytes; CTest's TIMEOUT "
                  "fails this test if it runs for minutes"
                  % (n, os.path.getsize(path)))
            r = subprocess.run([inspect, path], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            check(r.returncode == 0, "%d descriptors inspected (rc %d)"
                  % (n, r.returncode))
    finally:
        shutil.rmtree(tmp)


# --- corrupted copies --------------------------------------------------------

class Elf(object):
    def __init__(self, data):
        self.d = bytearray(data)
        self.shoff = struct.unpack_from("<Q", self.d, 0x28)[0]
        self.shnum, self.shstrndx = struct.unpack_from("<HH", self.d, 0x3C)
        strtab = self.sh(self.shstrndx)
        self.names = {}
        for i in range(self.shnum):
            s = self.sh(i)
            o = strtab["offset"] + s["name"]
            n = bytes(self.d[o:self.d.index(b"\0", o)]).decode()
            self.names[n] = i

    def sh(self, i):
        f = struct.unpack_from("<IIQQQQIIQQ", self.d, self.shoff + 64 * i)
        return dict(zip(("name", "type", "flags", "addr", "offset", "size",
                         "link", "info", "align", "entsize"), f))

    def set_sh(self, i, field, value):
        off = {"offset": 24, "size": 32, "link": 40}[field]
        fmt = "<Q" if field in ("offset", "size") else "<I"
        struct.pack_into(fmt, self.d, self.shoff + 64 * i + off, value)

    def sec(self, name):
        return self.sh(self.names[name])

    def file_off(self, addr):
        for i in range(1, self.shnum):
            s = self.sh(i)
            if s["type"] != 8 and s["addr"] <= addr < s["addr"] + s["size"]:
                return s["offset"] + addr - s["addr"]
        raise KeyError(hex(addr))

    def relocs_into(self, name):
        """File offsets of .rela.dyn entries that write into section."""
        t = self.sec(name)
        rela = self.sec(".rela.dyn")
        out = []
        for j in range(rela["size"] // 24):
            off = rela["offset"] + 24 * j
            r_off, = struct.unpack_from("<Q", self.d, off)
            if t["addr"] <= r_off < t["addr"] + t["size"]:
                out.append(off)
        return out


def t_corrupt(inspect, prog, inspect_asan=None):
    data = open(prog, "rb").read()
    e = Elf(data)
    tmp = tempfile.mkdtemp(prefix="oncpu-inspect-")
    cases = []

    def case(name, blob, rc, pattern):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(bytes(blob))
        cases.append((name, path, rc, pattern))

    case("truncated-100", data[:100], 2, r"past the end|truncated")
    case("truncated-half", data[:len(data) // 2], 2,
         r"past the end|truncated")
    case("truncated-tail", data[:-40], 2, r"past the end|truncated")
    case("not-elf", b"#!/bin/sh\necho hello\n", 2, r"not an ELF file")
    case("empty", b"", 2, r"not an ELF file")
    x = Elf(data)
    struct.pack_into("<Q", x.d, 0x28, 0x7FFFFFFFFFFFFF00)
    case("bad-shoff", x.d, 2, r"past the end")
    x = Elf(data)
    struct.pack_into("<H", x.d, 0x3E, 0x7FFF)
    case("bad-shstrndx", x.d, 2, r"section name table")
    x = Elf(data)
    x.set_sh(x.names["__rseq_cs_ptr_array"], "offset", 0xFFFFFFFFFFFF0000)
    case("bad-section-offset", x.d, 2, r"past the end")
    x = Elf(data)
    x.set_sh(x.names["__rseq_cs_ptr_array"], "size", 12)
    case("bad-ptr-array-size", x.d, 2,
         r"not a multiple of 8|crosses the end of '__rseq_cs_ptr_array'")
    x = Elf(data)
    for off in x.relocs_into("__rseq_cs_ptr_array"):
        struct.pack_into("<Q", x.d, off + 8, 37)  # R_X86_64_IRELATIVE
    case("bad-reloc-type", x.d, 2, r"unsupported relocation type 37")
    x = Elf(data)
    for off in x.relocs_into("__rseq_cs_ptr_array"):
        struct.pack_into("<Q", x.d, off + 8, 0)  # R_X86_64_NONE
    pa = x.sec("__rseq_cs_ptr_array")
    x.d[pa["offset"]:pa["offset"] + pa["size"]] = bytes(pa["size"])
    case("reloc-removed", x.d, 2, r"missing relocation")
    x = Elf(data)
    for off in x.relocs_into("__rseq_cs_ptr_array"):
        struct.pack_into("<Q", x.d, off + 8, (99999 << 32) | 1)
    case("bad-reloc-symbol", x.d, 2, r"symbol 99999")
    x = Elf(data)
    for off in x.relocs_into("__rseq_cs_ptr_array"):
        struct.pack_into("<Q", x.d, off + 16, 0x7EADBEEF00)
    case("bad-reloc-addend", x.d, 2, r"does not point into")
    x = Elf(data)
    rel = x.sec(".rela.dyn")
    x.set_sh(x.names[".rela.dyn"], "link", 0xFFFF)
    for off in x.relocs_into("__rseq_cs_ptr_array"):
        struct.pack_into("<Q", x.d, off + 8, (1 << 32) | 1)
    case("bad-reloc-symtab-link", x.d, 2, r"links to no symbol table")
    del rel
    # Kernel rule violations: valid file, exit status 1.
    x = Elf(data)
    descs = x.sec("__rseq_cs")
    struct.pack_into("<I", x.d, descs["offset"], 1)
    case("bad-version", x.d, 1, r"VIOLATION: version is not 0")
    x = Elf(data)
    struct.pack_into("<I", x.d, descs["offset"] + 4, 1)
    case("bad-flags", x.d, 1, r"VIOLATION: flags are not 0")
    x = Elf(data)
    fail = x.sec("__rseq_failure")
    x.d[fail["offset"]:fail["offset"] + fail["size"]] = \
        bytes(fail["size"])  # wipe every signature
    case("bad-signature", x.d, 1,
         r"VIOLATION: the 4 bytes before abort_ip are not the signature")
    x = Elf(data)
    # abort_ip := start_ip: rewrite the RELATIVE addend of desc+24.
    d0 = descs["addr"]
    start_add = abort_off = None
    for off in x.relocs_into("__rseq_cs"):
        r_off, _i, add = struct.unpack_from("<QQq", x.d, off)
        if r_off == d0 + 8:
            start_add = add
        if r_off == d0 + 24:
            abort_off = off
    if start_add is not None and abort_off is not None:
        struct.pack_into("<q", x.d, abort_off + 16, start_add)
        case("abort-inside", x.d, 1, r"VIOLATION: abort_ip lies inside")

    tools = [inspect] + ([inspect_asan] if inspect_asan else [])
    for tool in tools:
        for (name, path, rc, pattern) in cases:
            r = run([tool, path])
            both = r.stdout + r.stderr
            check(r.returncode == rc and re.search(pattern, both) and
                  "Sanitizer" not in both,
                  "%s: %s -> exit %d, /%s/ (got %d: %s)"
                  % (os.path.basename(tool), name, rc, pattern,
                     r.returncode, both.strip().splitlines()[-1:]))
            rj = run([tool, "--json", path])
            check(rj.returncode == rc and "Sanitizer" not in rj.stderr,
                  "%s --json: %s -> exit %d"
                  % (os.path.basename(tool), name, rc))
            json.loads(rj.stdout)
    shutil.rmtree(tmp)


# --- GDB ----------------------------------------------------------------------

def marker_line(source, marker, offset=0):
    with open(source) as f:
        for n, line in enumerate(f, 1):
            if marker in line:
                return n + offset
    raise Fail("marker %r not found in %s" % (marker, source))


def install_tree(tmp, inspect, ext):
    """A prefix with the extension where make install puts its two copies
    and bin/oncpu-inspect, a wrapper that logs each call's file argument
    and runs the built one.  Returns the copies and the log."""
    os.makedirs(os.path.join(tmp, "bin"))
    log = os.path.join(tmp, "inspect.log")
    wrapper = os.path.join(tmp, "bin", "oncpu-inspect")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nprintf "%%s\\n" "$*" >> "%s"\nexec "%s" "$@"\n'
                % (log, inspect))
    os.chmod(wrapper, 0o755)
    copies = []
    for rel in ("share/oncpu/gdb/oncpu.py",
                "share/gdb/auto-load" + tmp + "/lib/liboncpu.so.0-gdb.py"):
        dest = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(dest))
        shutil.copy(ext, dest)
        copies.append(dest)
    return copies, log


def t_gdb(gdb, inspect, prog, source, ext, scenario, mode):
    """MODE installed: the extension copied into an install tree finds
    bin/oncpu-inspect beside itself (no ONCPU_INSPECT, nothing in PATH) and
    runs it once per file; missing: no oncpu-inspect anywhere, one line
    says so."""
    if mode not in ("installed", "missing"):
        return t_gdb_run(gdb, inspect, prog, source, ext, scenario, mode)[0]
    tmp = tempfile.mkdtemp(prefix="oncpu-gdb-")
    try:
        path = os.path.join(tmp, "empty")
        os.mkdir(path)
        env = dict(os.environ, PATH=path)
        env.pop("ONCPU_INSPECT", None)
        if mode == "missing":
            rc, text = t_gdb_run(gdb, inspect, prog, source, ext, scenario,
                                 "late", env, located=False)
            if rc == SKIP:
                return SKIP
            said = [ln for ln in text.splitlines()
                    if ln.startswith("[rseq] oncpu-inspect not found")]
            check(len(said) == 1 and "looked in PATH" in said[0],
                  "one line says oncpu-inspect was not found (%s)" % said)
            check("No rseq critical sections" in text and
                  "Traceback" not in text and "Python Exception" not in text,
                  "info rseq lists nothing, no Python error")
            return 0
        copies, log = install_tree(tmp, inspect, ext)
        for copy in copies:
            if os.path.exists(log):
                os.unlink(log)
            if t_gdb_run(gdb, inspect, prog, source, copy, scenario,
                         "late", env)[0] == SKIP:
                return SKIP
            calls = []
            if os.path.exists(log):
                with open(log) as f:
                    calls = f.read().splitlines()
            check(calls and all(c.startswith("--json /") for c in calls) and
                  len(calls) == len(set(calls)) and
                  any(c.endswith("/libtp_dso.so") for c in calls),
                  "%s ran %s/bin/oncpu-inspect --json once per file (%s)"
                  % (copy[len(tmp):], tmp, calls))
    finally:
        shutil.rmtree(tmp)
    return 0


def t_gdb_run(gdb, inspect, prog, source, ext, scenario, mode, env=None,
              located=True):
    """Runs one scenario and checks it (with the sections listed unless
    located is False); returns (0 or SKIP, GDB's output)."""
    with_ext = mode in ("with", "late", "autoload")
    oncpu = "oncpu_prog" in os.path.basename(source)
    fn = "tp_counter_inc" if oncpu else "tp_addv"
    if env is None:
        env = dict(os.environ, ONCPU_INSPECT=inspect)
    else:
        env = dict(env)
    env.update(TP_PROG=prog, TP_SCENARIO=scenario, TP_INSPECT=inspect,
               TP_SOURCE=source, TP_SECTION_FN=fn,
               TP_COUNTER="iterations" if oncpu else "memory",
               TP_EXTENSION=ext if mode in ("with", "late") else "",
               TP_LOAD_LATE="1" if mode == "late" else "0",
               TP_CALL_LINE=str(marker_line(source, "gdb-test: call")),
               TP_INLINE_LINE=str(marker_line(source, "gdb-test: inline",
                                              1)))
    probe = run([gdb, "-nx", "-batch", "-ex", "run", "--args", "/bin/true"],
                timeout=60)
    if "exited normally" not in probe.stdout + probe.stderr:
        print("SKIP: gdb cannot run programs here (ptrace?): %s"
              % (probe.stdout + probe.stderr)[-300:])
        return SKIP, ""
    cmd = [gdb, "-nx", "-batch"]
    if mode == "autoload":
        # The program's .debug_gdb_scripts names the extension.
        cmd += ["-iex", "set auto-load safe-path /"]
    cmd += ["-x", os.path.join(HERE, "gdb_scenario.py")]
    # Without the extension gdb may loop forever inside one "next": the
    # timeout is what bounds it (and then proves it stuck).
    timeout = int(os.environ.get("TP_GDB_TIMEOUT",
                                 "90" if with_ext else "30"))
    try:
        r = run(cmd, timeout=timeout, env=env)
        text = r.stdout + r.stderr
        timed_out = False
    except subprocess.TimeoutExpired as ex:
        parts = [ex.stdout or "", ex.stderr or ""]
        text = "".join(p.decode("utf-8", "replace")
                       if isinstance(p, bytes) else p for p in parts)
        timed_out = True
        print("gdb did not finish within %ds (killed)" % timeout)
    print(text[-6000:])
    res = {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            for kv in line.split()[1:]:
                k, v = kv.split("=", 1)
                res[k] = int(v) if re.match(r"^-?\d+$", v) else v
    if res.get("skip"):
        print("SKIP: %s" % res.get("why"))
        return SKIP, text
    check("error" not in res, "scenario ran (%s)" % res.get("error"))
    if with_ext:
        check(not timed_out, "gdb finished within %ds" % timeout)
    stuck = "stuck: %s" % ("timeout" if timed_out else res)
    if scenario in ("stepi-from-start", "info"):
        check(res.get("at_start") == 1,
              "reached the first instruction of the section by stepi")
        check(res.get("registered_match") == 1,
              "rseq->rseq_cs at start_ip (%s) is the inspector's "
              "descriptor %s, same fields" % (res.get("registered"),
                                              res.get("inspector")))
    if scenario == "stepi":
        if with_ext:
            check(res.get("left") == 1 and res.get("advanced") == 1 and
                  res.get("steps", 999) <= 150,
                  "stepi leaves the section and the counter advances by 1 "
                  "(%s)" % res)
        else:
            check(timed_out or (res.get("left") == 0 and
                                res.get("seen_post") == 0),
                  "without the extension stepi never commits (%s)" % stuck)
    elif scenario == "stepi-from-start":
        if with_ext:
            check(res.get("left") == 1 and res.get("advanced") == 1 and
                  res.get("steps", 999) <= 10,
                  "stepi from start_ip leaves within 10 steps, counter +1 "
                  "(%s)" % res)
        else:
            check(timed_out or (res.get("left") == 0 and
                                res.get("seen_post") == 0),
                  "without the extension stepi from start_ip is stuck (%s)"
                  % stuck)
    elif scenario == "next-call":
        check(res.get("returned") == 1 and res.get("advanced") == 1 and
              res.get("line") == marker_line(source, "gdb-test: call", 1),
              "next over a call that runs a section returns (%s)" % res)
        check(res.get("inner_function") == "tp_counter_inc" and
              res.get("inner_advanced") == 1 and
              res.get("inner_nexts", 99) < 30,
              "next through the function commits and returns (%s)" % res)
    elif scenario == "next-inline":
        if with_ext:
            check(res.get("iterations", 0) >= 2,
                  "next over an inlined section makes progress (%s)" % res)
        else:
            check(timed_out or res.get("iterations") == 0,
                  "without the extension next over an inlined section "
                  "never gets past it (%s)" % stuck)
    elif scenario == "bp-inside":
        check(res.get("at_bp") == 1,
              "every continue stops at the breakpoint inside the section "
              "(%s)" % res)
        check(res.get("advanced") == 0 and res.get("aborted") == 1,
              "each continue aborts the section, the count never advances "
              "unprotected (counts %s, aborted %s)"
              % (res.get("counts"), res.get("aborted")))
        check(res.get("held") == "false" and "displaced stepping is off"
              in text, "the extension turned displaced stepping off and "
              "said so (%s)" % res.get("held"))
        check(res.get("outside") == 1 and res.get("after") == "none" and
              "displaced stepping is auto again" in text,
              "back outside the section, displaced stepping is auto again "
              "(%s)" % res.get("after"))
    elif scenario == "info" and located:
        start = res.get("start")
        check(re.search(r"=> %s\+0x[0-9a-f]+ +start %s " % (fn, start), text),
              "info rseq marks the section holding $pc")
        check("is inside rseq critical section %s+0x" % fn in text,
              "info rseq says $pc is inside %s's section" % fn)
        if not oncpu:
            check("tp_dso_inc_below+0x" in text and "exits 0x" in text,
                  "info rseq all lists the DSO's sections and exit points")
    return 0, text


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    kind, args = argv[1], argv[2:]
    try:
        if kind == "runtime":
            t_runtime(*args)
        elif kind == "pid":
            t_pid(*args)
        elif kind == "object":
            t_object(*args)
        elif kind == "none":
            t_none(*args)
        elif kind == "corrupt":
            t_corrupt(*args)
        elif kind == "scale":
            t_scale(*args)
        elif kind == "gdb":
            return t_gdb(*args)
        else:
            print(__doc__)
            return 2
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
