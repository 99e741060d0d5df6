/*
 * Asks GDB to load oncpu's extension (gdb/oncpu.py) for any binary that
 * includes this header: a file entry in .debug_gdb_scripts.  GDB loads it
 * when the file lies inside its "auto-load safe-path"
 * (see oncpu-gdb(7)); the request costs nothing at run time (the section
 * is not loaded).  Use once per linked object, at file scope:
 *
 *   #include "oncpu-gdb-scripts.h"
 *   ONCPU_GDB_SCRIPT();
 *
 * ONCPU_GDB_SCRIPT_PATH defaults to where "make install" puts the
 * extension; the build system passes the real path with -D.  The section
 * is "MS" (mergeable strings) so that copies from several translation
 * units collapse into one entry.
 */
#ifndef ONCPU_GDB_SCRIPTS_H
#define ONCPU_GDB_SCRIPTS_H

#ifndef ONCPU_GDB_SCRIPT_PATH
#define ONCPU_GDB_SCRIPT_PATH "/usr/local/share/oncpu/gdb/oncpu.py"
#endif

#if defined(__ELF__) && !defined(ONCPU_NO_GDB_SCRIPT)
/* 1 = SECTION_SCRIPT_ID_PYTHON_FILE: the rest is a NUL-terminated path. */
#define ONCPU_GDB_SCRIPT()                                                                         \
	__asm__(".pushsection \".debug_gdb_scripts\", \"MS\",%progbits,1\n"                        \
	        ".byte 1\n"                                                                        \
	        ".asciz \"" ONCPU_GDB_SCRIPT_PATH "\"\n"                                           \
	        ".popsection\n")
#else
#define ONCPU_GDB_SCRIPT() _Static_assert(1, "no .debug_gdb_scripts")
#endif

#endif
