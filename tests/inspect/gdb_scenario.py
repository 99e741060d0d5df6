# Runs inside GDB (gdb -batch -nx -x gdb_scenario.py).  Environment:
#   TP_PROG        the test program (tp_main.c or oncpu_prog.c)
#   TP_INSPECT     oncpu-inspect, used to find the sections at run time
#   TP_SECTION_FN  function whose critical section the stepping reaches
#   TP_COUNTER     "memory" (sum of tp_prog's tp_counts), or "iterations"
#                  (tp_iterations: main's count of completed adds; read
#                  after the call returned).  No inferior calls: they fail
#                  on some kernels ("Couldn't write extended state").
#   TP_SCENARIO    stepi | stepi-from-start | next-call | next-inline | info
#                  | bp-inside
#   TP_EXTENSION   path of gdb/oncpu.py, or empty to run without it
#   TP_LOAD_LATE   "1": source the extension only once pc is at start_ip
#   TP_CALL_LINE, TP_INLINE_LINE   source lines of the test markers
# Prints "RESULT key=value ..." lines for tests/inspect/test_inspect.py.
import json
import os
import subprocess

import gdb

prog = os.environ["TP_PROG"]
scenario = os.environ["TP_SCENARIO"]
ext = os.environ.get("TP_EXTENSION", "")
late = os.environ.get("TP_LOAD_LATE") == "1"
section_fn = os.environ.get("TP_SECTION_FN", "tp_addv")
counter = os.environ.get("TP_COUNTER", "memory")
source = os.path.basename(os.environ.get("TP_SOURCE", "tp_main.c"))


def out(**kw):
    gdb.write("RESULT " + " ".join("%s=%s" % kv for kv in sorted(kw.items()))
              + "\n")
    gdb.flush()


def run(cmd):
    gdb.execute(cmd, to_string=False)


def val(expr):
    return int(gdb.parse_and_eval(expr))


def alive():
    return gdb.selected_inferior().pid > 0


def sections():
    """Critical sections of the live inferior, from oncpu-inspect --pid."""
    r = subprocess.run([os.environ["TP_INSPECT"], "--json", "--pid",
                        str(gdb.selected_inferior().pid)],
                       stdout=subprocess.PIPE, universal_newlines=True)
    doc = json.loads(r.stdout)
    secs = []
    for o in doc["objects"]:
        for c in o["critical_sections"]:
            c["start"] = int(c["start_ip"], 16)
            c["post"] = int(c["post_commit_ip"], 16)
            c["desc"] = int(c["descriptor"], 16)
            c["file"] = o["file"]
            secs.append(c)
    return secs


def inside(secs, pc):
    return any(c["start"] <= pc < c["post"] for c in secs)


def counter_value():
    if counter == "iterations":
        return val("tp_iterations")
    if counter != "memory":
        return val(counter)
    base = val("(unsigned long)&tp_counts")
    size = val("sizeof(tp_counts)")
    mem = bytes(gdb.selected_inferior().read_memory(base, size))
    return sum(int.from_bytes(mem[o:o + 8], "little", signed=True)
               for o in range(0, size, 64))


def settle():
    """In "iterations" mode, run until main counted the finished add."""
    if counter != "iterations":
        return
    it = val("tp_iterations")
    for _ in range(4):
        if val("tp_iterations") != it:
            return
        if gdb.selected_frame().name() != "main":
            run("finish")
        else:
            run("next")


def start_program(bp, args):
    run("break " + bp)
    run("run " + args)
    if not alive():
        out(skip=1, why="program-exited")
        gdb.execute("quit 0")
    run("delete")


def start_at_counter_inc():
    """Stops at tp_counter_inc; returns the sections and the first one of
    TP_SECTION_FN on the path (the lowest start)."""
    start_program("tp_counter_inc", "loop 1000000")
    secs = sections()
    mine = [c for c in secs if c["function"] == section_fn]
    if not mine:
        out(error="no-section-in-" + section_fn)
        gdb.execute("kill")
        gdb.execute("quit 1")
    return secs, min(mine, key=lambda c: c["start"])


run("set pagination off")
run("set confirm off")
if ext and not late:
    run("source " + ext)
run("file " + prog)

