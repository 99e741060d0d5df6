# oncpu GDB extension: rseq critical sections for GDB.
#
# Takes the rseq critical sections that oncpu, the Linux kernel selftests,
# librseq and other producers record (__rseq_cs, __rseq_cs_ptr_array,
# __rseq_exit_point_array) in every loaded object from oncpu-inspect, and:
#
#   info rseq [all]    lists the critical sections, says whether $pc is in one
#   step, next, stepi, nexti, until never get stuck in a critical section:
#                      when one of them stops inside a section, temporary
#                      breakpoints go to all of its exits (post-commit,
#                      abort, exit points), the inferior continues, and the
#                      exit taken is reported
#   set rseq-step on|off          turns the stepping support on or off
#   set rseq-max-aborts N         aborts tolerated before stopping at abort
#   displaced stepping            off while a stopped thread is inside a
#                                 section, so that resuming aborts it
#
# Why: a single step inside [start_ip, post-commit) traps into the kernel,
# and the return to user space aborts the section (the thread was
# "preempted"), so stepping restarts it forever.  Breakpoints at the exits
# let the section run at full speed instead.
#
# Load by hand with `source /path/to/oncpu.py`; installed copies are
# auto-loaded for liboncpu (see oncpu-gdb(7)).  oncpu-inspect is found
# through ONCPU_INSPECT, beside an installed copy, or in PATH.

import json
import os
import shutil
import subprocess

import gdb

# ---------------------------------------------------------------------------
# Where the tables come from
#
# oncpu-inspect, the project's ELF reader, lists the sections of each loaded
# object file at link-time addresses (--json FILE: one run per file, kept
# while the file's mtime and size stay the same).  The run-time addresses
# add the object's load bias, taken from GDB's own symbol tables: GDB's
# address of a function that holds a section minus the function's
# link-time address.  A bias is accepted only when it is a whole number of
# pages and GDB places that address in the same object (solib_name), so a
# function name that several objects or files define cannot mislead it.
# Nothing comes from /proc: a live process, a core file and the file alone
# before "run" (bias 0) are handled alike.

_INSPECT_FORMAT = 1   # the --json "format" this extension reads
_MASK = (1 << 64) - 1
_PAGE = 4096          # load biases are page-aligned


def _find_inspect():
    """(path of oncpu-inspect, None), or (None, why it was not found).

    ONCPU_INSPECT when set, else <prefix>/bin beside an installed copy of
    this file (<prefix>/share/oncpu/gdb or <prefix>/share/gdb/auto-load),
    else PATH."""
    env = os.environ.get("ONCPU_INSPECT")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env, None
        return None, "ONCPU_INSPECT=%s is not an executable file" % env
    places = []
    for marker in ("/share/oncpu/gdb/", "/share/gdb/auto-load/"):
        at = _SCRIPT.find(marker)
        if at >= 0:
            places.append(os.path.join(_SCRIPT[:at] or "/", "bin"))
            break
    places.append("PATH")
    for place in places:
        found = shutil.which("oncpu-inspect",
                             path=None if place == "PATH" else place)
        if found:
            return found, None
    return None, "oncpu-inspect not found (looked in %s)" % ", ".join(places)


# This file's path: __file__ names the outermost script when one sources
# another, the code object names the file it was compiled from.
_SCRIPT = os.path.abspath(_find_inspect.__code__.co_filename)


class CriticalSection(object):
    """One section of an oncpu-inspect record, at run-time addresses."""

    def __init__(self, objfile, record, bias):
        def addr(key):
            return (int(record[key], 16) + bias) & _MASK

        self.objfile = objfile
        self.start = addr("start_ip")
        self.post_commit_offset = record["post_commit_offset"]
        self.post_commit = addr("post_commit_ip")
        self.abort = addr("abort_ip")
        self.exits = [(int(e, 16) + bias) & _MASK for e in record["exits"]]
        self.violations = record["violations"]
        self.function = None  # (name, start, size)
        if record.get("function") is not None:
            self.function = (record["function"],
                             self.start - record["function_offset"],
                             record["function_size"])

    def contains(self, pc):
        return 0 <= pc - self.start < self.post_commit_offset

    def name(self):
        if self.function:
            return "%s+0x%x" % (self.function[0],
                                self.start - self.function[1])
        return "0x%x" % self.start


