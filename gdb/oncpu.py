# oncpu GDB extension: rseq critical sections for GDB.
#
# Reads the rseq debug sections that oncpu, the Linux kernel selftests,
# librseq and other producers emit (__rseq_cs, __rseq_cs_ptr_array,
# __rseq_exit_point_array, abort handlers preceded by the signature) from
# every loaded object, and:
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
# auto-loaded for liboncpu (see oncpu-gdb(7)).

import os
import struct

import gdb

_FORMAT = 1

# ---------------------------------------------------------------------------
# ELF reading (64-bit little-endian; x86-64 and aarch64 signatures)

_EM_X86_64 = 62
_EM_AARCH64 = 183
_SIGNATURES = {_EM_X86_64: 0x53053053, _EM_AARCH64: 0xD428BC00}
# (RELATIVE, ABS64, GLOB_DAT, JUMP_SLOT) relocation types.
_RELOCS = {_EM_X86_64: (8, 1, 6, 7), _EM_AARCH64: (1027, 257, 1025, 1026)}
_SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 2, 3, 4, 8, 9
_SHT_DYNSYM = 11
_SHF_ALLOC = 2
_SHF_EXECINSTR = 4


class ElfError(Exception):
    pass


class _Sec(object):
    __slots__ = ("name", "type", "flags", "addr", "offset", "size", "link",
                 "info", "entsize")


class CriticalSection(object):
    """One descriptor with run-time addresses (load bias applied)."""

    def __init__(self, objfile, desc, start, pco, abort, version, flags,
                 signature, expected, function):
        self.objfile = objfile
        self.desc = desc
        self.start = start
        self.post_commit_offset = pco
        self.post_commit = start + pco
        self.abort = abort
        self.version = version
        self.flags = flags
        self.signature = signature
        self.expected_signature = expected
        self.function = function  # (name, start, size) or None
        self.exits = []

    def contains(self, pc):
        return 0 <= pc - self.start < self.post_commit_offset

    def problems(self):
        p = []
        if self.version != 0:
            p.append("version is not 0")
        if self.flags != 0:
            p.append("flags are not 0")
        if 0 <= self.abort - self.start < self.post_commit_offset:
            p.append("abort_ip lies inside the section")
        if self.signature is None:
            p.append("the 4 bytes before abort_ip are not in the file")
        elif self.signature != self.expected_signature:
            p.append("signature before abort_ip is 0x%08x, expected 0x%08x"
                     % (self.signature, self.expected_signature))
        return p

    def name(self):
        if self.function:
            return "%s+0x%x" % (self.function[0],
                                self.start - self.function[1])
        return "0x%x" % self.start