if scenario in ("stepi", "stepi-from-start", "info"):
    secs, cs = start_at_counter_inc()
    start, post = cs["start"], cs["post"]
    before = counter_value()
    steps = 0
    if scenario in ("stepi-from-start", "info"):
        # Reach the first instruction of the section without the extension.
        while val("$pc") != start and steps < 80:
            run("stepi")
            steps += 1
        at_start = int(val("$pc") == start)
        out(at_start=at_start, steps_to_start=steps)
        if at_start:
            # What the kernel sees: rseq->rseq_cs in this thread's area.
            area = val("$fs_base") + val("*(long *)&__rseq_offset")
            reg = val("*(unsigned long *)%d" % (area + 8))
            mem = bytes(gdb.selected_inferior().read_memory(reg, 32))
            fields = [int.from_bytes(mem[o:o + w], "little")
                      for (o, w) in ((0, 4), (4, 4), (8, 8), (16, 8),
                                     (24, 8))]
            want = [cs["version"], cs["flags"], start,
                    cs["post_commit_offset"], int(cs["abort_ip"], 16)]
            out(registered="0x%x" % reg, inspector="0x%x" % cs["desc"],
                registered_match=int(reg == cs["desc"] and fields == want))
        if late and ext:
            run("source " + ext)
        steps = 0
    if scenario == "info":
        gdb.write(gdb.execute("info rseq all", to_string=True))
        out(start="0x%x" % start, function=section_fn)
    else:
        limit = int(os.environ.get("TP_STEP_LIMIT", "200"))
        seen_post = 0
        while steps < limit:
            run("stepi")
            steps += 1
            if val("$pc") == post:
                seen_post = 1
                break
        pc = val("$pc")
        advanced = 0
        if not inside(secs, pc):
            if seen_post:
                settle()
            advanced = counter_value() - before
        out(left=int(seen_post and not inside(secs, pc)), steps=steps,
            seen_post=seen_post, advanced=advanced)
elif scenario == "bp-inside":
    # A user breakpoint on the instruction before the commit, three
    # continues under GDB's default displaced stepping.  Each resume must
    # abort the section (kernel: the IP is inside it), so no add commits
    # while the breakpoint stands; an unprotected resume commits one.
    secs, cs = start_at_counter_inc()
    start, post = cs["start"], cs["post"]
    arch = gdb.selected_frame().architecture()
    insns = [i["addr"] for i in arch.disassemble(start, post - 1)]
    bp_addr = insns[-2]

    class _Count(gdb.Breakpoint):
        hits = 0

        def stop(self):
            self.hits += 1
            return False

    aborts = _Count("*0x%x" % int(cs["abort_ip"], 16), internal=True)
    run("break *0x%x" % bp_addr)
    run("continue")
    counts, at_bp, passed_abort = [counter_value()], [], []
    for _ in range(3):
        hits = aborts.hits
        at_bp.append(int(val("$pc") == bp_addr))
        run("continue")
        passed_abort.append(int(aborts.hits > hits))
        counts.append(counter_value())
    at_bp.append(int(val("$pc") == bp_addr))
    held = gdb.parameter("displaced-stepping")
    # Out of the section: GDB's setting comes back.
    run("delete")
    aborts.delete()
    run("finish")
    out(bp="0x%x" % bp_addr, at_bp=int(all(at_bp)),
        counts=",".join(str(c - counts[0]) for c in counts),
        advanced=counts[-1] - counts[0],
        aborted=int(all(passed_abort)),
        held=str(held).lower(),
        outside=int(not inside(secs, val("$pc"))),
        after=str(gdb.parameter("displaced-stepping")).lower())
elif scenario == "next-call":
    call_line = int(os.environ["TP_CALL_LINE"])
    start_program("%s:%d" % (source, call_line), "loop 1000000")
    before = counter_value()
    run("next")
    line = gdb.selected_frame().find_sal().line
    settle()
    out(returned=1, line=line, advanced=counter_value() - before)
    # Back to the call, step into the function, then next until it returns.
    n = 0
    while gdb.selected_frame().find_sal().line != call_line and n < 10:
        run("next")
        n += 1
    run("step")
    fn = str(gdb.selected_frame().name())
    before = counter_value()
    # Normally 4 nexts; a section that aborts anyway (the thread was
    # preempted or migrated inside it, likelier on a loaded machine) goes
    # round its retry loop: two nexts more per abort.
    nexts = 0
    while gdb.selected_frame().name() == fn and nexts < 30:
        run("next")
        nexts += 1
    settle()
    out(inner_nexts=nexts, inner_advanced=counter_value() - before,
        inner_function=fn)
elif scenario == "next-inline":
    # The section is inlined into main(): gdb range-steps through it.
    start_program("%s:%s" % (source, os.environ["TP_INLINE_LINE"]),
                  "iloop 1000000")
    it0 = val("tp_iterations")
    nexts = 0
    limit = int(os.environ.get("TP_STEP_LIMIT", "12"))
    failed = 0
    while nexts < limit and val("tp_iterations") - it0 < 2:
        try:
            run("next")
        except gdb.error as e:
            # gdb lost its way in the abort path (no symbols there)
            gdb.write("next failed: %s\n" % e)
            failed = 1
            break
        nexts += 1
    out(nexts=nexts, next_failed=failed,
        iterations=val("tp_iterations") - it0)
gdb.execute("kill")
gdb.execute("quit 0")