def _function_addresses(objfile, name):
    """GDB's run-time addresses for function name: from objfile's debug
    symbols, then the minimal symbols (any object: checked by the caller)."""
    for lookup in (objfile.lookup_global_symbol,
                   objfile.lookup_static_symbol):
        try:
            sym = lookup(name)
            if sym is not None and sym.addr_class == gdb.SYMBOL_LOC_BLOCK:
                yield int(sym.value().address) & _MASK
        except gdb.error:
            pass
    if "'" not in name:
        try:
            yield int(gdb.parse_and_eval("(unsigned long)&'%s'" % name)) \
                & _MASK
        except gdb.error:
            pass


def _load_bias(objfile, record):
    """objfile's load bias (see above), or None when no function that holds
    one of its sections resolves to an address inside objfile."""
    progspace = objfile.progspace
    is_main = objfile.filename == progspace.filename
    real = os.path.realpath(objfile.filename)
    tried = set()
    for cs in record["critical_sections"]:
        name = cs.get("function")
        if name is None or name in tried:
            continue
        tried.add(name)
        link = int(cs["start_ip"], 16) - cs["function_offset"]
        for addr in _function_addresses(objfile, name):
            bias = (addr - link) & _MASK
            so = progspace.solib_name(addr)
            if so is None:
                mine = is_main
            else:
                mine = not is_main and os.path.realpath(so) == real
            if bias % _PAGE == 0 and mine:
                return bias
    return None


# ---------------------------------------------------------------------------
# Sections of the loaded objfiles, at run-time addresses

class _Registry(object):
    def __init__(self):
        self.files = {}      # path -> ((mtime_ns, size), record or None)
        self.cache_key = None
        self.cache = []
        self.errors = {}     # path -> why its sections are not listed
        self.tool_error = None   # why oncpu-inspect was not found
        self.tool_failed = False  # a run of it failed (already said)

    def invalidate(self, *_args):
        self.cache_key = None

    def _record(self, tool, path):
        """oncpu-inspect's record of path if it has sections, else None."""
        try:
            st = os.stat(path)
        except OSError:
            return None  # not a file: the vDSO, an in-memory object
        stamp = (st.st_mtime_ns, st.st_size)
        old = self.files.get(path)
        if old and old[0] == stamp:
            return old[1]
        self.errors.pop(path, None)
        record = None
        try:
            run = subprocess.run([tool, "--json", path],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=60)
            doc = json.loads(run.stdout)
            if doc.get("format") != _INSPECT_FORMAT:
                raise ValueError("JSON format %r, this extension reads %d"
                                 % (doc.get("format"), _INSPECT_FORMAT))
            record = doc["objects"][0]
            if record["error"] is not None:
                self.errors[path] = record["error"]
                record = None
            elif not record["critical_sections"]:
                record = None
        except (OSError, ValueError, KeyError, IndexError,
                subprocess.SubprocessError) as e:
            self.errors[path] = "%s --json failed: %s" % (tool, e)
            if not self.tool_failed:  # the tool, not the file: say it once
                _msg("%s: %s" % (path, self.errors[path]))
                self.tool_failed = True
            record = None
        self.files[path] = (stamp, record)
        return record

    def _tool(self):
        tool, why = _find_inspect()
        if why is not None and why != self.tool_error:
            _msg("%s: critical sections are not located (set ONCPU_INSPECT "
                 "to oncpu-inspect's path)" % why)
        self.tool_error = why
        return tool

    def sections(self):
        inf = gdb.selected_inferior()
        objs = [o for o in gdb.objfiles()
                if o.is_valid() and o.owner is None and o.filename]
        key = (inf.num, inf.pid, tuple(o.filename for o in objs))
        if key == self.cache_key:
            return self.cache
        result = []
        tool = self._tool()
        for o in objs if tool else ():
            record = self._record(tool, o.filename)
            if record is None:
                continue
            if record["type"] == "REL":
                self.errors[o.filename] = ("a relocatable object's sections "
                                           "have no run-time addresses")
                continue
            bias = _load_bias(o, record)
            if bias is None:
                why = ("%d critical sections not located: GDB knows no "
                       "function that holds one (stripped?)"
                       % len(record["critical_sections"]))
                if self.errors.get(o.filename) != why:
                    _msg("%s: %s" % (o.filename, why))
                self.errors[o.filename] = why
                continue
            self.errors.pop(o.filename, None)
            result += [CriticalSection(o.filename, cs, bias)
                       for cs in record["critical_sections"]]
        self.cache_key = key
        self.cache = result
        return result

    def find(self, pc):
        for cs in self.sections():
            if cs.contains(pc):
                return cs
        return None


