# SPDX-License-Identifier: MIT
# Check the undefined symbols of object files for liboncpu's private ones:
#   cmake -DNM=nm "-DOBJECTS=a.o;b.o" -DEXPECT=none|some -P private_refs.cmake
# EXPECT=none: no `_oncpu_` symbol may be referenced (a program built with
# ONCPU_INLINE_FASTPATHS=0 calls exported functions only); EXPECT=some: the
# control, the same check must find them in an inline build.
set(found "")
foreach(obj ${OBJECTS})
  execute_process(COMMAND ${NM} -u ${obj} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} -u ${obj} failed: ${err}")
  endif()
  string(REGEX MATCHALL "[ \t]U[ \t]+_oncpu_[A-Za-z0-9_]*" refs "${out}")
  foreach(r ${refs})
    string(REGEX REPLACE ".*U[ \t]+" "" r "${r}")
    list(APPEND found ${r})
  endforeach()
endforeach()
list(REMOVE_DUPLICATES found)
if(EXPECT STREQUAL "none" AND found)
  message(FATAL_ERROR "private liboncpu symbols referenced (an inline fast path leaked): ${found}")
elseif(EXPECT STREQUAL "some" AND NOT found)
  message(FATAL_ERROR "no private liboncpu symbol referenced: the check would not see a leak")
endif()
message(STATUS "private symbols referenced: ${found}")
