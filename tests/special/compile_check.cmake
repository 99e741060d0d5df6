# SPDX-License-Identifier: MIT
# Compile one source with -fsyntax-only and check the outcome:
#   cmake -DCOMPILER=cc -DLANG=c|c++ -DINCLUDE=dir -DSOURCE=file [-DDEFINE=NAME]
#         -DEXPECT=ok|fail [-DREGEX=re] -P compile_check.cmake
# EXPECT=fail also requires the diagnostics to match REGEX, so that a test
# cannot pass because of an unrelated error (a wrong include path).
# Without SOURCE, compiles every public header alone (HEADERS_DIR): each
# must be self-contained and warning-free; arch headers must refuse. With
# -DSTABLE=1 the same with ONCPU_INLINE_FASTPATHS=0, where oncpu/cs.h
# must refuse too.
if(LANG STREQUAL "c++")
  set(lang_flags -x c++ -std=c++11)
else()
  set(lang_flags -x c -std=c11)
endif()
set(warn -Wall -Wextra -Wpedantic -Werror)

function(compile src expect regex)
  set(defs)
  if(DEFINE)
    set(defs -D${DEFINE})
  endif()
  execute_process(COMMAND ${COMPILER} ${lang_flags} ${warn} -fsyntax-only -I${INCLUDE} ${defs} ${src}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(expect STREQUAL "ok")
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${src} ${DEFINE} (${LANG}) should compile:\n${out}${err}")
    endif()
  else()
    if(rc EQUAL 0)
      message(FATAL_ERROR "${src} ${DEFINE} (${LANG}) compiled, but must be rejected")
    endif()
    if(regex AND NOT "${out}${err}" MATCHES "${regex}")
      message(FATAL_ERROR "${src} ${DEFINE} (${LANG}) failed for another reason than ${regex}:\n${out}${err}")
    endif()
    message(STATUS "rejected as expected: ${src} ${DEFINE} (${LANG})")
  endif()
endfunction()

if(SOURCE)
  compile(${SOURCE} ${EXPECT} "${REGEX}")
else()
  file(GLOB headers RELATIVE ${INCLUDE} ${INCLUDE}/oncpu.h ${INCLUDE}/oncpu/*.h ${INCLUDE}/oncpu/arch/*.h)
  if(NOT headers)
    message(FATAL_ERROR "no headers under ${INCLUDE}")
  endif()
  foreach(h ${headers})
    string(MAKE_C_IDENTIFIER ${h} id)
    set(tu ${WORKDIR}/${id}.${LANG}.check)
    set(prefix "")
    if(STABLE)
      set(prefix "#define ONCPU_INLINE_FASTPATHS 0\n")
    endif()
    file(WRITE ${tu} "${prefix}#include <${h}>\nint oncpu_header_check_${id};\n")
    if(h MATCHES "/arch/")
      compile(${tu} fail "do not include <oncpu/arch/")
    elseif(STABLE AND h STREQUAL "oncpu/cs.h")
      compile(${tu} fail "need ONCPU_INLINE_FASTPATHS=1")
    else()
      compile(${tu} ok "")
    endif()
  endforeach()
  list(LENGTH headers n)
  message(STATUS "${n} headers checked (${LANG})")
endif()