_registry = _Registry()


def _pc():
    try:
        return int(gdb.selected_frame().pc())
    except gdb.error:
        return None


def _live():
    try:
        return gdb.selected_inferior().pid > 0 and \
            gdb.selected_thread() is not None and \
            gdb.selected_thread().is_valid()
    except gdb.error:
        return False


def _msg(text):
    gdb.write("[rseq] %s\n" % text)


# ---------------------------------------------------------------------------
# Parameters

class _StepParam(gdb.Parameter):
    """Whether stepping commands step over rseq critical sections."""
    set_doc = "Set whether step/next/stepi/nexti/until leave rseq " \
              "critical sections through their exits."
    show_doc = "Show whether stepping commands step over rseq critical " \
               "sections."

    def __init__(self):
        super(_StepParam, self).__init__("rseq-step", gdb.COMMAND_RUNNING,
                                         gdb.PARAM_BOOLEAN)
        self.value = True

    def get_show_string(self, svalue):
        return "Stepping over rseq critical sections is %s." % svalue


class _AbortParam(gdb.Parameter):
    """Aborts of one section tolerated while leaving it."""
    set_doc = "Set how many aborts of a critical section are tolerated " \
              "while the debugger lets it run to an exit."
    show_doc = "Show how many aborts are tolerated while leaving a " \
               "critical section."

    def __init__(self):
        super(_AbortParam, self).__init__("rseq-max-aborts",
                                          gdb.COMMAND_RUNNING,
                                          gdb.PARAM_ZUINTEGER)
        self.value = 16

    def get_show_string(self, svalue):
        return "At most %s aborts are tolerated while leaving a critical " \
               "section." % svalue


_step_param = None
_abort_param = None


# ---------------------------------------------------------------------------
# Stepping

class _ExitBreakpoint(gdb.Breakpoint):
    """Silent internal breakpoint on one exit of a critical section."""

    def __init__(self, addr, kind, thread):
        super(_ExitBreakpoint, self).__init__("*0x%x" % addr,
                                              gdb.BP_BREAKPOINT,
                                              internal=True)
        self.silent = True
        self.kind = kind
        self.addr = addr
        if thread is not None:
            self.thread = thread


