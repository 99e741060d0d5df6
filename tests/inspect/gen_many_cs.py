#!/usr/bin/env python3
"""Writes an x86-64 ET_EXEC whose rseq tables are large: n descriptors in
__rseq_cs, n function symbols, n + n/2 exit points (n/2 of them match no
descriptor) and n/2 extra allocated sections.  Every lookup that scans a
whole table (descriptors per exit point, sections per address, symbols per
descriptor) makes oncpu-inspect quadratic in n on such a file.

usage: gen_many_cs.py N OUT

build(n) returns (image bytes, expected) for tests/inspect/test_inspect.py:
expected["exits"][i] lists descriptor i's exit addresses in table order,
expected["inside"] the descriptors with an exit point inside the section,
expected["orphans"] the count of exit points matching no descriptor.
"""
import struct
import sys

BASE = 0x400000     # vaddr = BASE + file offset for every allocated section
BLOCK = 32          # code bytes per section: body, signature, abort_ip
PCO = 12            # post_commit_offset: [start, start + 12) is the body
SIG = 0x53053053
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4


def _align(x, a):
    return (x + a - 1) & ~(a - 1)


def build(n):
    n = max(int(n), 4)
    n_orphans = n // 2
    n_pads = n // 2
    # Code: block i is descriptor i's section; the signature sits right
    # before abort_ip = start + 16.
    block = bytearray(b"\x90" * BLOCK)
    struct.pack_into("<I", block, PCO, SIG)
    text_off = 0x1000
    text = bytes(block) * n
    starts = [BASE + text_off + BLOCK * i for i in range(n)]
    cs_off = _align(text_off + len(text), 32)
    cs = bytearray(32 * n)
    for i, s in enumerate(starts):
        struct.pack_into("<IIQQQ", cs, 32 * i, 0, 0, s, PCO, s + 16)
    # Exit points: one per descriptor (every 7th inside the section), one
    # more for every 5th, and orphans whose start_ip is no descriptor's.
    exits, expected_exits, inside = [], [[] for _ in range(n)], set()
    for i, s in enumerate(starts):
        e = s + 4 if i % 7 == 0 else s + 20
        exits.append((s, e))
        expected_exits[i].append(e)
        if i % 7 == 0:
            inside.add(i)
    for j in range(n_orphans):
        exits.append((starts[j] + 2, starts[j] + 24))
        if j % 5 == 0:
            i = n - 1 - j
            exits.append((starts[i], starts[i] + 28))
            expected_exits[i].append(starts[i] + 28)
    ea_off = _align(cs_off + len(cs), 16)
    ea = bytearray(16 * len(exits))
    for k, (s, e) in enumerate(exits):
        struct.pack_into("<QQ", ea, 16 * k, s, e)
    # Symbols: f<i> covers block i; the string table follows.
    strtab = bytearray(b"\0")
    names = []
    for i in range(n):
        names.append(len(strtab))
        strtab += b"f%d\0" % i
    symtab = bytearray(24 * (n + 1))
    for i, s in enumerate(starts):
        # STB_GLOBAL STT_FUNC in section 1 (.text)
        struct.pack_into("<IBBHQQ", symtab, 24 * (i + 1), names[i], 0x12, 0,
                         1, s, BLOCK)
    shstr = bytearray(b"\0")

    def name(s):
        off = len(shstr)
        shstr.extend(s.encode() + b"\0")
        return off

    sym_off = _align(ea_off + len(ea), 8)
    str_off = sym_off + len(symtab)
    shstr_names = {k: name(k) for k in (
        ".text", "__rseq_cs", "__rseq_exit_point_array", ".symtab",
        ".strtab", ".shstrtab", ".pad")}
    shstr_off = str_off + len(strtab)
    sh_off = _align(shstr_off + len(shstr), 8)
    shdrs = [(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]

    def sec(nm, typ, flags, off, size, link=0, info=0, align=1, ent=0,
            addr=None):
        if addr is None:
            addr = BASE + off if flags & SHF_ALLOC else 0
        shdrs.append((shstr_names[nm], typ, flags, addr, off, size, link,
                      info, align, ent))

    sec(".text", 1, SHF_ALLOC | SHF_EXECINSTR, text_off, len(text), align=16)
    sec("__rseq_cs", 1, SHF_ALLOC | SHF_WRITE, cs_off, len(cs), align=32)
    sec("__rseq_exit_point_array", 1, SHF_ALLOC | SHF_WRITE, ea_off,
        len(ea), align=8)
    sec(".symtab", 2, 0, sym_off, len(symtab), link=5, info=1, align=8,
        ent=24)
    sec(".strtab", 3, 0, str_off, len(strtab))
    sec(".shstrtab", 3, 0, shstr_off, len(shstr))
    # Extra sections past the end of the image, 16 bytes each.
    top = BASE + sh_off + 0x100000
    for p in range(n_pads):
        sec(".pad", 1, SHF_ALLOC, 0, 16, addr=top + 32 * p)
    shnum = len(shdrs)
    if shnum >= 0xFF00:  # extended numbering: the count in section 0
        shdrs[0] = (0, 0, 0, 0, 0, shnum, 0, 0, 0, 0)
        shnum = 0
    out = bytearray(sh_off + 64 * len(shdrs))
    struct.pack_into("<4sBBBB8xHHIQQQIHHHHHH", out, 0, b"\x7fELF", 2, 1, 1,
                     0, 2, 62, 1, starts[0], 64, sh_off, 0, 64, 56, 1, 64,
                     shnum, 6)
    # One PT_LOAD R+X covering the file.
    struct.pack_into("<IIQQQQQQ", out, 64, 1, 5, 0, BASE, BASE, sh_off,
                     sh_off, 0x1000)
    for off, blob in ((text_off, text), (cs_off, cs), (ea_off, ea),
                      (sym_off, symtab), (str_off, strtab),
                      (shstr_off, shstr)):
        out[off:off + len(blob)] = blob
    for k, h in enumerate(shdrs):
        struct.pack_into("<IIQQQQIIQQ", out, sh_off + 64 * k, *h)
    expected = {"n": n, "starts": starts, "exits": expected_exits,
                "inside": inside, "orphans": n_orphans,
                "n_exits": len(exits), "sections": len(shdrs)}
    return bytes(out), expected


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    data, _ = build(int(argv[1]))
    with open(argv[2], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