class ElfRseq(object):
    """The rseq sections of one ELF file, at link-time addresses."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        self.path = path
        self._parse()

    def _u(self, fmt, off):
        size = struct.calcsize(fmt)
        if off < 0 or off + size > len(self.data):
            raise ElfError("read past the end of %s" % self.path)
        return struct.unpack_from(fmt, self.data, off)

    def _parse(self):
        d = self.data
        if len(d) < 64 or d[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        if d[4] != 2 or d[5] != 1:
            raise ElfError("only 64-bit little-endian ELF is supported")
        (self.type, self.machine) = self._u("<HH", 16)
        if self.machine not in _SIGNATURES:
            raise ElfError("unsupported machine %d" % self.machine)
        self.expected_signature = _SIGNATURES[self.machine]
        shoff, = self._u("<Q", 0x28)
        shentsize, shnum, shstrndx = self._u("<HHH", 0x3A)
        if shoff == 0 or shentsize != 64:
            raise ElfError("no usable section header table")
        if shnum == 0:
            shnum = self._u("<Q", shoff + 0x20)[0]
        if shstrndx == 0xFFFF:
            shstrndx = self._u("<I", shoff + 0x28)[0]
        if shnum * 64 > len(d) or shstrndx >= shnum:
            raise ElfError("section header table past the end of the file")
        secs = []
        for i in range(shnum):
            f = self._u("<IIQQQQIIQQ", shoff + 64 * i)
            s = _Sec()
            (nameoff, s.type, s.flags, s.addr, s.offset, s.size, s.link,
             s.info, _align, s.entsize) = f
            s.name = nameoff
            if (i and s.type not in (0, _SHT_NOBITS)
                    and s.offset + s.size > len(d)):
                raise ElfError("section %d lies past the end of the file" % i)
            secs.append(s)
        strtab = secs[shstrndx]
        for s in secs:
            s.name = self._cstr(strtab, s.name)
        self.secs = secs
        self.byname = {}
        for s in secs[1:]:
            self.byname.setdefault(s.name, s)

    def _cstr(self, strtab, off):
        if off >= strtab.size:
            return "?"
        start = strtab.offset + off
        end = self.data.find(b"\0", start, strtab.offset + strtab.size)
        if end < 0:
            return "?"
        return self.data[start:end].decode("utf-8", "replace")

    def has_rseq(self):
        return ("__rseq_cs_ptr_array" in self.byname
                or "__rseq_cs" in self.byname)

    def _sec_at(self, addr, n=1):
        for s in self.secs[1:]:
            if (s.flags & _SHF_ALLOC) and s.addr <= addr \
                    and addr + n <= s.addr + s.size:
                return s
        return None

    def _bytes(self, addr, n):
        s = self._sec_at(addr, n)
        if s is None or s.type == _SHT_NOBITS:
            return None
        o = s.offset + addr - s.addr
        return self.data[o:o + n]

    def _fixups(self):
        """Relocated 64-bit values in the rseq data sections (bias 0)."""
        targets = [self.byname.get(n) for n in
                   ("__rseq_cs", "__rseq_cs_ptr_array",
                    "__rseq_exit_point_array")]
        targets = [t for t in targets if t is not None]
        rel_types = _RELOCS[self.machine]
        fix = {}
        for rs in self.secs:
            if rs.type not in (_SHT_RELA, _SHT_REL):
                continue
            rela = rs.type == _SHT_RELA
            ent = 24 if rela else 16
            base = None
            if self.type == 1:  # ET_REL: relative to the target section
                if rs.info >= len(self.secs) or \
                        self.secs[rs.info] not in targets:
                    continue
                base = self.secs[rs.info].addr
            if rs.entsize != ent:
                raise ElfError("bad relocation entry size in " + rs.name)
            symtab = self.secs[rs.link] if 0 < rs.link < len(self.secs) \
                else None
            for j in range(rs.size // ent):
                off, info = self._u("<QQ", rs.offset + j * ent)
                addr = off + base if base is not None else off
                if not any(t.addr <= addr < t.addr + t.size
                           for t in targets):
                    continue
                rtype, symi = info & 0xFFFFFFFF, info >> 32
                if rela:
                    addend = self._u("<q", rs.offset + j * ent + 16)[0]
                else:
                    b = self._bytes(addr, 8)
                    addend = struct.unpack("<q", b)[0] if b else 0
                if rtype == 0:
                    continue
                if rtype == rel_types[0]:
                    fix[addr] = addend & 0xFFFFFFFFFFFFFFFF
                    continue
                if rtype not in rel_types[1:]:
                    raise ElfError("unsupported relocation type %d" % rtype)
                sval = self._symval(symtab, symi)
                if sval is None:
                    fix[addr] = None
                else:
                    fix[addr] = (sval + (addend if rtype == rel_types[1]
                                         else 0)) & 0xFFFFFFFFFFFFFFFF
        return fix

    def _symval(self, symtab, i):
        if symtab is None or symtab.entsize != 24 or \
                i * 24 >= symtab.size:
            raise ElfError("bad relocation symbol")
        _n, _info, _other, shndx, value, _size = self._u(
            "<IBBHQQ", symtab.offset + 24 * i)
        if shndx == 0:
            return None  # undefined: resolved only at run time
        if self.type == 1 and shndx < len(self.secs):
            value += self.secs[shndx].addr
        return value

    def _functions(self):
        tab = None
        for t in (_SHT_SYMTAB, _SHT_DYNSYM):
            for s in self.secs:
                if s.type == t and s.entsize == 24 and \
                        0 < s.link < len(self.secs):
                    tab = s
                    break
            if tab:
                break
        funcs = []
        if tab is None:
            return funcs
        strs = self.secs[tab.link]
        for i in range(1, tab.size // 24):
            n, info, _o, shndx, value, size = self._u(
                "<IBBHQQ", tab.offset + 24 * i)
            if info & 0xF not in (2, 10) or shndx == 0 or shndx >= 0xFF00:
                continue
            if self.type == 1 and shndx < len(self.secs):
                value += self.secs[shndx].addr
            funcs.append((value, size, self._cstr(strs, n)))
        funcs.sort()
        return funcs

    def sections(self):
        """[(desc, version, flags, start, pco, abort, sig, func)], exits."""
        if self.type == 1:  # ET_REL: synthetic, distinct addresses
            cursor = 0x10000
            for s in self.secs[1:]:
                if s.flags & _SHF_ALLOC:
                    s.addr = cursor
                    cursor += (s.size + 0x10F) & ~0xF
        fix = self._fixups()

        def rd(addr):
            if addr in fix:
                if fix[addr] is None:
                    raise ElfError("pointer at 0x%x needs an undefined "
                                   "symbol" % addr)
                return fix[addr]
            b = self._bytes(addr, 8)
            if b is None:
                raise ElfError("address 0x%x is outside the file" % addr)
            return struct.unpack("<Q", b)[0]

        descs = []
        pa = self.byname.get("__rseq_cs_ptr_array")
        cs = self.byname.get("__rseq_cs")
        if pa is not None and pa.type != _SHT_NOBITS and pa.size:
            descs = [rd(pa.addr + 8 * i) for i in range(pa.size // 8)]
        elif cs is not None and cs.type != _SHT_NOBITS:
            descs = [cs.addr + 32 * i for i in range(cs.size // 32)]
        funcs = self._functions()
        out = []
        for da in descs:
            raw = self._bytes(da, 8)
            if raw is None:
                raise ElfError("descriptor 0x%x is outside the file" % da)
            version, flags = struct.unpack("<II", raw)
            start, pco, abort = rd(da + 8), rd(da + 16), rd(da + 24)
            if start == 0 and pco == 0 and abort == 0:
                continue
            sig = self._bytes(abort - 4, 4) if abort >= 4 else None
            sig = struct.unpack("<I", sig)[0] if sig else None
            func = None
            for (fa, fs, fn) in funcs:
                if fa > start:
                    break
                if start < fa + fs:
                    func = (fn, fa, fs)
            out.append((da, version, flags, start, pco, abort, sig, func))
        exits = []
        ea = self.byname.get("__rseq_exit_point_array")
        if ea is not None and ea.type != _SHT_NOBITS:
            for i in range(ea.size // 16):
                exits.append((rd(ea.addr + 16 * i), rd(ea.addr + 16 * i + 8)))
        return out, exits


# ---------------------------------------------------------------------------
# Sections of the loaded objfiles, at run-time addresses

class _Registry(object):
    def __init__(self):
        self.files = {}      # path -> (mtime, ElfRseq or None, error)
        self.cache_key = None
        self.cache = []
        self.errors = {}

    def invalidate(self, *_args):
        self.cache_key = None

    def _elf(self, path):
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        old = self.files.get(path)
        if old and old[0] == mtime:
            return old[1]
        elf = None
        try:
            elf = ElfRseq(path)
            if not elf.has_rseq():
                elf = None
        except (ElfError, OSError, struct.error, ValueError) as e:
            self.errors[path] = str(e)
        self.files[path] = (mtime, elf)
        return elf

    @staticmethod
    def _runtime_sections():
        """{(objfile path or None for the main file, name): start addr}"""
        out = {}
        try:
            text = gdb.execute("info files", to_string=True)
        except gdb.error:
            return out
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("0x") or " is " not in line:
                continue
            rng, rest = line.split(" is ", 1)
            try:
                lo = int(rng.split("-")[0].strip(), 16)
            except ValueError:
                continue
            if " in " in rest:
                name, path = rest.split(" in ", 1)
            else:
                name, path = rest, None
            out.setdefault((path, name.strip()), lo)
        return out

    def sections(self):
        inf = gdb.selected_inferior()
        objs = [o for o in gdb.objfiles()
                if o.is_valid() and o.owner is None and o.filename]
        key = (inf.num, inf.pid, tuple(o.filename for o in objs))
        if key == self.cache_key:
            return self.cache
        result = []
        rt = None
        main = gdb.current_progspace().filename
        for o in objs:
            elf = self._elf(o.filename)
            if elf is None:
                continue
            try:
                descs, exits = elf.sections()
            except (ElfError, struct.error, ValueError) as e:
                self.errors[o.filename] = str(e)
                continue
            if rt is None:
                rt = self._runtime_sections()
            bias = 0
            for secname in ("__rseq_cs_ptr_array", "__rseq_cs", ".text"):
                s = elf.byname.get(secname)
                where = rt.get((None if o.filename == main else o.filename,
                                secname))
                if s is not None and where is not None:
                    bias = (where - s.addr) if elf.type != 1 else 0
                    break
            mask = 0xFFFFFFFFFFFFFFFF
            bylink = {}
            for (da, ver, fl, start, pco, abort, sig, func) in descs:
                f = None
                if func:
                    f = (func[0], (func[1] + bias) & mask, func[2])
                cs = CriticalSection(o.filename, (da + bias) & mask,
                                     (start + bias) & mask, pco,
                                     (abort + bias) & mask, ver, fl, sig,
                                     elf.expected_signature, f)
                bylink.setdefault(start, cs)
                result.append(cs)
            for (s, e) in exits:
                cs = bylink.get(s)
                if cs is not None:
                    cs.exits.append((e + bias) & mask)
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
                    gdb.execute("continue", to_string=True)
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
    for cmd in ("step", "next", "stepi", "nexti", "until", "advance"):
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
            for p in cs.problems():
                gdb.write("     VIOLATION: %s\n" % p)
        if len(show) != len(secs):
            gdb.write("(%d of %d sections; \"info rseq all\" lists all)\n"
                      % (len(show), len(secs)))
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