class _Stepper(object):
    """Drives the stepping hooks (hook-<cmd> and hookpost-<cmd>)."""

    ARMED = ("step", "next", "stepi", "nexti", "until")

    def __init__(self):
        self.entry_bps = []
        self.origin = None
        self.busy = False
        self.gdb_printed = False

    # Entry breakpoints turn gdb's silent range stepping into a reported
    # stop at start_ip, so the post-hook can take the section's exits.
    # They exist only while a stepping command runs: hit while running
    # at full speed, a breakpoint inside a section makes it abort.
    def _arm(self, pc):
        lo = hi = None
        try:
            block = gdb.block_for_pc(pc)
            while block is not None and block.superblock is not None \
                    and not block.superblock.is_static \
                    and not block.superblock.is_global:
                block = block.superblock
            if block is not None and block.function is not None:
                lo, hi = block.start, block.end
        except (gdb.error, RuntimeError):
            pass
        thread = gdb.selected_thread().num
        for cs in _registry.sections():
            in_block = lo is not None and lo <= cs.start < hi
            in_func = cs.function is not None and \
                cs.function[1] <= pc < cs.function[1] + cs.function[2]
            if (in_block or in_func) and not cs.contains(pc):
                try:
                    self.entry_bps.append(
                        _ExitBreakpoint(cs.start, "entry", thread))
                except (gdb.error, RuntimeError):
                    pass

    def _disarm(self):
        for bp in self.entry_bps:
            if bp.is_valid():
                bp.delete()
        self.entry_bps = []

    def pre(self, cmd):
        self.origin = None
        if self.busy or not _step_param.value or not _live():
            return
        pc = _pc()
        if pc is None:
            return
        try:
            frame = gdb.selected_frame()
            sal = frame.find_sal()
            self.origin = {
                "cmd": cmd, "pc": pc, "frame": frame,
                "line": (sal.symtab.filename if sal.symtab else None,
                         sal.line),
                "inside": _registry.find(pc),
            }
        except gdb.error:
            return
        if cmd in self.ARMED:
            self._arm(pc)
        elif cmd == "finish" and self.origin["inside"] is not None:
            # GDB finishes an inlined frame by stepping, and each step
            # inside the section aborts it (the retry loop enters it
            # again: a livelock): leave the section first.
            inside, self.origin = self.origin["inside"], None
            self.busy = True
            try:
                self.escape(inside)
            finally:
                self.busy = False

    def post(self, cmd):
        self._disarm()
        origin, self.origin = self.origin, None
        if origin is None or self.busy or not _live():
            return
        self.busy = True
        try:
            self._after(cmd, origin)
        finally:
            self.busy = False
            self._disarm()

    def _after(self, cmd, origin):
        # gdb prints the stops of the commands run here (finish, next)
        # itself; the silent exit breakpoints need a location printed.
        self.gdb_printed = False
        for _round in range(8):
            pc = _pc()
            if pc is None:
                return
            cs = _registry.find(pc)
            if cs is None and origin["inside"] is not None and _round == 0:
                # The command started inside a section and the step
                # aborted it: run until it commits or leaves.
                cs = origin["inside"]
            if cs is None:
                return
            if not self.escape(cs):
                return
            self.gdb_printed = False
            if cmd not in ("next", "step", "until") or not _live():
                break
            # next/until step over (inlined) calls: return to the frame
            # where the command started before finishing its line.
            if cmd != "step" and not self._return_to(origin["frame"]):
                break
            # Finish the source line the user was stepping over.
            try:
                frame = gdb.selected_frame()
                sal = frame.find_sal()
            except gdb.error:
                break
            here = (sal.symtab.filename if sal.symtab else None, sal.line)
            pc = _pc()
            if pc == sal.pc or (cmd != "step" and here != origin["line"]):
                break
            self._arm(pc)
            try:
                gdb.execute(cmd, to_string=True)
                self.gdb_printed = True
            finally:
                self._disarm()
        if not self.gdb_printed:
            self._print_location(origin)

    def _return_to(self, origin_frame):
        """finish until origin_frame is selected; False if it is gone."""
        for _ in range(4):
            try:
                frame = gdb.selected_frame()
                if not origin_frame.is_valid():
                    return False
                if frame == origin_frame:
                    return True
                older, depth = frame.older(), 0
                while older is not None and older != origin_frame \
                        and depth < 8:
                    older, depth = older.older(), depth + 1
                if older is None or older != origin_frame:
                    return False  # not a callee of the origin
                self._arm(frame.pc())
                try:
                    gdb.execute("finish", to_string=True)
                    self.gdb_printed = True
                finally:
                    self._disarm()
            except gdb.error:
                return False
            cs = _registry.find(_pc() or 0)
            if cs is not None:
                if not self.escape(cs):
                    return False
                self.gdb_printed = False
        return False

    @staticmethod
    def _print_location(origin):
        """Prints where the command ended, the way gdb's stepping does."""
        try:
            frame = gdb.selected_frame()
            text = gdb.execute("frame", to_string=True)
            same = origin["frame"].is_valid() and frame == origin["frame"]
        except gdb.error:
            return
        lines = text.splitlines()
        if same and len(lines) > 1:
            sal = frame.find_sal()
            prefix = "" if sal.pc == frame.pc() else "0x%016x\t" % frame.pc()
            gdb.write(prefix + "\n".join(lines[1:]) + "\n")
        else:
            gdb.write(text)

    def escape(self, cs):
        """Runs to an exit of cs; returns True when it left normally."""
        try:
            thread = gdb.selected_thread().num
        except (gdb.error, AttributeError):
            thread = None
        targets = [(cs.post_commit, "post-commit")]
        targets += [(e, "exit point") for e in cs.exits]
        targets.append((cs.abort, "abort"))
        bps = {}
        for addr, kind in targets:
            if addr in bps:
                continue
            try:
                bps[addr] = _ExitBreakpoint(addr, kind, thread)
            except (gdb.error, RuntimeError) as e:
                _msg("cannot place a breakpoint at 0x%x: %s" % (addr, e))
        aborts = 0
        inside_at_start = cs.contains(_pc() or 0)
        try:
            while True:
                try:
                    text = gdb.execute("continue", to_string=True)
                    # The stop handlers' own messages were captured too.
                    for line in text.splitlines():
                        if line.startswith("[rseq] "):
                            gdb.write(line + "\n")
                except gdb.error as e:
                    _msg("stopped while leaving %s: %s" % (cs.name(), e))
                    return False
                if not _live():
                    _msg("the program ended while leaving %s" % cs.name())
                    return False
                pc = _pc()
                bp = bps.get(pc)
                if bp is None:
                    _msg("stopped at 0x%x before %s [0x%x, 0x%x) reached "
                         "an exit" % (pc, cs.name(), cs.start,
                                      cs.post_commit))
                    return False
                if bp.kind == "abort":
                    aborts += 1
                    if aborts > _abort_param.value:
                        _msg("%s aborted %d times; stopped at its abort "
                             "handler 0x%x" % (cs.name(), aborts, pc))
                        return False
                    continue
                why = ""
                if aborts:
                    why = " after %d abort%s%s" % (
                        aborts, "" if aborts == 1 else "s",
                        " (a stop inside a section makes the kernel "
                        "abort it)" if inside_at_start else "")
                _msg("left critical section %s [0x%x, 0x%x) at %s 0x%x%s"
                     % (cs.name(), cs.start, cs.post_commit, bp.kind, pc,
                        why))
                return True
        finally:
            for bp in bps.values():
                if bp.is_valid():
                    bp.delete()


