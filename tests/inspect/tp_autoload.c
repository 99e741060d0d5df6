/* Links the .debug_gdb_scripts request into tp_prog_autoload. */
#include "oncpu-gdb-scripts.h"

ONCPU_GDB_SCRIPT();