_stepper = _Stepper()


class _HookCommand(gdb.Command):
    """Internal: called by the hook-<cmd>/hookpost-<cmd> definitions."""

    def __init__(self):
        super(_HookCommand, self).__init__("rseq-internal-hook",
                                           gdb.COMMAND_MAINTENANCE)

    def invoke(self, arg, from_tty):
        when, cmd = arg.split()
        if when == "pre":
            _stepper.pre(cmd)
        else:
            _stepper.post(cmd)


def _install_hooks():
    for cmd in ("step", "next", "stepi", "nexti", "until", "advance",
                "finish"):
        gdb.execute("define hook-%s\nrseq-internal-hook pre %s\nend"
                    % (cmd, cmd), to_string=True)
        gdb.execute("define hookpost-%s\nrseq-internal-hook post %s\nend"
                    % (cmd, cmd), to_string=True)


# ---------------------------------------------------------------------------
# Resuming inside a section
#
# To resume a thread stopped on a breakpoint, GDB runs a copy of the
# instruction elsewhere (displaced stepping, on by default on Linux).  The
# kernel then sees an IP outside the section, clears rseq_cs without
# aborting, and GDB puts the thread back in the middle of the section, which
# runs on unprotected.  Stepped in place, the instruction traps inside the
# section and the kernel aborts it on the way back, as it must.

def _displaced_setting():
    value = gdb.parameter("displaced-stepping")
    return {True: "on", False: "off"}.get(value, "auto")


def _stopped_inside():
    """(thread number, section) of a stopped thread inside a section."""
    try:
        selected = gdb.selected_thread()
        frame = gdb.selected_frame()
    except gdb.error:
        return None
    found = None
    threads = [selected] + [t for t in gdb.selected_inferior().threads()
                            if t != selected]
    try:
        for t in threads:
            if not t.is_valid() or t.is_running() or t.is_exited():
                continue
            if t != selected:
                t.switch()
            cs = _registry.find(_pc() or 0)
            if cs is not None:
                found = (t.num, cs)
                break
    finally:
        if selected.is_valid():
            selected.switch()
            if frame.is_valid():
                frame.select()
    return found


class _DisplacedGuard(object):
    """Holds displaced stepping off while a stopped thread is in a section."""

    def __init__(self):
        self.saved = None  # the setting to restore, while held off

    def update(self):
        inside = _stopped_inside() if _live() else None
        current = _displaced_setting()
        if inside is not None and current != "off":
            if self.saved is None:
                self.saved = current
            gdb.execute("set displaced-stepping off", to_string=True)
            num, cs = inside
            _msg("thread %d is stopped inside rseq critical section %s: "
                 "displaced stepping is off (was %s) until no thread is, so "
                 "that resuming aborts the section instead of running it "
                 "unprotected" % (num, cs.name(), current))
        elif inside is None and self.saved is not None:
            gdb.execute("set displaced-stepping " + self.saved,
                        to_string=True)
            _msg("no thread is inside a critical section: displaced "
                 "stepping is %s again" % self.saved)
            self.saved = None


_displaced_guard = _DisplacedGuard()


def _on_stop(event):
    _displaced_guard.update()
    if _stepper.busy or not _live():
        return
    pc = _pc()
    cs = _registry.find(pc) if pc is not None else None
    if cs is not None and _stepper.origin is None:
        _msg("stopped inside rseq critical section %s [0x%x, 0x%x); "
             "resuming will abort it (abort handler 0x%x)"
             % (cs.name(), cs.start, cs.post_commit, cs.abort))


def _on_breakpoint_created(bp):
    if bp.type != gdb.BP_BREAKPOINT or not bp.location or \
            isinstance(bp, _ExitBreakpoint) or not _live():
        return
    try:
        addrs = [int(loc.address) for loc in getattr(bp, "locations", [])]
    except (gdb.error, AttributeError, TypeError):
        addrs = []
    for a in addrs:
        cs = _registry.find(a)
        if cs is not None and a != cs.start:
            _msg("warning: breakpoint %d is inside rseq critical section "
                 "%s: each hit aborts the section" % (bp.number, cs.name()))


# ---------------------------------------------------------------------------
# info rseq

class _InfoRseq(gdb.Command):
    """List rseq critical sections of the loaded objects.

Usage: info rseq [all]
Shows whether $pc is inside a critical section and which, then lists the
sections of the objects loaded in the inferior (all of them with "all",
else those of the object that contains $pc, or all when not running):
start, post-commit, abort and exit points at run-time addresses, the
enclosing function and any violation of the kernel's rules."""

    def __init__(self):
        super(_InfoRseq, self).__init__("info rseq", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        secs = _registry.sections()
        pc = _pc() if _live() else None
        if pc is not None:
            cs = _registry.find(pc)
            if cs is None:
                gdb.write("$pc 0x%x is not inside an rseq critical "
                          "section.\n" % pc)
            else:
                gdb.write("$pc 0x%x is inside rseq critical section %s "
                          "[0x%x, 0x%x), abort handler 0x%x.\n"
                          % (pc, cs.name(), cs.start, cs.post_commit,
                             cs.abort))
        if not secs:
            gdb.write("No rseq critical sections in the loaded objects.\n")
        show = secs
        if arg.strip() != "all" and pc is not None:
            here = [s for s in secs if s.function and
                    s.function[1] <= pc < s.function[1] + s.function[2]]
            mine = _registry.find(pc)
            objf = mine.objfile if mine else (here[0].objfile if here
                                              else None)
            if objf:
                show = [s for s in secs if s.objfile == objf]
        last = None
        for i, cs in enumerate(show):
            if cs.objfile != last:
                gdb.write("%s:\n" % cs.objfile)
                last = cs.objfile
            mark = "=>" if pc is not None and cs.contains(pc) else "  "
            gdb.write("%s %-28s start 0x%x post-commit 0x%x abort 0x%x"
                      % (mark, cs.name(), cs.start, cs.post_commit,
                         cs.abort))
            if cs.exits:
                gdb.write(" exits %s" % ", ".join("0x%x" % e
                                                  for e in cs.exits))
            gdb.write("\n")
            for p in cs.violations:
                gdb.write("     VIOLATION: %s\n" % p)
        if len(show) != len(secs):
            gdb.write("(%d of %d sections; \"info rseq all\" lists all)\n"
                      % (len(show), len(secs)))
        if _registry.tool_error:
            gdb.write("warning: %s\n" % _registry.tool_error)
        for path, err in sorted(_registry.errors.items()):
            gdb.write("warning: %s: %s\n" % (path, err))


def _load():
    global _step_param, _abort_param
    if getattr(gdb, "_oncpu_rseq_loaded", False):
        return  # auto-loaded and sourced: the first copy serves
    gdb._oncpu_rseq_loaded = True
    _step_param = _StepParam()
    _abort_param = _AbortParam()
    for ev in ("new_objfile", "clear_objfiles", "exited", "new_inferior",
               "free_objfile"):
        if hasattr(gdb.events, ev):
            getattr(gdb.events, ev).connect(_registry.invalidate)
    _HookCommand()
    _InfoRseq()
    _install_hooks()
    gdb.events.stop.connect(_on_stop)
    if hasattr(gdb.events, "breakpoint_created"):
        gdb.events.breakpoint_created.connect(_on_breakpoint_created)
    _displaced_guard.update()  # loaded while stopped inside a section


_load()
